// The SQLite side of the inbox (inbox_db.h): BEGIN IMMEDIATE, insert ... on conflict do nothing
// with sqlite3_changes(), timestamps in Unix milliseconds. Runs on the caller's connection; set a
// busy timeout on it when other connections write the same file (SQLITE_BUSY is kTimeout here).
#include <sqlite3.h>

#include <memory>
#include <string>
#include <variant>

#include "sdk/barrier_internal.h"
#include "sdk/inbox_db.h"

namespace dtx::inbox_internal {
namespace {

constexpr size_t kMaxIdentifierBytes = 55;

Status SqliteError(sqlite3* db, int rc, std::string_view what) {
  std::string msg =
      "inbox: " + std::string(what) + ": " + sqlite3_errstr(rc) + " (" + sqlite3_errmsg(db) + ")";
  switch (rc & 0xFF) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Status::Timeout(std::move(msg));
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CORRUPT:
      return Status::IoError(std::move(msg));
    default:
      return Status::Internal(std::move(msg));
  }
}

struct StmtDeleter {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using Stmt = std::unique_ptr<sqlite3_stmt, StmtDeleter>;
using Param = std::variant<std::string_view, int64_t>;

std::string Column(sqlite3_stmt* s, int i) {
  const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
  return t == nullptr ? std::string() : std::string(t, sqlite3_column_bytes(s, i));
}

class SqliteInboxDb final : public InboxDb {
 public:
  SqliteInboxDb(sqlite3* db, Tables t) : db_(db), t_(std::move(t)) {}

  Status EnsureTables() override {
    if (sqlite3_get_autocommit(db_) == 0) {
      return Status::InvalidArgument(
          "inbox: EnsureTables needs a connection outside a transaction");
    }
    const std::string& a = t_.applied;
    const std::string& d = t_.dead;
    const std::string script =
        "BEGIN IMMEDIATE;\n"
        "create table if not exists " +
        a +
        " (consumer text not null, message_id text not null, applied_at integer not null,"
        " primary key (consumer, message_id)) without rowid;\n"
        "create index if not exists " +
        a + "_applied_at on " + a +
        " (consumer, applied_at);\n"
        "create table if not exists " +
        d +
        " (consumer text not null, message_id text not null, topic text not null,"
        " msg_key text not null, payload text not null, headers text not null,"
        " attempts integer not null, last_error text not null, dead_at integer not null,"
        " primary key (consumer, message_id));\n"
        "COMMIT;";
    int rc = sqlite3_exec(db_, script.c_str(), nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) {
      Status s = SqliteError(db_, rc, "create tables");
      if (sqlite3_get_autocommit(db_) == 0) Rollback();
      return s;
    }
    return Status::Ok();
  }

  Status Begin() override {
    if (sqlite3_get_autocommit(db_) == 0) {
      return Status::InvalidArgument(
          "inbox: the SQLite connection is inside a transaction; the inbox begins and ends its "
          "own");
    }
    return Exec("BEGIN IMMEDIATE", {}).status();
  }
  Status Commit() override {
    if (sqlite3_get_autocommit(db_) != 0) {
      return Status::Internal("inbox: the transaction was ended by the handler (COMMIT/ROLLBACK?)");
    }
    Status s = Exec("COMMIT", {}).status();
    if (!s.ok()) Rollback();  // COMMIT can fail with the transaction still open (SQLITE_BUSY)
    return s;
  }
  void Rollback() override {
    if (sqlite3_get_autocommit(db_) == 0) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }

  Status Savepoint() override { return Exec("savepoint dtx_inbox", {}).status(); }
  Status ReleaseSavepoint() override { return Exec("release savepoint dtx_inbox", {}).status(); }
  Status RollbackToSavepoint() override {
    return Exec("rollback to savepoint dtx_inbox", {}).status();
  }

  Result<bool> InsertApplied(const std::string& consumer, const std::string& id) override {
    Result<int> n = Exec("insert into " + t_.applied +
                             " (consumer, message_id, applied_at) values (?,?,?)"
                             " on conflict (consumer, message_id) do nothing",
                         {consumer, id, NowUnixMs()});
    if (!n.ok()) return n.status();
    return n.value() == 1;
  }

  Status InsertDeadLetter(const std::string& consumer, const InboxMessage& m, int attempts,
                          const std::string& error) override {
    const std::string headers = EncodeHeaders(m.headers);
    return Exec("insert or replace into " + t_.dead +
                    " (consumer, message_id, topic, msg_key, payload, headers, attempts,"
                    " last_error, dead_at) values (?,?,?,?,?,?,?,?,?)",
                {consumer, m.message_id, m.topic, m.key, m.payload, headers,
                 static_cast<int64_t>(attempts), error, NowUnixMs()})
        .status();
  }

