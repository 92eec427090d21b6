// The SQLite store's write operations, on the writer's connection (one thread).
#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <string>
#include <utility>
#include <vector>

#include "store/internal.h"
#include "store/sqlite/conns.h"
#include "store/sqlite/sqlite_store.h"

namespace dtx::store::sqlite_internal {

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
  if (Status s = w->PrepareRetention(); !s.ok()) return s;
  if (Status s = w->keys_.Prepare(w->db()); !s.ok()) return s;
  return w;
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

Status WriterConn::Create(const core::TransSnapshot& t, bool* keys_taken) {
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
  if (keys_taken != nullptr) *keys_taken = t.business_keys.empty();
  if (!t.business_keys.empty()) {
    return sqlite_keys::Insert(keys_, db(), g.gid, trans_id, t.business_keys, keys_taken);
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
  if (u.new_status && core::IsFinal(*u.new_status)) {
    if (Status s = sqlite_keys::Release(keys_, db(), u.gid); !s.ok()) return s;
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
    if (!b.new_attempts.empty()) {
      if (Status s = RecordAttempts(u.gid, b); !s.ok()) return s;
    }
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
}  // namespace dtx::store::sqlite_internal
