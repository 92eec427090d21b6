// The SQLite adapter of the barrier (PROTOCOL.md §4.1-4.2): BEGIN IMMEDIATE, the upsert form of
// insert-ignore with sqlite3_changes(), and the §4.1 table. Runs on the caller's connection.
#include <sqlite3.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <string>

#include "dtx/barrier.h"
#include "sdk/barrier_internal.h"

namespace dtx {
namespace {

constexpr size_t kMaxIdentifierBytes = 63;
constexpr int kMinSqliteVersion = 3024000;  // upsert: insert ... on conflict(...) do nothing

Status SqliteError(sqlite3* db, int rc, std::string_view what) {
  std::string msg = std::string(what) + ": " + sqlite3_errstr(rc);
  if (db != nullptr) {
    msg += " (";
    msg += sqlite3_errmsg(db);
    msg += ")";
  }
  switch (rc & 0xFF) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Status::Timeout(std::move(msg));  // the busy timeout expired: retry later
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CORRUPT:
    case SQLITE_CANTOPEN:
    case SQLITE_NOTADB:
    case SQLITE_READONLY:
      return Status::IoError(std::move(msg));
    default:
      return Status::Internal(std::move(msg));
  }
}

struct StmtDeleter {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using Stmt = std::unique_ptr<sqlite3_stmt, StmtDeleter>;

Result<Stmt> Prepare(sqlite3* db, const std::string& sql, std::string_view what) {
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(db, sql.c_str(), static_cast<int>(sql.size()), &raw, nullptr);
  Stmt stmt(raw);
  if (rc != SQLITE_OK) return SqliteError(db, rc, what);
  return stmt;
}

// Binds text; never NULL, even for an empty view (whose data() may be null).
Status BindText(sqlite3* db, sqlite3_stmt* stmt, int index, std::string_view value,
                std::string_view what) {
  const char* data = value.data() != nullptr ? value.data() : "";
  int rc = sqlite3_bind_text(stmt, index, data, static_cast<int>(value.size()), SQLITE_TRANSIENT);
  if (rc != SQLITE_OK) return SqliteError(db, rc, what);
  return Status::Ok();
}

}  // namespace

SqliteDb::SqliteDb(sqlite3* db, SqliteBarrierOptions options)
    : db_(db), options_(std::move(options)) {
  DTX_ASSERT(db_ != nullptr);
  if (sqlite3_libversion_number() < kMinSqliteVersion) {
    usable_ = Status::Unimplemented(std::string("the SQLite barrier needs SQLite >= 3.24, have ") +
                                    sqlite3_libversion());
    return;
  }
  Result<barrier_internal::TableName> name =
      barrier_internal::ParseTableName(options_.table, /*allow_schema=*/false, kMaxIdentifierBytes);
  if (!name.ok()) {
    usable_ = name.status();
    return;
  }
  if (options_.busy_timeout.count() > 0) {
    auto ms = std::min<long long>(options_.busy_timeout.count(), std::numeric_limits<int>::max());
    sqlite3_busy_timeout(db_, static_cast<int>(ms));
  }
}

bool SqliteDb::InTransaction() const { return sqlite3_get_autocommit(db_) == 0; }

Status SqliteDb::Exec(const char* sql, std::string_view what) {
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return SqliteError(db_, rc, what);
  return Status::Ok();
}

Status SqliteDb::Begin() {
  if (!usable_.ok()) return usable_;
  if (InTransaction()) {
    return Status::InvalidArgument(
        "barrier: the SQLite connection is already inside a transaction; the barrier must begin "
        "and end its own");
  }
  return Exec("BEGIN IMMEDIATE", "barrier: BEGIN IMMEDIATE");
}

Result<int> SqliteDb::InsertIgnore(const BarrierRow& row) {
  if (!usable_.ok()) return usable_;
  if (Status s = ValidateBarrierRow(row); !s.ok()) return s;
  const std::string sql = "insert into " + options_.table +
                          "(trans_type, gid, branch_id, op, barrier_id, reason) "
                          "values(?,?,?,?,?,?) on conflict(gid, branch_id, op, barrier_id) "
                          "do nothing";
  constexpr std::string_view kWhat = "barrier: insert";
  Result<Stmt> stmt = Prepare(db_, sql, kWhat);
  if (!stmt.ok()) return stmt.status();
  const std::string_view values[] = {row.trans_type, row.gid,        row.branch_id,
                                     row.op,         row.barrier_id, row.reason};
  for (int i = 0; i < 6; ++i) {
    if (Status s = BindText(db_, stmt->get(), i + 1, values[i], kWhat); !s.ok()) return s;
  }
  int rc = sqlite3_step(stmt->get());
  if (rc != SQLITE_DONE) return SqliteError(db_, rc, kWhat);
  int changes = sqlite3_changes(db_);
  if (changes != 0 && changes != 1) {
    return Status::Internal("barrier: insert changed " + std::to_string(changes) + " rows");
  }
  return changes;
}

Result<std::string> SqliteDb::SelectReason(std::string_view gid, std::string_view branch_id,
                                           std::string_view op, std::string_view barrier_id) {
  if (!usable_.ok()) return usable_;
  const std::string sql = "select reason from " + options_.table +
                          " where gid=? and branch_id=? and op=? and barrier_id=?";
  constexpr std::string_view kWhat = "barrier: select reason";
  Result<Stmt> stmt = Prepare(db_, sql, kWhat);
  if (!stmt.ok()) return stmt.status();
  const std::string_view values[] = {gid, branch_id, op, barrier_id};
  for (int i = 0; i < 4; ++i) {
    if (Status s = BindText(db_, stmt->get(), i + 1, values[i], kWhat); !s.ok()) return s;
  }
  int rc = sqlite3_step(stmt->get());
  if (rc == SQLITE_DONE) return Status::NotFound("barrier: no row");
  if (rc != SQLITE_ROW) return SqliteError(db_, rc, kWhat);
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt->get(), 0));
  int bytes = sqlite3_column_bytes(stmt->get(), 0);
  return text == nullptr ? std::string() : std::string(text, static_cast<size_t>(bytes));
}

