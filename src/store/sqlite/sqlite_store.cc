#include "store/sqlite/sqlite_store.h"

#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "store/internal.h"
#include "store/sqlite/conns.h"
#include "store/sqlite/keys.h"

namespace dtx::store {
namespace {

using namespace sqlite_internal;  // NOLINT(google-build-using-namespace)

// ---------------------------------------------------------------------------------------------------

class SqliteStore final : public Store {
 public:
  SqliteStore(SqliteOptions options, SqliteTestHooks hooks)
      : o_(std::move(options)), hooks_(std::move(hooks)) {}
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;
  ~SqliteStore() override { Close(); }

  // Opens the connections (writer first: it creates and migrates the schema) and starts the
  // threads.
  static Result<std::unique_ptr<Store>> Open(const SqliteOptions& options, SqliteTestHooks hooks);

  void Create(core::TransSnapshot trans, DoneCallback done) override {
    SubmitWrite([t = std::move(trans)](WriterConn& w) { return w.Create(t); }, done, done);
  }

  void CreateTakingKeys(core::TransSnapshot trans, Callback<bool> done) override {
    auto taken = std::make_shared<bool>(false);
    SubmitWrite([t = std::move(trans), taken](WriterConn& w) { return w.Create(t, taken.get()); },
                [taken, done](Status s) {
                  if (s.ok()) {
                    done(*taken);
                  } else {
                    done(std::move(s));
                  }
                },
                [done](Status s) { done(std::move(s)); });
  }

  void Update(TransUpdate update, DoneCallback done) override {
    SubmitWrite([u = std::move(update)](WriterConn& w) { return w.Update(u); }, done, done);
  }

  void AddBranches(std::string gid, core::GlobalStatus expected_status,
                   std::vector<core::BranchRow> rows, DoneCallback done) override {
    SubmitWrite([gid = std::move(gid), expected_status, rows = std::move(rows)](
                    WriterConn& w) { return w.AddBranches(gid, expected_status, rows); },
                done, done);
  }

  void ClaimDue(int64_t now_ms, int limit, int64_t lease_until_ms, std::string owner,
                Callback<std::vector<std::string>> done) override {
    if (Status s = internal::ValidateClaimLimit("claim", limit); !s.ok()) return done(std::move(s));
    auto gids = std::make_shared<std::vector<std::string>>();
    SubmitWrite(
        [=, owner = std::move(owner)](WriterConn& w) {
          gids->clear();
          return w.ClaimDue(now_ms, limit, lease_until_ms, owner, gids.get());
        },
        internal::ValueWhenCommitted(gids, done), [done](Status s) { done(std::move(s)); });
  }

  // Business keys (store/sqlite/keys.cc).
  void AcquireKeys(std::string gid, bool acquire, int64_t wait_until_ms,
                   Callback<core::KeyState> done) override {
    auto state = std::make_shared<core::KeyState>();
    SubmitWrite(
        [=, gid = std::move(gid)](WriterConn& w) {
          return sqlite_keys::Acquire(w.keys(), w.db(), gid, acquire, wait_until_ms, state.get());
        },
        [state, done](Status s) {
          if (s.ok()) {
            done(std::move(*state));
          } else {
            done(std::move(s));
          }
        },
        [done](Status s) { done(std::move(s)); });
  }

  void HasKeyWaiters(Callback<bool> done) override {
    auto any = std::make_shared<bool>(true);
    SubmitWrite(
        [any](WriterConn& w) { return sqlite_keys::AnyWaiter(w.keys(), w.db(), any.get()); },
        [any, done](Status s) {
          if (s.ok()) {
            done(*any);
          } else {
            done(std::move(s));
          }
        },
        [done](Status s) { done(std::move(s)); });
  }

  void WakeKeyWaiters(int64_t now_ms, int limit, Callback<std::vector<std::string>> done) override {
    if (Status s = internal::ValidateClaimLimit("wake", limit); !s.ok()) return done(std::move(s));
    auto gids = std::make_shared<std::vector<std::string>>();
    SubmitWrite(
        [=](WriterConn& w) {
          return sqlite_keys::Wake(w.keys(), w.db(), now_ms, limit, gids.get());
        },
        [gids, done](Status s) {
          if (s.ok()) {
            done(std::move(*gids));
          } else {
            done(std::move(s));
          }
        },
        [done](Status s) { done(std::move(s)); });
  }

  void ResetNextCronTime(std::string gid, int64_t now_ms, DoneCallback done) override {
    SubmitWrite(
        [gid = std::move(gid), now_ms](WriterConn& w) { return w.ResetNextCronTime(gid, now_ms); },
        done, done);
  }

