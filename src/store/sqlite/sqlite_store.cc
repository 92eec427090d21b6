#include "store/sqlite/sqlite_store.h"

#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
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

namespace dtx::store {
namespace {

// ---------------------------------------------------------------------------------------------------
// Schema. Each entry upgrades the database from version (index) to version (index + 1). Never edit
// a released step: append a new one. All steps run in one transaction at open. Times are INTEGER
// epoch milliseconds (0 = unset); enums are their wire strings (core::ToString); options is the
// JSON string of core::EncodeOptionsJson.
constexpr std::string_view kMigrations[] = {
    // v1: the initial schema.
    R"sql(
CREATE TABLE trans_global (
  id                 INTEGER PRIMARY KEY AUTOINCREMENT,
  gid                TEXT    NOT NULL UNIQUE,
  trans_type         TEXT    NOT NULL,
  status             TEXT    NOT NULL,
  protocol           TEXT    NOT NULL DEFAULT '',
  query_prepared     TEXT    NOT NULL DEFAULT '',
  custom_data        TEXT    NOT NULL DEFAULT '',
  rollback_reason    TEXT    NOT NULL DEFAULT '',
  result             TEXT    NOT NULL DEFAULT '',
  owner              TEXT    NOT NULL DEFAULT '',
  options            TEXT    NOT NULL DEFAULT '',
  create_time        INTEGER NOT NULL DEFAULT 0,
  update_time        INTEGER NOT NULL DEFAULT 0,
  finish_time        INTEGER NOT NULL DEFAULT 0,
  rollback_time      INTEGER NOT NULL DEFAULT 0,
  next_cron_interval INTEGER NOT NULL DEFAULT 0,
  next_cron_time     INTEGER NOT NULL DEFAULT 0,
  retry_count        INTEGER NOT NULL DEFAULT 0
);
-- Due work only: finished rows (the vast majority over time) are not in this index, so ClaimDue and
-- ResetCronTime cost O(unfinished). Queries must repeat this exact WHERE term to use it.
CREATE INDEX trans_global_due ON trans_global(next_cron_time)
  WHERE status IN ('prepared','submitted','aborting');
-- List filters; both also carry the rowid, so "status = ? AND id < ? ORDER BY id DESC" is an index walk.
CREATE INDEX trans_global_status ON trans_global(status);
CREATE INDEX trans_global_create_time ON trans_global(create_time);
CREATE TABLE trans_branch_op (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  gid         TEXT    NOT NULL,
  url         TEXT    NOT NULL DEFAULT '',
  bin_data    BLOB    NOT NULL DEFAULT x'',
  branch_id   TEXT    NOT NULL,
  op          TEXT    NOT NULL,
  status      TEXT    NOT NULL,
  create_time INTEGER NOT NULL DEFAULT 0,
  update_time INTEGER NOT NULL DEFAULT 0,
  finish_time INTEGER NOT NULL DEFAULT 0,
  attempts    INTEGER NOT NULL DEFAULT 0,
  last_error  TEXT    NOT NULL DEFAULT '',
  UNIQUE (gid, branch_id, op)
);
)sql",
    // v2: the key-value table (topics: cat 'topics', k = topic name, v = JSON of subscribers).
    R"sql(
CREATE TABLE kv (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  cat         TEXT    NOT NULL,
  k           TEXT    NOT NULL,
  v           TEXT    NOT NULL DEFAULT '',
  version     INTEGER NOT NULL DEFAULT 1,
  create_time INTEGER NOT NULL DEFAULT 0,
  update_time INTEGER NOT NULL DEFAULT 0,
  UNIQUE (cat, k)
);
)sql",
    // v3: trans_global and trans_branch_op without AUTOINCREMENT. AUTOINCREMENT makes every insert
    // also update sqlite_sequence; a plain INTEGER PRIMARY KEY takes max(id) + 1, which is as
    // monotonic here because dtx never deletes rows (a retention job that deletes old rows keeps
    // the newest). It cost ~15 % of the coordinator's CPU per saga (docs/benchmarks.md). Branch
    // rows are keyed by their transaction's id (trans_id) instead of its gid: ids ascend, so new
    // rows append to that index even when gids are random (client-side UUIDs), where a gid key
    // dirtied one more random page per transaction. SQLite cannot change a table in place: each
    // table is rebuilt (rows, ids and indexes kept).
    R"sql(
CREATE TABLE trans_global_v3 (
  id                 INTEGER PRIMARY KEY,
  gid                TEXT    NOT NULL UNIQUE,
  trans_type         TEXT    NOT NULL,
  status             TEXT    NOT NULL,
  protocol           TEXT    NOT NULL DEFAULT '',
  query_prepared     TEXT    NOT NULL DEFAULT '',
  custom_data        TEXT    NOT NULL DEFAULT '',
  rollback_reason    TEXT    NOT NULL DEFAULT '',
  result             TEXT    NOT NULL DEFAULT '',
  owner              TEXT    NOT NULL DEFAULT '',
  options            TEXT    NOT NULL DEFAULT '',
  create_time        INTEGER NOT NULL DEFAULT 0,
  update_time        INTEGER NOT NULL DEFAULT 0,
  finish_time        INTEGER NOT NULL DEFAULT 0,
  rollback_time      INTEGER NOT NULL DEFAULT 0,
  next_cron_interval INTEGER NOT NULL DEFAULT 0,
  next_cron_time     INTEGER NOT NULL DEFAULT 0,
  retry_count        INTEGER NOT NULL DEFAULT 0
);
INSERT INTO trans_global_v3 (id, gid, trans_type, status, protocol, query_prepared, custom_data,
  rollback_reason, result, owner, options, create_time, update_time, finish_time, rollback_time,
  next_cron_interval, next_cron_time, retry_count)
SELECT id, gid, trans_type, status, protocol, query_prepared, custom_data, rollback_reason, result,
  owner, options, create_time, update_time, finish_time, rollback_time, next_cron_interval,
  next_cron_time, retry_count FROM trans_global ORDER BY id;
DROP TABLE trans_global;
ALTER TABLE trans_global_v3 RENAME TO trans_global;
-- The same rows as v1's due index; the predicate is written with OR because SQLite evaluates a
-- partial index's IN (...) list through a temporary b-tree for every row written.
CREATE INDEX trans_global_due ON trans_global(next_cron_time)
  WHERE status = 'prepared' OR status = 'submitted' OR status = 'aborting';
CREATE INDEX trans_global_status ON trans_global(status);
CREATE INDEX trans_global_create_time ON trans_global(create_time);
CREATE TABLE trans_branch_op_v3 (
  id          INTEGER PRIMARY KEY,
  trans_id    INTEGER NOT NULL,
  gid         TEXT    NOT NULL,
  url         TEXT    NOT NULL DEFAULT '',
  bin_data    BLOB    NOT NULL DEFAULT x'',
  branch_id   TEXT    NOT NULL,
  op          TEXT    NOT NULL,
  status      TEXT    NOT NULL,
  create_time INTEGER NOT NULL DEFAULT 0,
  update_time INTEGER NOT NULL DEFAULT 0,
  finish_time INTEGER NOT NULL DEFAULT 0,
  attempts    INTEGER NOT NULL DEFAULT 0,
  last_error  TEXT    NOT NULL DEFAULT '',
  UNIQUE (trans_id, branch_id, op)
);
INSERT INTO trans_branch_op_v3 (id, trans_id, gid, url, bin_data, branch_id, op, status,
  create_time, update_time, finish_time, attempts, last_error)
SELECT b.id, g.id, b.gid, b.url, b.bin_data, b.branch_id, b.op, b.status, b.create_time,
  b.update_time, b.finish_time, b.attempts, b.last_error
FROM trans_branch_op b JOIN trans_global g ON g.gid = b.gid ORDER BY b.id;
DROP TABLE trans_branch_op;
ALTER TABLE trans_branch_op_v3 RENAME TO trans_branch_op;
DELETE FROM sqlite_sequence WHERE name IN ('trans_global', 'trans_branch_op');
)sql",
    // v4: the lease of a round in flight, kept apart from the wake-up (core::GlobalTrans): an
    // operator's retry makes a transaction due without cutting a lease short.
    R"sql(
