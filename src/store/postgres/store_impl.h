// PostgresStore: the class behind OpenPostgresStore (internal to src/store/postgres). Its members
// are defined by concern: postgres_store.cc (connections, open, close), schema.cc (migrations),
// writes.cc (the writer threads and write operations), reads.cc (the reader threads and reads).
#pragma once

#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "store/postgres/pg_conn.h"
#include "store/postgres/postgres_store.h"
#include "store/postgres/sql.h"

namespace dtx::store::pg_internal {

// plan_cache_mode (session setup) needs 12; everything else (identity columns, SKIP LOCKED, ON
// CONFLICT, WITH ORDINALITY) is older.
inline constexpr int kMinServerVersion = 120000;

// ---------------------------------------------------------------------------------------------------
// Reconnect backoff: the first attempt after a loss is immediate, then 50 ms doubling to 5 s, each
// with +-25 % jitter so that coordinators do not reconnect in lockstep after a server restart.

class Backoff {
 public:
  Backoff() : rng_(std::random_device{}()) {}
  std::chrono::milliseconds Next() {
    int64_t base = std::min<int64_t>(kMaxMs, kFirstMs << std::min(failures_, 10));
    ++failures_;
    std::uniform_real_distribution<double> jitter(0.75, 1.25);
    return std::chrono::milliseconds(
        static_cast<int64_t>(static_cast<double>(base) * jitter(rng_)));
  }
  void Reset() { failures_ = 0; }
  int failures() const { return failures_; }

 private:
  static constexpr int64_t kFirstMs = 50;
  static constexpr int64_t kMaxMs = 5000;
  int failures_ = 0;
  std::minstd_rand rng_;
};

// ---------------------------------------------------------------------------------------------------

class PostgresStore final : public Store {
 public:
  PostgresStore(PostgresOptions options, std::string display)
      : o_(std::move(options)), display_(std::move(display)) {}
  PostgresStore(const PostgresStore&) = delete;
  PostgresStore& operator=(const PostgresStore&) = delete;
  ~PostgresStore() override { Close(); }

  static Result<std::unique_ptr<Store>> Open(const PostgresOptions& options);

  void Create(core::TransSnapshot trans, DoneCallback done) override;
  void Update(TransUpdate update, DoneCallback done) override;
  void AddBranches(std::string gid, core::GlobalStatus expected_status,
                   std::vector<core::BranchRow> rows, DoneCallback done) override;
  void Load(std::string gid, Callback<std::optional<core::TransSnapshot>> done) override;
  void List(ListQuery query, Callback<ListPage> done) override;
  void ClaimDue(int64_t now_ms, int limit, int64_t lease_until_ms, std::string owner,
                Callback<std::vector<std::string>> done) override;
  void ResetNextCronTime(std::string gid, int64_t now_ms, DoneCallback done) override;
  void AcquireKeys(std::string gid, bool acquire, int64_t wait_until_ms,
                   Callback<core::KeyState> done) override;
  void WakeKeyWaiters(int64_t now_ms, int limit, Callback<std::vector<std::string>> done) override;
  void ResetCronTime(int64_t now_ms, int64_t timeout_ms, int limit,
                     Callback<int64_t> done) override;
  void KvGet(std::string cat, std::string k, Callback<std::optional<KvRow>> done) override;
  void KvQuery(std::string cat, std::string k, Callback<std::vector<KvRow>> done) override;
  void KvScan(std::string cat, int64_t before_id, int limit, Callback<KvPage> done) override;
  void KvPut(std::string cat, std::string k, std::string v, int64_t expected_version,
             int64_t now_ms, DoneCallback done) override;
  void KvDelete(std::string cat, std::string k, DoneCallback done) override;
  // Issue 13 (retention.cc; the reads in reads.cc).
  void LoadAttempts(std::string gid, Callback<std::vector<AttemptRow>> done) override;
  void CountDue(int64_t now_ms, int64_t cap, Callback<int64_t> done) override;
  void DeleteFinished(int64_t before_ms, int limit, Callback<RetentionCount> done) override;
  void DeleteKvBefore(std::string cat, int64_t before_ms, int limit,
                      Callback<int64_t> done) override;
  const StoreHistograms* Histograms() const override { return &histograms_; }