  void ResetCronTime(int64_t now_ms, int64_t timeout_ms, int limit,
                     Callback<int64_t> done) override {
    if (Status s = internal::ValidateClaimLimit("reset cron time", limit); !s.ok()) {
      return done(std::move(s));
    }
    auto changed = std::make_shared<int64_t>(0);
    SubmitWrite(
        [=](WriterConn& w) { return w.ResetCronTime(now_ms, timeout_ms, limit, changed.get()); },
        internal::ValueWhenCommitted(changed, done), [done](Status s) { done(std::move(s)); });
  }

  void Load(std::string gid, Callback<std::optional<core::TransSnapshot>> done) override {
    SubmitRead<std::optional<core::TransSnapshot>>(
        std::move(done), [gid = std::move(gid)](ReaderConn& r) { return r.Load(gid); });
  }

  void List(ListQuery query, Callback<ListPage> done) override {
    if (Status s = internal::ValidateListQuery(query); !s.ok()) return done(std::move(s));
    SubmitRead<ListPage>(std::move(done),
                         [q = std::move(query)](ReaderConn& r) { return r.List(q); });
  }

  void KvGet(std::string cat, std::string k, Callback<std::optional<KvRow>> done) override {
    SubmitRead<std::optional<KvRow>>(
        std::move(done),
        [cat = std::move(cat), k = std::move(k)](ReaderConn& r) { return r.KvGet(cat, k); });
  }

  void KvQuery(std::string cat, std::string k, Callback<std::vector<KvRow>> done) override {
    SubmitRead<std::vector<KvRow>>(
        std::move(done),
        [cat = std::move(cat), k = std::move(k)](ReaderConn& r) { return r.KvQuery(cat, k); });
  }

  void KvScan(std::string cat, int64_t before_id, int limit, Callback<KvPage> done) override {
    if (Status s = internal::ValidateKvScan(before_id, limit); !s.ok()) return done(std::move(s));
    SubmitRead<KvPage>(std::move(done), [cat = std::move(cat), before_id, limit](ReaderConn& r) {
      return r.KvScan(cat, before_id, limit);
    });
  }

  void KvPut(std::string cat, std::string k, std::string v, int64_t expected_version,
             int64_t now_ms, DoneCallback done) override {
    if (Status s = internal::ValidateKvPut(cat, k, expected_version); !s.ok()) {
      return done(std::move(s));
    }
    SubmitWrite([cat = std::move(cat), k = std::move(k), v = std::move(v), expected_version,
                 now_ms](WriterConn& w) { return w.KvPut(cat, k, v, expected_version, now_ms); },
                done, done);
  }

  void KvDelete(std::string cat, std::string k, DoneCallback done) override {
    SubmitWrite(
        [cat = std::move(cat), k = std::move(k)](WriterConn& w) { return w.KvDelete(cat, k); },
        done, done);
  }

  // Issue 13: call history, retention, the due backlog (retention.cc has the SQL).
  void LoadAttempts(std::string gid, Callback<std::vector<AttemptRow>> done) override {
    SubmitRead<std::vector<AttemptRow>>(
        std::move(done), [gid = std::move(gid)](ReaderConn& r) { return r.LoadAttempts(gid); });
  }
  void CountDue(int64_t now_ms, int64_t cap, Callback<int64_t> done) override {
    if (Status s = internal::ValidateCountCap(cap); !s.ok()) return done(std::move(s));
    SubmitRead<int64_t>(std::move(done),
                        [now_ms, cap](ReaderConn& r) { return r.CountDue(now_ms, cap); });
  }
  void DeleteFinished(int64_t before_ms, int limit, Callback<RetentionCount> done) override {
    if (Status s = internal::ValidateRetentionLimit(limit); !s.ok()) return done(std::move(s));
    auto count = std::make_shared<RetentionCount>();
    SubmitWrite([=](WriterConn& w) { return w.DeleteFinished(before_ms, limit, count.get()); },
                internal::ValueWhenCommitted(count, done),
                [done](Status s) { done(std::move(s)); });
  }
  void DeleteKvBefore(std::string cat, int64_t before_ms, int limit,
                      Callback<int64_t> done) override {
    if (Status s = internal::ValidateRetentionLimit(limit); !s.ok()) return done(std::move(s));
    if (cat.empty()) return done(Status::InvalidArgument("kv retention needs a category"));
    auto count = std::make_shared<int64_t>(0);
    SubmitWrite(
        [=, cat = std::move(cat)](WriterConn& w) {
          return w.DeleteKvBefore(cat, before_ms, limit, count.get());
        },
        internal::ValueWhenCommitted(count, done), [done](Status s) { done(std::move(s)); });
  }
  const StoreHistograms* Histograms() const override { return &histograms_; }