ALTER TABLE trans_global ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
)sql",
};
static_assert(std::size(kMigrations) == kSqliteSchemaVersion,
              "kSqliteSchemaVersion must equal the number of migration steps");

constexpr const char* kGlobalColumns =
    "id, gid, trans_type, status, protocol, query_prepared, custom_data, rollback_reason, result, "
    "owner, options, create_time, update_time, finish_time, rollback_time, next_cron_interval, "
    "next_cron_time, retry_count, lease_until";
constexpr const char* kBranchColumns =
    "id, gid, url, bin_data, branch_id, op, status, create_time, update_time, finish_time, "
    "attempts, "
    "last_error";
constexpr const char* kKvColumns = "id, cat, k, v, version, create_time, update_time";

// ---------------------------------------------------------------------------------------------------
// Thin RAII over the C API.

bool IsBusy(int rc) {
  int primary = rc & 0xff;
  return primary == SQLITE_BUSY || primary == SQLITE_LOCKED;
}

bool IsUniqueViolation(int rc) {
  return rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY;
}

// A failed SQLite call as a Status: kUnavailable if the database is locked (retryable), else
// kIoError.
Status SqlError(sqlite3* db, int rc, std::string_view what) {
  std::string msg(what);
  msg += ": ";
  msg += sqlite3_errstr(rc);
  if (db != nullptr) {
    const char* detail = sqlite3_errmsg(db);
    if (detail != nullptr && std::string_view(detail) != sqlite3_errstr(rc)) {
      msg += " (";
      msg += detail;
      msg += ")";
    }
  }
  if (IsBusy(rc)) return Status::Unavailable(std::move(msg));
  return Status::IoError(std::move(msg));
}

class Db {
 public:
  Db() = default;
  explicit Db(sqlite3* db) : db_(db) {}
  Db(Db&& o) noexcept : db_(std::exchange(o.db_, nullptr)) {}
  Db& operator=(Db&& o) noexcept {
    std::swap(db_, o.db_);
    return *this;
  }
  ~Db() {
    if (db_ != nullptr) {
      int rc = sqlite3_close(db_);
      if (rc != SQLITE_OK) spdlog::error("sqlite3_close: {}", sqlite3_errstr(rc));
    }
  }
  sqlite3* get() const { return db_; }

 private:
  sqlite3* db_ = nullptr;
};

