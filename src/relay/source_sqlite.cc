// The SQLite outbox source: see source.h. SQLite has one writer and no row locks, so one relay
// runs per database file (an flock on PATH.relay-lock); a claim is a plain read, and Finish is a
// short write transaction, so the application's writers are never held up by a publish.
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "dtx/outbox.h"
#include "relay/source_internal.h"

namespace dtx::relay {
namespace {

struct StmtDeleter {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using Stmt = std::unique_ptr<sqlite3_stmt, StmtDeleter>;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class SqliteSource final : public OutboxSource {
 public:
  SqliteSource(std::string path, std::string table)
      : path_(std::move(path)), table_(std::move(table)) {}
  ~SqliteSource() override {
    if (db_ != nullptr) sqlite3_close(db_);
    if (lock_fd_ >= 0) ::close(lock_fd_);
  }

  Status Open(bool take_lock) {
    if (take_lock) {
      const std::string lock = path_ + ".relay-lock";
      lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      if (lock_fd_ < 0 || ::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
        return Status::Unavailable("another dtx relay runs on " + path_ +
                                   " (one relay per SQLite outbox; lock " + lock + ")");
      }
    }
    if (sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
        SQLITE_OK) {
      return Error("open");
    }
    sqlite3_busy_timeout(db_, 10'000);
    return Status::Ok();
  }

  Status Prepare(bool init) override {
    if (init) return Outbox({.table = table_}).EnsureTable(db_);
    Result<Stmt> st = Prep("select 1 from sqlite_master where type = 'table' and name = ?");
    if (!st.ok()) return st.status();
    sqlite3_bind_text(st.value().get(), 1, table_.c_str(), -1, SQLITE_STATIC);
    if (sqlite3_step(st.value().get()) != SQLITE_ROW) {
      return Status::NotFound(MissingTableMessage(table_));
    }
    return Status::Ok();
  }

  Result<std::vector<OutboxRow>> Claim(size_t max) override {
    Result<Stmt> st =
        Prep("select id, message_id, topic, msg_key, payload, headers, attempts from " + table_ +
             " where state = 0 order by id limit ?");
    if (!st.ok()) return st.status();
    sqlite3_stmt* s = st.value().get();
    sqlite3_bind_int64(s, 1, static_cast<int64_t>(max));
    std::vector<OutboxRow> rows;
    int rc;
    auto text = [&](int col) {
      const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, col));
      return std::string(p != nullptr ? p : "", sqlite3_column_bytes(s, col));
    };
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      rows.push_back({.id = sqlite3_column_int64(s, 0),
                      .message_id = text(1),
                      .topic = text(2),
                      .key = text(3),
                      .payload = text(4),
                      .headers = text(5),
                      .attempts = sqlite3_column_int(s, 6)});
    }
    if (rc != SQLITE_DONE) return Error("claim");
    return rows;
  }

  Status Finish(const std::vector<RowOutcome>& outcomes, int max_attempts,
                bool delete_published) override {
    if (sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
      return Error("begin");
    }
    Result<Stmt> pub = Prep(
        delete_published ? "delete from " + table_ + " where id = ?2 and ?1 is not null"
                         : "update " + table_ + " set state = 1, published_at = ? where id = ?");
    Result<Stmt> refuse = Prep("update " + table_ +
                               " set attempts = attempts + 1, last_error = ?, state = case when "
                               "attempts + 1 >= ? then 2 else 0 end where id = ?");
    Status s = !pub.ok() ? pub.status() : refuse.status();
    const int64_t now = NowMs();
    for (const RowOutcome& o : outcomes) {
      if (!s.ok()) break;
      sqlite3_stmt* st =
          o.kind == RowOutcome::kPublished ? pub.value().get() : refuse.value().get();
      sqlite3_reset(st);
      if (o.kind == RowOutcome::kPublished) {
        sqlite3_bind_int64(st, 1, now);
        sqlite3_bind_int64(st, 2, o.id);
      } else {
        sqlite3_bind_text(st, 1, o.error.c_str(), -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, o.kind == RowOutcome::kMalformed ? 0 : max_attempts);
        sqlite3_bind_int64(st, 3, o.id);
      }
      if (sqlite3_step(st) != SQLITE_DONE) s = Error("mark");
    }
    pub = Status::Internal("finalized");  // finalize before COMMIT
    refuse = Status::Internal("finalized");
    if (s.ok() && sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
      s = Error("commit");
    }
    if (!s.ok()) Abandon();
    return s;
  }

  void Abandon() override {
    if (sqlite3_get_autocommit(db_) == 0) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }

  bool WaitForRows(std::chrono::milliseconds timeout) override {
    SleepFor(timeout);
    return false;
  }

  Result<int64_t> DeletePublished(std::chrono::seconds age, size_t max) override {
    Result<Stmt> st = Prep("delete from " + table_ + " where id in (select id from " + table_ +
                           " where state = 1 and published_at < ? limit ?)");
    if (!st.ok()) return st.status();
    sqlite3_bind_int64(st.value().get(), 1, NowMs() - age.count() * 1000);
    sqlite3_bind_int64(st.value().get(), 2, static_cast<int64_t>(max));
    if (sqlite3_step(st.value().get()) != SQLITE_DONE) return Error("retention delete");
    return static_cast<int64_t>(sqlite3_changes(db_));
  }

  Result<int64_t> Requeue(const std::vector<int64_t>& ids) override {
    std::string sql =
        "update " + table_ + " set state = 0, attempts = 0, last_error = null where state = 2";
    if (!ids.empty()) {
      sql += " and id in (";
      for (size_t i = 0; i < ids.size(); ++i) sql += (i ? "," : "") + std::to_string(ids[i]);
      sql += ")";
    }
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
      return Error("requeue");
    }
    return static_cast<int64_t>(sqlite3_changes(db_));
  }

  Result<std::vector<int64_t>> CountByState() override {
    Result<Stmt> st = Prep("select sum(state = 0), sum(state = 1), sum(state = 2) from " + table_);
    if (!st.ok()) return st.status();
    if (sqlite3_step(st.value().get()) != SQLITE_ROW) return Error("count");
    return std::vector<int64_t>{sqlite3_column_int64(st.value().get(), 0),
                                sqlite3_column_int64(st.value().get(), 1),
                                sqlite3_column_int64(st.value().get(), 2)};
  }

 private:
  Status Error(std::string_view what) {
    std::string msg = "outbox " + std::string(what) + ": " + sqlite3_errmsg(db_);
    if (msg.find("no such table") != std::string::npos) {
      return Status::NotFound(MissingTableMessage(table_));
    }
    return Status::Unavailable(msg);
  }
  Result<Stmt> Prep(const std::string& sql) {
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
      sqlite3_finalize(raw);
      return Error("prepare");
    }
    return Stmt(raw);
  }

  std::string path_;
  std::string table_;
  sqlite3* db_ = nullptr;
  int lock_fd_ = -1;
};

}  // namespace

Result<std::unique_ptr<OutboxSource>> OpenSqliteSource(std::string_view path,
                                                       std::string_view table, bool exclusive) {
  auto source = std::make_unique<SqliteSource>(std::string(path), std::string(table));
  if (Status s = source->Open(exclusive); !s.ok()) return s;
  return std::unique_ptr<OutboxSource>(std::move(source));
}

}  // namespace dtx::relay