  StoreStats Stats() const override {
    return StoreStats{.commits = commits_.load(std::memory_order_relaxed),
                      .write_ops = write_ops_.load(std::memory_order_relaxed),
                      .queued_writes = queued_writes_.load(std::memory_order_relaxed)};
  }

  void Close() override;

 private:
  struct WriteOp {
    std::function<Status(WriterConn&)> apply;  // on the writer thread, inside a savepoint
    std::function<void(Status)> complete;      // after the batch is committed (or failed)
  };
  using ReadOp = std::function<void(ReaderConn&)>;

  // `reject` receives the status of a write refused at once (inline, on the caller's thread). It is
  // a separate copy of the callback because `complete` has been moved into the op when it is
  // queued.
  void SubmitWrite(std::function<Status(WriterConn&)> apply, std::function<void(Status)> complete,
                   const std::function<void(Status)>& reject);
  template <class T, class F>
  void SubmitRead(Callback<T> done, F fn);

  void WriterLoop(std::unique_ptr<WriterConn> w);
  void RunBatch(WriterConn& w, std::vector<WriteOp>& batch);
  void FailStore(const std::string& why);
  void ReaderLoop(std::unique_ptr<ReaderConn> r);

  const SqliteOptions o_;
  SqliteTestHooks hooks_;

  std::mutex write_mu_;
  std::condition_variable write_cv_;
  std::deque<WriteOp> write_queue_;  // guarded by write_mu_
  bool write_stopping_ = false;      // guarded by write_mu_
  std::string failure_;              // guarded by write_mu_; non-empty = failed state
  std::atomic<bool> failed_{false};

  std::mutex read_mu_;
  std::condition_variable read_cv_;
  std::deque<ReadOp> read_queue_;  // guarded by read_mu_
  bool read_stopping_ = false;     // guarded by read_mu_

  StoreHistograms histograms_;  // observed by the writer thread after each COMMIT
  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> write_ops_{0};
  std::atomic<uint64_t> queued_writes_{0};