class Stmt {
 public:
  Stmt() = default;
  Stmt(Stmt&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Stmt& operator=(Stmt&& o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~Stmt() { sqlite3_finalize(s_); }
  sqlite3_stmt* get() const { return s_; }

  // Prepared once per connection and kept (SQLITE_PREPARE_PERSISTENT).
  static Status Prepare(sqlite3* db, std::string_view sql, Stmt* out) {
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    if (rc != SQLITE_OK) {
      sqlite3_finalize(s);
      return SqlError(db, rc, "prepare '" + std::string(sql.substr(0, 60)) + "'");
    }
    *out = Stmt();
    out->s_ = s;
    return Status::Ok();
  }

 private:
  sqlite3_stmt* s_ = nullptr;
};

// One use of a cached statement: binds, steps, reads columns; resets and clears the bindings when
// it goes out of scope (so an unbound parameter is NULL next time).
class Use {
 public:
  explicit Use(const Stmt& s) : s_(s.get()) {}
  Use(const Use&) = delete;
  Use& operator=(const Use&) = delete;
  ~Use() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }

  Use& Int(int i, int64_t v) {
    Check(sqlite3_bind_int64(s_, i, v));
    return *this;
  }
  Use& Text(int i, std::string_view v) {
    Check(sqlite3_bind_text64(s_, i, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
    return *this;
  }
  Use& Blob(int i, std::string_view v) {
    // A zero-length blob with a null pointer would bind NULL; bind an empty blob explicitly.
    Check(v.empty() ? sqlite3_bind_zeroblob(s_, i, 0)
                    : sqlite3_bind_blob64(s_, i, v.data(), v.size(), SQLITE_TRANSIENT));
    return *this;
  }
  Use& OptInt(int i, const std::optional<int64_t>& v) { return v ? Int(i, *v) : *this; }
  Use& OptText(int i, const std::optional<std::string>& v) { return v ? Text(i, *v) : *this; }
  Use& Named(const char* name, int64_t v) { return Int(Index(name), v); }
  Use& Named(const char* name, std::string_view v) { return Text(Index(name), v); }

  // SQLITE_ROW, SQLITE_DONE or an error code (a failed bind is reported here).
  int Step() {
    if (bind_rc_ != SQLITE_OK) return bind_rc_;
    return sqlite3_step(s_);
  }

  int64_t ColInt(int i) const { return sqlite3_column_int64(s_, i); }
  std::string ColText(int i) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, i));
    int n = sqlite3_column_bytes(s_, i);
    return p == nullptr ? std::string() : std::string(p, static_cast<size_t>(n));
  }
  std::string ColBlob(int i) const {
    const auto* p = static_cast<const char*>(sqlite3_column_blob(s_, i));
    int n = sqlite3_column_bytes(s_, i);
    return p == nullptr ? std::string() : std::string(p, static_cast<size_t>(n));
  }

 private:
  int Index(const char* name) {
    int i = sqlite3_bind_parameter_index(s_, name);
    DTX_INVARIANT(i > 0, "unknown SQL parameter name");
    return i;
  }
  void Check(int rc) {
    if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }

  sqlite3_stmt* s_;
  int bind_rc_ = SQLITE_OK;
};

Status Exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return Status::Ok();
  std::string msg = err != nullptr ? err : sqlite3_errstr(rc);
  sqlite3_free(err);
  Status s = SqlError(nullptr, rc, sql.substr(0, 60));
  return Status(s.code(), s.message() + " (" + msg + ")");
}

// Runs a statement that returns one integer row (a PRAGMA or a count).
Result<int64_t> QueryInt(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(s);
    return SqlError(db, rc, sql);
  }
  rc = sqlite3_step(s);
  int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
  sqlite3_finalize(s);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return SqlError(db, rc, sql);
  return v;
}

Result<Db> OpenDb(const std::string& path, int flags, int busy_timeout_ms) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  Db db(raw);  // closes on every path
  if (rc != SQLITE_OK) return SqlError(raw, rc, "open " + path);
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_timeout(db.get(), busy_timeout_ms);
  return db;
}

// ---------------------------------------------------------------------------------------------------
// Row decoding.

Status Corrupt(const std::string& what) { return internal::CorruptRow(what); }

Result<core::GlobalTrans> ReadGlobal(const Use& q) {
  core::GlobalTrans g;
  g.id = q.ColInt(0);
  g.gid = q.ColText(1);
  if (Status s = internal::DecodeGlobalColumns(q.ColText(2), q.ColText(3), q.ColText(10), &g);
      !s.ok()) {
    return s;
  }
  g.protocol = q.ColText(4);
  g.query_prepared = q.ColText(5);
  g.custom_data = q.ColText(6);
  g.rollback_reason = q.ColText(7);
  g.result = q.ColText(8);
  g.owner = q.ColText(9);
  g.create_time_ms = q.ColInt(11);
  g.update_time_ms = q.ColInt(12);
  g.finish_time_ms = q.ColInt(13);
  g.rollback_time_ms = q.ColInt(14);
  g.next_cron_interval_ms = q.ColInt(15);
  g.next_cron_time_ms = q.ColInt(16);
  g.retry_count = q.ColInt(17);
  g.lease_until_ms = q.ColInt(18);
  return g;
}

Result<core::BranchRow> ReadBranch(const Use& q) {
  core::BranchRow b;
  b.id = q.ColInt(0);
  b.gid = q.ColText(1);
  b.url = q.ColText(2);
  b.bin_data = q.ColBlob(3);
  b.branch_id = q.ColText(4);
  b.op = q.ColText(5);
  if (Status s = internal::DecodeBranchStatus(q.ColText(6), &b); !s.ok()) return s;
  b.create_time_ms = q.ColInt(7);
  b.update_time_ms = q.ColInt(8);
  b.finish_time_ms = q.ColInt(9);
  b.attempts = q.ColInt(10);
  b.last_error = q.ColText(11);
  return b;
}

