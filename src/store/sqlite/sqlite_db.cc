#include "store/sqlite/sqlite_db.h"

#include "store/internal.h"

namespace dtx::store::sqlite_internal {

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

Status Exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return Status::Ok();
  std::string msg = err != nullptr ? err : sqlite3_errstr(rc);
  sqlite3_free(err);
  Status s = SqlError(nullptr, rc, sql.substr(0, 60));
  return Status(s.code(), s.message() + " (" + msg + ")");
}

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
}  // namespace dtx::store::sqlite_internal