  StoreStats Stats() const override {
    return StoreStats{.commits = commits_.load(std::memory_order_relaxed),
                      .write_ops = write_ops_.load(std::memory_order_relaxed),
                      .queued_writes = queued_writes_.load(std::memory_order_relaxed)};
  }

  void Close() override;

 private:
  struct WriteOp {
    Status pre;                  // not OK: refused without reaching the database
    const char* stmt = nullptr;  // the prepared statement
    Params params;
    std::function<Status(const PGresult*)> parse;  // the statement's row -> the op's status
    std::function<void(Status)> complete;          // after the COMMIT (or the failure)
  };
  // A reader thread's state.
  struct Reader {
    std::unique_ptr<PgConn> conn;
    Backoff backoff;
    pg::Clock::time_point next_connect{};  // no attempt before this after a failure
    Status last_error;
  };
  using ReadOp = std::function<void(Reader&)>;

  Deadline IoDeadline() const {
    return pg::Clock::now() + std::chrono::milliseconds(o_.io_timeout_ms);
  }
  // A connection with its session set up; `prepare` also prepares the role's statements (which
  // needs the schema: the first writer migrates before).
  Result<std::unique_ptr<PgConn>> Connect(bool writer, bool prepare = true) const;
  Status Prepare(PgConn& c, bool writer) const;
  Status Migrate(PgConn& c) const;

  // `reject` gets the status of a write refused at once (inline, on the caller's thread).
  void SubmitWrite(WriteOp op, const std::function<void(Status)>& reject);
  template <class T, class F>
  void SubmitRead(Callback<T> done, F fn);

  void WriterLoop(std::unique_ptr<PgConn> conn);
  void RunBatch(PgConn& c, std::vector<WriteOp>& batch);
  void FailQueuedWrites(const Status& s);
  void ReaderLoop(std::unique_ptr<PgConn> conn);
  // Runs fn on the reader's connection, (re)connecting first if needed; a read whose connection
  // was lost is retried once on a new one (reads are idempotent).
  template <class T, class F>
  Result<T> WithReader(Reader& r, F& fn);

  Result<std::optional<core::TransSnapshot>> LoadOn(PgConn& c, const std::string& gid);
  Result<ListPage> ListOn(PgConn& c, const ListQuery& q);
  // Runs one prepared read statement and decodes its rows.
  Result<std::vector<KvRow>> KvReadOn(PgConn& c, const char* stmt, const Params& p);

  const PostgresOptions o_;
  const std::string display_;  // user@host:port/db (no password), for messages

  std::mutex write_mu_;
  std::condition_variable write_cv_;
  std::deque<WriteOp> write_queue_;  // guarded by write_mu_
  bool write_stopping_ = false;      // guarded by write_mu_
  std::string writer_error_;         // guarded by write_mu_: why the last connect failed
  std::atomic<int> connected_writers_{0};

  std::mutex read_mu_;
  std::condition_variable read_cv_;
  std::deque<ReadOp> read_queue_;  // guarded by read_mu_
  bool read_stopping_ = false;     // guarded by read_mu_

  // Backoff sleeps wait here (not on the queues' condition variables, so that a sleeping thread
  // never swallows a notification meant for a connected one); Close wakes them.
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stop_ = false;  // guarded by stop_mu_

  StoreHistograms histograms_;  // observed by the writer threads after each COMMIT
  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> write_ops_{0};
  std::atomic<uint64_t> queued_writes_{0};

  std::vector<std::thread> writers_;
  std::vector<std::thread> readers_;
  std::vector<std::thread::id> thread_ids_;  // written once in Open, then read-only
  std::once_flag close_once_;
};

}  // namespace dtx::store::pg_internal