Status SqliteDb::Commit() {
  if (!usable_.ok()) return usable_;
  if (!InTransaction()) {
    return Status::Internal(
        "barrier: the transaction was ended before Call could commit it (did the business code "
        "COMMIT or ROLLBACK?)");
  }
  Status s = Exec("COMMIT", "barrier: COMMIT");
  if (!s.ok()) Rollback();  // COMMIT can fail with the transaction still open (SQLITE_BUSY)
  return s;
}

void SqliteDb::Rollback() {
  // Some errors (SQLITE_FULL, SQLITE_IOERR, ...) roll the transaction back automatically.
  if (InTransaction()) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
}

Status SqliteDb::EnsureTable() {
  if (!usable_.ok()) return usable_;
  if (InTransaction()) {
    return Status::InvalidArgument("EnsureBarrierTable: the connection is inside a transaction");
  }
  const std::string& t = options_.table;
  const std::string index = t == "dtm_barrier" ? "uniq_barrier" : "uniq_" + t;
  const std::string sql =
      "create table if not exists " + t +
      "(\n"
      "  id integer PRIMARY KEY AUTOINCREMENT,\n"
      "  trans_type text NOT NULL DEFAULT '', gid text NOT NULL DEFAULT '',"
      " branch_id text NOT NULL DEFAULT '',\n"
      "  op text NOT NULL DEFAULT '', barrier_id text NOT NULL DEFAULT '',"
      " reason text NOT NULL DEFAULT '',\n"
      "  create_time text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),\n"
      "  update_time text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')));\n"
      "create unique index if not exists " +
      index + " on " + t + "(gid, branch_id, op, barrier_id);";
  if (Status s = Exec("BEGIN IMMEDIATE", "EnsureBarrierTable: BEGIN IMMEDIATE"); !s.ok()) return s;
  Status s = Exec(sql.c_str(), "EnsureBarrierTable");
  if (s.ok()) s = Exec("COMMIT", "EnsureBarrierTable: COMMIT");
  if (!s.ok()) Rollback();
  return s;
}

Result<int64_t> SqliteDb::DeleteBefore(std::chrono::system_clock::time_point horizon, int limit) {
  if (!usable_.ok()) return usable_;
  if (Status s = barrier_internal::ValidateCleanupBatch(limit); !s.ok()) return s;
  if (InTransaction()) {
    return Status::InvalidArgument("barrier cleanup: the connection is inside a transaction");
  }
  // create_time is UTC text 'YYYY-MM-DDTHH:MM:SS.mmmZ' (EnsureTable's default): it sorts like
  // time. The oldest rows come first in rowid order, so the inner select stops early.
  const int64_t ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(horizon.time_since_epoch()).count();
  const std::string sql = "delete from " + options_.table + " where rowid in (select rowid from " +
                          options_.table +
                          " where create_time < strftime('%Y-%m-%dT%H:%M:%fZ', ?1 / 1000.0, "
                          "'unixepoch') order by rowid limit ?2)";
  constexpr std::string_view kWhat = "barrier: cleanup";
  Result<Stmt> stmt = Prepare(db_, sql, kWhat);
  if (!stmt.ok()) return stmt.status();
  sqlite3_bind_int64(stmt->get(), 1, ms);
  sqlite3_bind_int(stmt->get(), 2, limit);
  const int rc = sqlite3_step(stmt->get());  // autocommit: its own short write transaction
  if (rc != SQLITE_DONE) return SqliteError(db_, rc, kWhat);
  return static_cast<int64_t>(sqlite3_changes(db_));
}

Result<int64_t> CleanBarrierTable(SqliteDb& db, const BarrierCleanupOptions& options) {
  return barrier_internal::CleanInBatches(
      [&db](std::chrono::system_clock::time_point h, int n) { return db.DeleteBefore(h, n); },
      options);
}

}  // namespace dtx