  Status DeleteDeadLetter(const std::string& consumer, const std::string& id) override {
    return Exec("delete from " + t_.dead + " where consumer = ? and message_id = ?", {consumer, id})
        .status();
  }

  Status RecordDeadLetterFailure(const std::string& consumer, const std::string& id,
                                 const std::string& error) override {
    return Exec("update " + t_.dead +
                    " set attempts = attempts + 1, last_error = ? where consumer = ? and "
                    "message_id = ?",
                {error, consumer, id})
        .status();
  }

  Result<std::vector<DeadLetter>> ListDeadLetters(const std::string& consumer,
                                                  size_t limit) override {
    const std::string sql = "select message_id, topic, msg_key, payload, headers, attempts, " +
                            std::string("last_error, dead_at from ") + t_.dead +
                            " where consumer = ? order by dead_at, message_id limit ?";
    Result<Stmt> stmt = Prepare(sql, {consumer, static_cast<int64_t>(limit)});
    if (!stmt.ok()) return stmt.status();
    std::vector<DeadLetter> out;
    sqlite3_stmt* s = stmt.value().get();
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      DeadLetter d;
      d.message = {.topic = Column(s, 1),
                   .key = Column(s, 2),
                   .message_id = Column(s, 0),
                   .payload = Column(s, 3),
                   .headers = DecodeHeaders(Column(s, 4))};
      d.attempts = sqlite3_column_int(s, 5);
      d.last_error = Column(s, 6);
      d.dead_at_ms = sqlite3_column_int64(s, 7);
      out.push_back(std::move(d));
    }
    if (rc != SQLITE_DONE) return SqliteError(db_, rc, "list dead letters");
    return out;
  }

  Result<int64_t> DeleteAppliedBefore(const std::string& consumer, int64_t before_ms,
                                      size_t batch) override {
    Result<int> n = Exec(
        "delete from " + t_.applied + " where (consumer, message_id) in (select consumer, " +
            "message_id from " + t_.applied +
            " a where consumer = ? and applied_at < ? and not exists (select 1 from " + t_.dead +
            " d where d.consumer = a.consumer and d.message_id = a.message_id) limit ?)",
        {consumer, before_ms, static_cast<int64_t>(batch)});
    if (!n.ok()) return n.status();
    return static_cast<int64_t>(n.value());
  }

 private:
  Result<Stmt> Prepare(const std::string& sql, const std::vector<Param>& params) {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()), &raw, nullptr);
    Stmt stmt(raw);
    if (rc != SQLITE_OK) return SqliteError(db_, rc, "prepare");
    for (size_t i = 0; i < params.size(); ++i) {
      const int index = static_cast<int>(i + 1);
      if (const auto* v = std::get_if<int64_t>(&params[i])) {
        rc = sqlite3_bind_int64(raw, index, *v);
      } else {
        std::string_view t = std::get<std::string_view>(params[i]);
        rc = sqlite3_bind_text(raw, index, t.data() != nullptr ? t.data() : "",
                               static_cast<int>(t.size()), SQLITE_TRANSIENT);
      }
      if (rc != SQLITE_OK) return SqliteError(db_, rc, "bind");
    }
    return stmt;
  }
  // Runs one statement; returns the rows it changed.
  Result<int> Exec(const std::string& sql, const std::vector<Param>& params) {
    Result<Stmt> stmt = Prepare(sql, params);
    if (!stmt.ok()) return stmt.status();
    int rc = sqlite3_step(stmt.value().get());
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return SqliteError(db_, rc, sql.substr(0, 40));
    return sqlite3_changes(db_);
  }

  sqlite3* db_;
  Tables t_;
};

}  // namespace

Result<std::unique_ptr<InboxDb>> OpenSqliteInboxDb(sqlite3* db, Tables tables) {
  for (const std::string& name : {tables.applied, tables.dead}) {
    Result<barrier_internal::TableName> n =
        barrier_internal::ParseTableName(name, /*allow_schema=*/false, kMaxIdentifierBytes);
    if (!n.ok()) return Status::InvalidArgument("inbox: " + n.status().message());
  }
  return std::unique_ptr<InboxDb>(new SqliteInboxDb(db, std::move(tables)));
}

}  // namespace dtx::inbox_internal