  std::thread writer_;
  std::vector<std::thread> readers_;
  std::vector<std::thread::id> thread_ids_;  // written once in Open, then read-only
  std::once_flag close_once_;
};

int CommitHook(void* arg) {
  const auto* hooks = static_cast<const SqliteTestHooks*>(arg);
  return hooks->fail_commit && hooks->fail_commit() ? 1 : 0;
}

Result<std::unique_ptr<Store>> SqliteStore::Open(const SqliteOptions& options,
                                                 SqliteTestHooks hooks) {
  auto w = WriterConn::Open(options);
  if (!w.ok()) return w.status();
  std::vector<std::unique_ptr<ReaderConn>> readers;
  for (int i = 0; i < options.reader_threads; ++i) {
    auto r = ReaderConn::Open(options);
    if (!r.ok()) return r.status();
    readers.push_back(std::move(r).value());
  }
  auto store = std::make_unique<SqliteStore>(options, std::move(hooks));
  if (store->hooks_.fail_commit) sqlite3_commit_hook((*w)->db(), CommitHook, &store->hooks_);
  SqliteStore* self = store.get();
  store->writer_ = std::thread(
      [self, conn = std::move(w).value()]() mutable { self->WriterLoop(std::move(conn)); });
  for (auto& r : readers) {
    store->readers_.emplace_back(
        [self, conn = std::move(r)]() mutable { self->ReaderLoop(std::move(conn)); });
  }
  store->thread_ids_.push_back(store->writer_.get_id());
  for (const auto& t : store->readers_) store->thread_ids_.push_back(t.get_id());
  return std::unique_ptr<Store>(std::move(store));
}

void SqliteStore::SubmitWrite(std::function<Status(WriterConn&)> apply,
                              std::function<void(Status)> complete,
                              const std::function<void(Status)>& reject) {
  Status refused;
  {
    std::lock_guard lock(write_mu_);
    if (write_stopping_) {
      refused = Status::Unavailable("store closed");
    } else if (!failure_.empty()) {
      refused = Status::IoError("store failed earlier and accepts no writes: " + failure_);
    } else if (write_queue_.size() >= o_.max_queued_writes) {
      refused = Status::Unavailable("store write queue full (" +
                                    std::to_string(o_.max_queued_writes) + " operations)");
    } else {
      write_queue_.push_back(WriteOp{std::move(apply), std::move(complete)});
      queued_writes_.store(write_queue_.size(), std::memory_order_relaxed);
    }
  }
  if (!refused.ok()) return reject(std::move(refused));
  write_cv_.notify_one();
}

template <class T, class F>
void SqliteStore::SubmitRead(Callback<T> done, F fn) {
  Status refused;
  {
    std::lock_guard lock(read_mu_);
    if (read_stopping_) {
      refused = Status::Unavailable("store closed");
    } else if (read_queue_.size() >= o_.max_queued_reads) {
      refused = Status::Unavailable("store read queue full (" +
                                    std::to_string(o_.max_queued_reads) + " operations)");
    } else {
      // `done` is copied, not moved: the refusal path below still needs it.
      read_queue_.push_back([done, fn = std::move(fn)](ReaderConn& r) {
        Result<T> result = fn(r);
        done(std::move(result));
      });
    }
  }
  if (!refused.ok()) return done(std::move(refused));
  read_cv_.notify_one();
}

void SqliteStore::WriterLoop(std::unique_ptr<WriterConn> w) {
  std::vector<WriteOp> batch;
  batch.reserve(static_cast<size_t>(o_.max_batch_ops));
  for (;;) {
    {
      std::unique_lock lock(write_mu_);
      write_cv_.wait(lock, [&] { return write_stopping_ || !write_queue_.empty(); });
      if (write_queue_.empty()) break;  // stopping, and everything queued is done
      size_t n = std::min(write_queue_.size(), static_cast<size_t>(o_.max_batch_ops));
      for (size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(write_queue_.front()));
        write_queue_.pop_front();
      }
      queued_writes_.store(write_queue_.size(), std::memory_order_relaxed);
    }
    RunBatch(*w, batch);
    batch.clear();
  }
  // The connection closes here, on the thread that used it; the last close checkpoints the WAL.
}

void SqliteStore::FailStore(const std::string& why) {
  spdlog::critical("sqlite store {}: {}; the store refuses all writes until it is reopened",
                   o_.path, why);
  std::lock_guard lock(write_mu_);
  if (failure_.empty()) failure_ = why;
  failed_.store(true);
}

void SqliteStore::RunBatch(WriterConn& w, std::vector<WriteOp>& batch) {
  std::vector<Status> results(batch.size());
  auto fail_all = [&](const Status& s) {
    for (auto& r : results) r = s;
  };
  // Fails the batch and the store. The transaction, if still open, is rolled back.
  auto fail_batch = [&](int rc, std::string_view what) {
    Status s = SqlError(w.db(), rc, what);
    if (sqlite3_get_autocommit(w.db()) == 0) {
      int rb = w.Rollback();
      if (rb != SQLITE_DONE) {
        spdlog::error("sqlite store {}: ROLLBACK: {}", o_.path, sqlite3_errstr(rb));
      }
    }
    FailStore(s.message());
    fail_all(Status::IoError(s.message()));
  };

  const auto batch_start = std::chrono::steady_clock::now();  // the commit latency histogram
  if (failed_.load()) {
    std::lock_guard lock(write_mu_);
    fail_all(Status::IoError("store failed earlier and accepts no writes: " + failure_));
  } else if (int rc = w.Begin(); rc != SQLITE_DONE) {
    if (IsBusy(rc)) {
      // Another process holds the write lock past busy_timeout: nothing was written, the store is
      // fine.
      fail_all(SqlError(w.db(), rc, "BEGIN IMMEDIATE (database locked by another process)"));
    } else {
      fail_batch(rc, "BEGIN IMMEDIATE");
    }
  } else {
    bool broken = false;
    uint64_t ok_ops = 0;
    for (size_t i = 0; i < batch.size() && !broken; ++i) {
      if (int rc = w.Savepoint(); rc != SQLITE_DONE) {
        fail_batch(rc, "SAVEPOINT");
        broken = true;
        break;
      }
      Status s;
      try {
        s = batch[i].apply(w);
      } catch (const std::exception& e) {
        s = Status::Internal(std::string("store operation threw: ") + e.what());
      }
      if (sqlite3_get_autocommit(w.db()) != 0) {
        // SQLite rolled the whole transaction back (I/O error, disk full): the ops before are lost.
        FailStore("transaction rolled back by SQLite: " + s.message());
        fail_all(Status::IoError("transaction rolled back by SQLite: " + s.message()));
        broken = true;
        break;
      }
      int rc = s.ok() ? SQLITE_DONE : w.RollbackToSavepoint();
      if (rc == SQLITE_DONE) rc = w.Release();
      if (rc != SQLITE_DONE) {
        fail_batch(rc, s.ok() ? "RELEASE" : "ROLLBACK TO");
        broken = true;
        break;
      }
      if (s.ok()) ++ok_ops;
      results[i] = std::move(s);
    }
    if (!broken) {
      if (int rc = w.Commit(); rc != SQLITE_DONE) {
        fail_batch(rc, "COMMIT");
      } else {
        commits_.fetch_add(1, std::memory_order_relaxed);
        write_ops_.fetch_add(ok_ops, std::memory_order_relaxed);
        const std::chrono::duration<double> took = std::chrono::steady_clock::now() - batch_start;
        histograms_.batch_ops.Observe(static_cast<double>(batch.size()));
        histograms_.commit_seconds.Observe(took.count());
      }
    }
  }
  // Only now, after the commit (or the failure), do the callbacks run.
  for (size_t i = 0; i < batch.size(); ++i) {
    try {
      batch[i].complete(std::move(results[i]));
    } catch (const std::exception& e) {
      spdlog::error("sqlite store: a write callback threw: {}", e.what());
    } catch (...) {
      spdlog::error("sqlite store: a write callback threw");
    }
  }
}

void SqliteStore::ReaderLoop(std::unique_ptr<ReaderConn> r) {
  for (;;) {
    ReadOp op;
    {
      std::unique_lock lock(read_mu_);
      read_cv_.wait(lock, [&] { return read_stopping_ || !read_queue_.empty(); });
      if (read_queue_.empty()) break;
      op = std::move(read_queue_.front());
      read_queue_.pop_front();
    }
    try {
      op(*r);
    } catch (const std::exception& e) {
      spdlog::error("sqlite store: a read callback threw: {}", e.what());
    } catch (...) {
      spdlog::error("sqlite store: a read callback threw");
    }
  }
}

void SqliteStore::Close() {
  // Joining our own thread would deadlock: Close from a store callback is a programmer error.
  const auto self = std::this_thread::get_id();
  DTX_INVARIANT(std::find(thread_ids_.begin(), thread_ids_.end(), self) == thread_ids_.end(),
                "Store::Close called from a store callback");
  std::call_once(close_once_, [this] {
    {
      std::lock_guard lock(write_mu_);
      write_stopping_ = true;
    }
    write_cv_.notify_all();
    if (writer_.joinable()) writer_.join();
    {
      std::lock_guard lock(read_mu_);
      read_stopping_ = true;
    }
    read_cv_.notify_all();
    for (auto& t : readers_) {
      if (t.joinable()) t.join();
    }
  });
}

Status ValidateOptions(const SqliteOptions& o) {
  if (o.path.empty()) return Status::InvalidArgument("sqlite store: empty path");
  if (o.path == ":memory:" || o.path.starts_with("file:")) {
    return Status::InvalidArgument(
        "sqlite store: path must be a file name (for an in-memory store "
        "use --store memory:), got " +
        o.path);
  }
  if (o.max_batch_ops < 1)
    return Status::InvalidArgument("sqlite store: max_batch_ops must be >= 1");
  if (o.max_queued_writes < 1) {
    return Status::InvalidArgument("sqlite store: max_queued_writes must be >= 1");
  }
  if (o.max_queued_reads < 1) {
    return Status::InvalidArgument("sqlite store: max_queued_reads must be >= 1");
  }
  if (o.reader_threads < 1 || o.reader_threads > 64) {
    return Status::InvalidArgument("sqlite store: reader_threads must be 1..64");
  }
  if (o.busy_timeout_ms < 0) return Status::InvalidArgument("sqlite store: busy_timeout_ms < 0");
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<Store>> OpenSqliteStoreWithHooks(const SqliteOptions& options,
                                                        SqliteTestHooks hooks) {
  if (Status s = ValidateOptions(options); !s.ok()) return s;
  std::filesystem::path parent = std::filesystem::path(options.path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) {
      return Status::IoError("cannot create directory " + parent.string() +
                             " for the sqlite store: " + ec.message());
    }
  }
  auto store = SqliteStore::Open(options, std::move(hooks));
  if (!store.ok()) return store.status();
  spdlog::info("sqlite store {} open (schema version {}, {} readers)", options.path,
               kSqliteSchemaVersion, options.reader_threads);
  return store;
}

Result<std::unique_ptr<Store>> OpenSqliteStore(const SqliteOptions& options) {
  return OpenSqliteStoreWithHooks(options, SqliteTestHooks{});
}

}  // namespace dtx::store