// ---------------------------------------------------------------------------------------------------
// The writer's connection and its operations. Used by one thread at a time (open, then the writer).

class WriterConn {
 public:
  static Result<std::unique_ptr<WriterConn>> Open(const SqliteOptions& o);

  sqlite3* db() const { return db_.get(); }

  Status Create(const core::TransSnapshot& t);
  Status Update(const TransUpdate& u);
  Status AddBranches(const std::string& gid, core::GlobalStatus expected,
                     const std::vector<core::BranchRow>& rows);
  Status ClaimDue(int64_t now_ms, int limit, int64_t lease_until_ms, const std::string& owner,
                  std::vector<std::string>* gids);
  Status ResetNextCronTime(const std::string& gid, int64_t now_ms);
  Status ResetCronTime(int64_t now_ms, int64_t timeout_ms, int limit, int64_t* changed);
  Status KvPut(const std::string& cat, const std::string& k, const std::string& v,
               int64_t expected_version, int64_t now_ms);
  Status KvDelete(const std::string& cat, const std::string& k);

  // Transaction control; each returns the SQLite result code.
  int Begin() { return Use(begin_).Step(); }
  int Commit() { return Use(commit_).Step(); }
  int Rollback() { return Use(rollback_).Step(); }
  int Savepoint() { return Use(savepoint_).Step(); }
  int Release() { return Use(release_).Step(); }
  int RollbackToSavepoint() { return Use(rollback_to_).Step(); }

 private:
  // Refuses a file that is not a SQLite database, is another application's database, or has a newer
  // schema than this binary. Reads only.
  Status CheckSchema(const std::string& path, int64_t* version = nullptr, bool* fresh = nullptr);
  Status Migrate(const std::string& path);
  Status PrepareAll();
  // The status of gid, or nullopt if it does not exist.
  // `id_out`, if given, receives the row's id when it exists.
  Status LookupStatus(const std::string& gid, std::optional<core::GlobalStatus>* out,
                      int64_t* id_out = nullptr);
  Status InsertBranch(int64_t trans_id, const std::string& gid, const core::BranchRow& b);

  Db db_;  // declared first: destroyed after the statements
  Stmt begin_, commit_, rollback_, savepoint_, release_, rollback_to_;
  Stmt insert_global_, insert_branch_, update_global_, select_status_, update_branch_;
  Stmt claim_select_, claim_update_, reset_next_, reset_cron_;
  Stmt kv_insert_, kv_update_, kv_delete_;
};

Result<std::unique_ptr<WriterConn>> WriterConn::Open(const SqliteOptions& o) {
  auto db = OpenDb(o.path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, o.busy_timeout_ms);
  if (!db.ok()) return db.status();
  auto w = std::make_unique<WriterConn>();
  w->db_ = std::move(db).value();
  // Identify the file before changing anything in it (journal mode included); Migrate checks again
  // inside its transaction.
  if (Status s = w->CheckSchema(o.path); !s.ok()) return s;
  auto mode = Exec(w->db(), "PRAGMA journal_mode=WAL");
  if (!mode.ok()) return mode;
  {
    sqlite3_stmt* s = nullptr;
    std::string got;
    if (sqlite3_prepare_v2(w->db(), "PRAGMA journal_mode", -1, &s, nullptr) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(s, 0);
      if (text != nullptr) got = reinterpret_cast<const char*>(text);
    }
    sqlite3_finalize(s);
    if (got != "wal") {
      return Status::IoError("cannot put " + o.path + " into WAL mode (journal_mode is '" + got +
                             "')");
    }
  }
  if (Status s = Exec(w->db(), "PRAGMA synchronous=FULL"); !s.ok()) return s;
  if (Status s = w->Migrate(o.path); !s.ok()) return s;
  if (Status s = w->PrepareAll(); !s.ok()) return s;
  return w;
}

Status WriterConn::CheckSchema(const std::string& path, int64_t* version_out, bool* fresh_out) {
  auto app_id = QueryInt(db(), "PRAGMA application_id");
  if (!app_id.ok()) {
    return Status(app_id.status().code(),
                  path + " is not a usable SQLite database: " + app_id.status().message());
  }
  auto version = QueryInt(db(), "PRAGMA user_version");
  if (!version.ok()) return version.status();
  auto objects = QueryInt(db(), "SELECT count(*) FROM sqlite_schema");
  if (!objects.ok()) return objects.status();
  const bool fresh = *version == 0 && *app_id == 0 && *objects == 0;
  if (!fresh && *app_id != kSqliteApplicationId) {
    return Status::InvalidArgument(path +
                                   " is a SQLite database but not a dtx database (application_id " +
                                   std::to_string(*app_id) + "); refusing to touch it");
  }
  if (*version > kSqliteSchemaVersion) {
    return Status::InvalidArgument(
        path + " has schema version " + std::to_string(*version) +
        ", newer than this dtx binary knows (" + std::to_string(kSqliteSchemaVersion) +
        "); it was written by a newer dtx: upgrade dtx (downgrade is not supported)");
  }
  if (version_out != nullptr) *version_out = *version;
  if (fresh_out != nullptr) *fresh_out = fresh;
  return Status::Ok();
}

Status WriterConn::Migrate(const std::string& path) {
  if (Status s = Exec(db(), "BEGIN IMMEDIATE"); !s.ok()) return s;
  auto fail = [&](Status s) {
    Status r = Exec(db(), "ROLLBACK");
    if (!r.ok()) spdlog::error("rollback of schema migration failed: {}", r.ToString());
    return s;
  };
  // Again, under the write lock: another process may have migrated the file meanwhile.
  int64_t version = 0;
  bool fresh = false;
  if (Status s = CheckSchema(path, &version, &fresh); !s.ok()) return fail(s);
  for (int64_t v = version; v < kSqliteSchemaVersion; ++v) {
    if (Status s = Exec(db(), std::string(kMigrations[v])); !s.ok()) {
      return fail(Status(s.code(), "schema migration to version " + std::to_string(v + 1) +
                                       " failed: " + s.message()));
    }
  }
  if (version != kSqliteSchemaVersion || fresh) {
    std::string set = "PRAGMA user_version=" + std::to_string(kSqliteSchemaVersion) +
                      "; PRAGMA application_id=" + std::to_string(kSqliteApplicationId);
    if (Status s = Exec(db(), set); !s.ok()) return fail(s);
  }
  if (Status s = Exec(db(), "COMMIT"); !s.ok()) return fail(s);
  if (version != kSqliteSchemaVersion) {
    spdlog::info("sqlite store {}: schema migrated from version {} to {}", path, version,
                 kSqliteSchemaVersion);
  }
  return Status::Ok();
}

Status WriterConn::PrepareAll() {
  const std::pair<Stmt*, std::string> stmts[] = {
      {&begin_, "BEGIN IMMEDIATE"},
      {&commit_, "COMMIT"},
      {&rollback_, "ROLLBACK"},
      {&savepoint_, "SAVEPOINT dtx_op"},
      {&release_, "RELEASE dtx_op"},
      {&rollback_to_, "ROLLBACK TO dtx_op"},
      {&insert_global_,
       "INSERT INTO trans_global (gid, trans_type, status, protocol, query_prepared, custom_data, "
       "rollback_reason, result, owner, options, create_time, update_time, finish_time, "
       "rollback_time, next_cron_interval, next_cron_time, retry_count, lease_until) "
       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"},
      {&insert_branch_,
       "INSERT INTO trans_branch_op (gid, url, bin_data, branch_id, op, status, create_time, "
       "update_time, finish_time, attempts, last_error, trans_id) "
       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"},
      // A NULL parameter keeps the column (every column is NOT NULL, so NULL means "absent").
      {&update_global_,
       "UPDATE trans_global SET status = COALESCE(?3, status), "
       "rollback_reason = COALESCE(?4, rollback_reason), custom_data = COALESCE(?5, custom_data), "
       "options = COALESCE(?6, options), next_cron_time = COALESCE(?7, next_cron_time), "
       "next_cron_interval = COALESCE(?8, next_cron_interval), "
       "retry_count = COALESCE(?9, retry_count), finish_time = COALESCE(?10, finish_time), "
       "rollback_time = COALESCE(?11, rollback_time), update_time = ?12, "
       "owner = COALESCE(?15, owner), lease_until = COALESCE(?16, lease_until) "
       "WHERE gid = ?1 AND status = ?2 AND (?13 IS NULL OR owner = ?13) "
       "AND (?14 IS NULL OR (next_cron_time <= ?14 AND lease_until <= ?14))"},
      {&select_status_, "SELECT status, id FROM trans_global WHERE gid = ?1"},
      {&update_branch_,
       "UPDATE trans_branch_op SET status = COALESCE(?4, status), "
       "attempts = COALESCE(?5, attempts), last_error = COALESCE(?6, last_error), "
       "finish_time = COALESCE(?7, finish_time), update_time = ?8 "
       "WHERE trans_id = (SELECT id FROM trans_global WHERE gid = ?1) AND branch_id = ?2 AND "
       "op = ?3"},
      {&claim_select_, std::string(kSqliteClaimDueSql)},
      {&claim_update_,
       "UPDATE trans_global SET next_cron_time = ?2, lease_until = ?2, owner = ?3 WHERE id = ?1"},
      {&reset_next_,
       "UPDATE trans_global SET next_cron_time = ?2 "
       "WHERE gid = ?1 AND status IN ('prepared','submitted','aborting')"},
      {&reset_cron_, std::string(kSqliteResetCronTimeSql)},
      {&kv_insert_,
       "INSERT INTO kv (cat, k, v, version, create_time, update_time) "
       "VALUES (?1, ?2, ?3, 1, ?4, ?4)"},
      {&kv_update_,
       "UPDATE kv SET v = ?3, version = version + 1, update_time = ?5 "
       "WHERE cat = ?1 AND k = ?2 AND version = ?4"},
      {&kv_delete_, "DELETE FROM kv WHERE cat = ?1 AND k = ?2"},
  };
  for (const auto& [stmt, sql] : stmts) {
    if (Status s = Stmt::Prepare(db(), sql, stmt); !s.ok()) return s;
  }
  return Status::Ok();
}

Status WriterConn::LookupStatus(const std::string& gid, std::optional<core::GlobalStatus>* out,
                                int64_t* id_out) {
  Use q(select_status_);
  q.Text(1, gid);
  int rc = q.Step();
  if (rc == SQLITE_DONE) {
    out->reset();
    return Status::Ok();
  }
  if (rc != SQLITE_ROW) return SqlError(db(), rc, "select status");
  std::string s = q.ColText(0);
  if (id_out != nullptr) *id_out = q.ColInt(1);
  *out = core::ParseGlobalStatus(s);
  if (!*out) return Corrupt("status '" + s + "' of " + gid);
  return Status::Ok();
}

Status WriterConn::InsertBranch(int64_t trans_id, const std::string& gid,
                                const core::BranchRow& b) {
  Use q(insert_branch_);
  q.Text(1, gid)
      .Text(2, b.url)
      .Blob(3, b.bin_data)
      .Text(4, b.branch_id)
      .Text(5, b.op)
      .Text(6, core::ToString(b.status))
      .Int(7, b.create_time_ms)
      .Int(8, b.update_time_ms)
      .Int(9, b.finish_time_ms)
      .Int(10, b.attempts)
      .Text(11, b.last_error)
      .Int(12, trans_id);
  int rc = q.Step();
  if (rc == SQLITE_DONE) return Status::Ok();
  if (IsUniqueViolation(rc)) return internal::BranchExists(gid, b.branch_id, b.op);
  return SqlError(db(), rc, "insert branch");
}

Status WriterConn::Create(const core::TransSnapshot& t) {
  const core::GlobalTrans& g = t.global;
  {
    const std::string options = core::EncodeOptionsJson(g.options);
    Use q(insert_global_);
    q.Text(1, g.gid)
        .Text(2, core::ToString(g.trans_type))
        .Text(3, core::ToString(g.status))
        .Text(4, g.protocol)
        .Text(5, g.query_prepared)
        .Text(6, g.custom_data)
        .Text(7, g.rollback_reason)
        .Text(8, g.result)
        .Text(9, g.owner)
        .Text(10, options)
        .Int(11, g.create_time_ms)
        .Int(12, g.update_time_ms)
        .Int(13, g.finish_time_ms)
        .Int(14, g.rollback_time_ms)
        .Int(15, g.next_cron_interval_ms)
        .Int(16, g.next_cron_time_ms)
        .Int(17, g.retry_count)
        .Int(18, g.lease_until_ms);
    int rc = q.Step();
    if (IsUniqueViolation(rc)) return internal::TransExists(g.gid);
    if (rc != SQLITE_DONE) return SqlError(db(), rc, "insert transaction");
  }
  const int64_t trans_id = sqlite3_last_insert_rowid(db());
  for (const auto& b : t.branches) {
    if (Status s = InsertBranch(trans_id, g.gid, b); !s.ok()) return s;
  }
  return Status::Ok();
}

Status WriterConn::Update(const TransUpdate& u) {
  {
    std::optional<std::string> status, options;
    if (u.new_status) status = std::string(core::ToString(*u.new_status));
    if (u.options) options = core::EncodeOptionsJson(*u.options);
    Use q(update_global_);
    q.Text(1, u.gid)
        .Text(2, core::ToString(u.expected_status))
        .OptText(3, status)
        .OptText(4, u.rollback_reason)
        .OptText(5, u.custom_data)
        .OptText(6, options)
        .OptInt(7, u.next_cron_time_ms)
        .OptInt(8, u.next_cron_interval_ms)
        .OptInt(9, u.retry_count)
        .OptInt(10, u.finish_time_ms)
        .OptInt(11, u.rollback_time_ms)
        .Int(12, u.update_time_ms)
        .OptText(13, u.expected_owner)
        .OptInt(14, u.due_by_ms)
        .OptText(15, u.owner)
        .OptInt(16, u.lease_until_ms);
    int rc = q.Step();
    if (rc != SQLITE_DONE) return SqlError(db(), rc, "update transaction");
  }
  if (sqlite3_changes(db()) == 0) {
    std::optional<core::GlobalStatus> actual;
    if (Status s = LookupStatus(u.gid, &actual); !s.ok()) return s;
    if (!actual) return internal::TransNotFound(u.gid);
    if (*actual == u.expected_status) return internal::LeaseConflict(u.gid);
    return internal::ConflictStatus(u.gid, u.expected_status, *actual);
  }
  for (const auto& b : u.branches) {
    std::optional<std::string> status;
    if (b.status) status = std::string(core::ToString(*b.status));
    Use q(update_branch_);
    q.Text(1, u.gid)
        .Text(2, b.branch_id)
        .Text(3, b.op)
        .OptText(4, status)
        .OptInt(5, b.attempts)
        .OptText(6, b.last_error)
        .OptInt(7, b.finish_time_ms)
        .Int(8, u.update_time_ms);
    int rc = q.Step();
    if (rc != SQLITE_DONE) return SqlError(db(), rc, "update branch");
    if (sqlite3_changes(db()) == 0) return internal::BranchNotFound(u.gid, b.branch_id, b.op);
  }
  return Status::Ok();
}

Status WriterConn::AddBranches(const std::string& gid, core::GlobalStatus expected,
                               const std::vector<core::BranchRow>& rows) {
  std::optional<core::GlobalStatus> actual;
  int64_t trans_id = 0;
  if (Status s = LookupStatus(gid, &actual, &trans_id); !s.ok()) return s;
  if (!actual) return internal::TransNotFound(gid);
  if (*actual != expected) return internal::ConflictStatus(gid, expected, *actual);
  for (const auto& b : rows) {
    if (Status s = InsertBranch(trans_id, gid, b); !s.ok()) return s;
  }
  return Status::Ok();
}

Status WriterConn::ClaimDue(int64_t now_ms, int limit, int64_t lease_until_ms,
                            const std::string& owner, std::vector<std::string>* gids) {
  std::vector<int64_t> ids;
  {
    Use q(claim_select_);
    q.Int(1, now_ms).Int(2, limit);
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) {
      ids.push_back(q.ColInt(0));
      gids->push_back(q.ColText(1));
    }
    if (rc != SQLITE_DONE) return SqlError(db(), rc, "select due transactions");
  }
  for (int64_t id : ids) {
    Use q(claim_update_);
    q.Int(1, id).Int(2, lease_until_ms).Text(3, owner);
    int rc = q.Step();
    if (rc != SQLITE_DONE) return SqlError(db(), rc, "claim transaction");
  }
  return Status::Ok();
}

Status WriterConn::ResetNextCronTime(const std::string& gid, int64_t now_ms) {
  {
    Use q(reset_next_);
    q.Text(1, gid).Int(2, now_ms);
    int rc = q.Step();
    if (rc != SQLITE_DONE) return SqlError(db(), rc, "reset next_cron_time");
  }
  if (sqlite3_changes(db()) > 0) return Status::Ok();
  std::optional<core::GlobalStatus> actual;
  if (Status s = LookupStatus(gid, &actual); !s.ok()) return s;
  if (!actual) return internal::TransNotFound(gid);
  return Status::Ok();  // final: unchanged
}

Status WriterConn::ResetCronTime(int64_t now_ms, int64_t timeout_ms, int limit, int64_t* changed) {
  Use q(reset_cron_);
  q.Int(1, now_ms).Int(2, internal::SaturatingAdd(now_ms, timeout_ms)).Int(3, limit);
  int rc = q.Step();
  if (rc != SQLITE_DONE) return SqlError(db(), rc, "reset cron time");
  *changed = sqlite3_changes64(db());
  return Status::Ok();
}

Status WriterConn::KvPut(const std::string& cat, const std::string& k, const std::string& v,
                         int64_t expected_version, int64_t now_ms) {
  if (expected_version == 0) {
    Use q(kv_insert_);
    q.Text(1, cat).Text(2, k).Text(3, v).Int(4, now_ms);
    int rc = q.Step();
    if (IsUniqueViolation(rc)) return internal::KvExists(cat, k);
    if (rc != SQLITE_DONE) return SqlError(db(), rc, "insert kv");
    return Status::Ok();
  }
  Use q(kv_update_);
  q.Text(1, cat).Text(2, k).Text(3, v).Int(4, expected_version).Int(5, now_ms);
  int rc = q.Step();
  if (rc != SQLITE_DONE) return SqlError(db(), rc, "update kv");
  if (sqlite3_changes(db()) == 0) return internal::KvVersionMismatch(cat, k, expected_version);
  return Status::Ok();
}

Status WriterConn::KvDelete(const std::string& cat, const std::string& k) {
  Use q(kv_delete_);
  q.Text(1, cat).Text(2, k);
  int rc = q.Step();
  if (rc != SQLITE_DONE) return SqlError(db(), rc, "delete kv");
  if (sqlite3_changes(db()) == 0) return internal::KvNotFound(cat, k);
  return Status::Ok();
}

KvRow ReadKv(const Use& q) {
  KvRow r;
  r.id = q.ColInt(0);
  r.cat = q.ColText(1);
  r.k = q.ColText(2);
  r.v = q.ColText(3);
  r.version = q.ColInt(4);
  r.create_time_ms = q.ColInt(5);
  r.update_time_ms = q.ColInt(6);
  return r;
}

// ---------------------------------------------------------------------------------------------------
// A reader's connection (read-only). Used by one reader thread.

class ReaderConn {
 public:
  static Result<std::unique_ptr<ReaderConn>> Open(const SqliteOptions& o) {
    auto db = OpenDb(o.path, SQLITE_OPEN_READONLY, o.busy_timeout_ms);
    if (!db.ok()) return db.status();
    auto r = std::make_unique<ReaderConn>();
    r->db_ = std::move(db).value();
    const std::pair<Stmt*, std::string> stmts[] = {
        {&r->begin_, "BEGIN"},
        {&r->commit_, "COMMIT"},
        {&r->rollback_, "ROLLBACK"},
        {&r->load_global_,
         std::string("SELECT ") + kGlobalColumns + " FROM trans_global WHERE gid = ?1"},
        {&r->load_branches_, std::string("SELECT ") + kBranchColumns +
                                 " FROM trans_branch_op WHERE trans_id = ?1 ORDER BY id"},
        {&r->kv_get_, std::string("SELECT ") + kKvColumns + " FROM kv WHERE cat = ?1 AND k = ?2"},
        {&r->kv_query_, std::string("SELECT ") + kKvColumns +
                            " FROM kv WHERE (?1 = '' OR cat = ?1) AND (?2 = '' OR k = ?2) "
                            "ORDER BY id"},
        {&r->kv_scan_, std::string("SELECT ") + kKvColumns +
                           " FROM kv WHERE cat = ?1 AND (?2 = 0 OR id < ?2) "
                           "ORDER BY id DESC LIMIT ?3"},
    };
    for (const auto& [stmt, sql] : stmts) {
      if (Status s = Stmt::Prepare(r->db(), sql, stmt); !s.ok()) return s;
    }
    return r;
  }

  sqlite3* db() const { return db_.get(); }

  Result<std::optional<core::TransSnapshot>> Load(const std::string& gid) {
    // Both SELECTs in one read transaction: one consistent snapshot of the WAL.
    int rc = Use(begin_).Step();
    if (rc != SQLITE_DONE) return SqlError(db(), rc, "begin read");
    auto r = LoadInTxn(gid);
    rc = Use(r.ok() ? commit_ : rollback_).Step();
    if (rc != SQLITE_DONE && r.ok()) return SqlError(db(), rc, "end read");
    return r;
  }

  Result<ListPage> List(const ListQuery& lq) {
    Stmt* stmt = nullptr;
    if (Status s = ListStmt(lq, &stmt); !s.ok()) return s;
    Use q(*stmt);
    if (!lq.gid.empty()) q.Named(":gid", lq.gid);
    if (!lq.status.empty()) q.Named(":status", lq.status);
    if (!lq.trans_type.empty()) q.Named(":type", lq.trans_type);
    if (lq.create_time_start_ms != 0) q.Named(":start", lq.create_time_start_ms);
    if (lq.create_time_end_ms != 0) q.Named(":end", lq.create_time_end_ms);
    if (lq.before_id != 0) q.Named(":before", lq.before_id);
    q.Named(":limit", static_cast<int64_t>(lq.limit));
    ListPage page;
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) {
      auto g = ReadGlobal(q);
      if (!g.ok()) return g.status();
      page.transactions.push_back(std::move(g).value());
    }
    if (rc != SQLITE_DONE) return SqlError(db(), rc, "list");
    if (static_cast<int>(page.transactions.size()) == lq.limit) {
      page.next_before_id = page.transactions.back().id;
    }
    return page;
  }

  Result<std::optional<KvRow>> KvGet(const std::string& cat, const std::string& k) {
    Use q(kv_get_);
    q.Text(1, cat).Text(2, k);
    int rc = q.Step();
    if (rc == SQLITE_DONE) return std::optional<KvRow>();
    if (rc != SQLITE_ROW) return SqlError(db(), rc, "kv get");
    return std::optional<KvRow>(ReadKv(q));
  }

  Result<std::vector<KvRow>> KvQuery(const std::string& cat, const std::string& k) {
    Use q(kv_query_);
    q.Text(1, cat).Text(2, k);
    std::vector<KvRow> rows;
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) rows.push_back(ReadKv(q));
    if (rc != SQLITE_DONE) return SqlError(db(), rc, "kv query");
    return rows;
  }

  Result<KvPage> KvScan(const std::string& cat, int64_t before_id, int limit) {
    Use q(kv_scan_);
    q.Text(1, cat).Int(2, before_id).Int(3, limit);
    KvPage page;
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) page.rows.push_back(ReadKv(q));
    if (rc != SQLITE_DONE) return SqlError(db(), rc, "kv scan");
    if (static_cast<int>(page.rows.size()) == limit) page.next_before_id = page.rows.back().id;
    return page;
  }

 private:
  Result<std::optional<core::TransSnapshot>> LoadInTxn(const std::string& gid) {
    core::TransSnapshot t;
    {
      Use q(load_global_);
      q.Text(1, gid);
      int rc = q.Step();
      if (rc == SQLITE_DONE) return std::optional<core::TransSnapshot>();
      if (rc != SQLITE_ROW) return SqlError(db(), rc, "load transaction");
      auto g = ReadGlobal(q);
      if (!g.ok()) return g.status();
      t.global = std::move(g).value();
    }
    Use q(load_branches_);
    q.Int(1, t.global.id);
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) {
      auto b = ReadBranch(q);
      if (!b.ok()) return b.status();
      t.branches.push_back(std::move(b).value());
    }
    if (rc != SQLITE_DONE) return SqlError(db(), rc, "load branches");
    return std::optional<core::TransSnapshot>(std::move(t));
  }

  // One cached statement per combination of filters present (at most 64), prepared on first use.
  Status ListStmt(const ListQuery& q, Stmt** out) {
    unsigned mask = (q.gid.empty() ? 0U : 1U) | (q.status.empty() ? 0U : 2U) |
                    (q.trans_type.empty() ? 0U : 4U) | (q.create_time_start_ms == 0 ? 0U : 8U) |
                    (q.create_time_end_ms == 0 ? 0U : 16U) | (q.before_id == 0 ? 0U : 32U);
    auto it = list_.find(mask);
    if (it == list_.end()) {
      std::string sql = std::string("SELECT ") + kGlobalColumns + " FROM trans_global WHERE 1";
      if ((mask & 1U) != 0) sql += " AND gid = :gid";
      if ((mask & 2U) != 0) sql += " AND status = :status";
      if ((mask & 4U) != 0) sql += " AND trans_type = :type";
      if ((mask & 8U) != 0) sql += " AND create_time >= :start";
      if ((mask & 16U) != 0) sql += " AND create_time <= :end";
      if ((mask & 32U) != 0) sql += " AND id < :before";
      sql += " ORDER BY id DESC LIMIT :limit";
      Stmt s;
      if (Status st = Stmt::Prepare(db(), sql, &s); !st.ok()) return st;
      it = list_.emplace(mask, std::move(s)).first;
    }
    *out = &it->second;
    return Status::Ok();
  }

  Db db_;  // declared first: destroyed after the statements
  Stmt begin_, commit_, rollback_, load_global_, load_branches_;
  Stmt kv_get_, kv_query_, kv_scan_;
  std::map<unsigned, Stmt> list_;
};

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
        [changed, done](Status s) {
          if (s.ok()) {
            done(*changed);
          } else {
            done(std::move(s));
          }
        },
        [done](Status s) { done(std::move(s)); });
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

std::string_view SqliteMigrationSql(int version) {
  DTX_INVARIANT(version >= 1 && version <= kSqliteSchemaVersion, "no such schema version");
  return kMigrations[version - 1];
}

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
