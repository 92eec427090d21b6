// The SQLite store's call history and retention (issue 13): the attempts of branch rows
// (trans_branch_attempt, written in the same transaction as the update that records them), the
// deletion of finished transactions and old key-value rows in bounded batches, and the due
// backlog count. Statements are prepared once per connection, like the others.
#include "store/internal.h"
#include "store/sqlite/conns.h"

namespace dtx::store::sqlite_internal {

Status WriterConn::PrepareRetention() {
  const std::pair<Stmt*, const char*> stmts[] = {
      // OR IGNORE: a seq already kept is not recorded again (an update re-applied after an
      // unknown outcome, or a held success lost in a crash and called again).
      {&attempt_insert_,
       "INSERT OR IGNORE INTO trans_branch_attempt (gid, branch_id, op, seq, call_time, "
       "http_status, "
       "latency_ms, result, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"},
      {&attempt_trim_,
       "DELETE FROM trans_branch_attempt WHERE gid = ?1 AND branch_id = ?2 AND op = ?3 AND "
       "seq <= ?4"},
      // Never the newest transaction: a plain INTEGER PRIMARY KEY takes max(id) + 1, so keeping
      // it keeps ids from being reused (schema v3).
      {&finished_select_,
       "SELECT id, gid FROM trans_global INDEXED BY trans_global_finished "
       "WHERE (status = 'succeed' OR status = 'failed') AND update_time < ?1 "
       "AND id < (SELECT max(id) FROM trans_global) ORDER BY update_time LIMIT ?2"},
      {&finished_branches_, "DELETE FROM trans_branch_op WHERE trans_id = ?1"},
      {&finished_attempts_, "DELETE FROM trans_branch_attempt WHERE gid = ?1"},
      {&finished_global_, "DELETE FROM trans_global WHERE id = ?1"},
      // `cat` itself or `cat:...` (':' < ';'): a range on the (cat, k) index.
      {&kv_retention_,
       "DELETE FROM kv WHERE id IN (SELECT id FROM kv WHERE (cat = ?1 OR (cat > ?1 || ':' AND "
       "cat < ?1 || ';')) AND update_time < ?2 ORDER BY id LIMIT ?3)"},
  };
  for (const auto& [stmt, sql] : stmts) {
    if (Status s = Stmt::Prepare(db(), sql, stmt); !s.ok()) return s;
  }
  return Status::Ok();
}

Status WriterConn::RecordAttempts(const std::string& gid, const TransUpdate::BranchUpdate& b) {
  int64_t newest = 0;
  for (const core::CallAttempt& a : b.new_attempts) {
    Use q(attempt_insert_);
    q.Text(1, gid)
        .Text(2, b.branch_id)
        .Text(3, b.op)
        .Int(4, a.seq)
        .Int(5, a.time_ms)
        .Int(6, a.http_status)
        .Int(7, a.latency_ms)
        .Text(8, a.result)
        .Text(9, a.error);
    if (int rc = q.Step(); rc != SQLITE_DONE) return SqlError(db(), rc, "insert attempt");
    newest = std::max(newest, a.seq);
  }
  const int64_t keep = static_cast<int64_t>(core::kMaxAttemptLog);
  if (newest > keep) {
    Use q(attempt_trim_);
    q.Text(1, gid).Text(2, b.branch_id).Text(3, b.op).Int(4, newest - keep);
    if (int rc = q.Step(); rc != SQLITE_DONE) return SqlError(db(), rc, "trim attempts");
  }
  return Status::Ok();
}

Status WriterConn::DeleteFinished(int64_t before_ms, int limit, RetentionCount* out) {
  *out = {};
  std::vector<std::pair<int64_t, std::string>> rows;
  {
    Use q(finished_select_);
    q.Int(1, before_ms).Int(2, limit);
    int rc = SQLITE_ROW;
    while ((rc = q.Step()) == SQLITE_ROW) rows.emplace_back(q.ColInt(0), q.ColText(1));
    if (rc != SQLITE_DONE) return SqlError(db(), rc, "select finished");
  }
  for (const auto& [id, gid] : rows) {
    {
      Use q(finished_branches_);
      q.Int(1, id);
      if (int rc = q.Step(); rc != SQLITE_DONE) return SqlError(db(), rc, "delete branches");
      out->branches += sqlite3_changes(db());
    }
    {
      Use q(finished_attempts_);
      q.Text(1, gid);
      if (int rc = q.Step(); rc != SQLITE_DONE) return SqlError(db(), rc, "delete attempts");
    }
    Use q(finished_global_);
    q.Int(1, id);
    if (int rc = q.Step(); rc != SQLITE_DONE) return SqlError(db(), rc, "delete transaction");
    out->transactions += sqlite3_changes(db());
  }
  return Status::Ok();
}

Status WriterConn::DeleteKvBefore(const std::string& cat, int64_t before_ms, int limit,
                                  int64_t* out) {
  Use q(kv_retention_);
  q.Text(1, cat).Int(2, before_ms).Int(3, limit);
  if (int rc = q.Step(); rc != SQLITE_DONE) return SqlError(db(), rc, "delete kv rows");
  *out = sqlite3_changes(db());
  return Status::Ok();
}

Status ReaderConn::PrepareRetention() {
  const std::pair<Stmt*, const char*> stmts[] = {
      {&count_due_,
       "SELECT count(*) FROM (SELECT 1 FROM trans_global INDEXED BY trans_global_due "
       "WHERE (status = 'prepared' OR status = 'submitted' OR status = 'aborting') "
       "AND next_cron_time <= ?1 AND lease_until <= ?1 LIMIT ?2)"},
      {&load_attempts_,
       "SELECT branch_id, op, seq, call_time, http_status, latency_ms, result, error "
       "FROM trans_branch_attempt WHERE gid = ?1 ORDER BY branch_id, op, seq"},
  };
  for (const auto& [stmt, sql] : stmts) {
    if (Status s = Stmt::Prepare(db(), sql, stmt); !s.ok()) return s;
  }
  return Status::Ok();
}

Result<int64_t> ReaderConn::CountDue(int64_t now_ms, int64_t cap) {
  Use q(count_due_);
  q.Int(1, now_ms).Int(2, cap);
  if (int rc = q.Step(); rc != SQLITE_ROW) return SqlError(db(), rc, "count due");
  return q.ColInt(0);
}

Result<std::vector<AttemptRow>> ReaderConn::LoadAttempts(const std::string& gid) {
  std::vector<AttemptRow> out;
  Use q(load_attempts_);
  q.Text(1, gid);
  int rc = SQLITE_ROW;
  while ((rc = q.Step()) == SQLITE_ROW) {
    AttemptRow& r = out.emplace_back();
    r.branch_id = q.ColText(0);
    r.op = q.ColText(1);
    r.attempt.seq = q.ColInt(2);
    r.attempt.time_ms = q.ColInt(3);
    r.attempt.http_status = static_cast<int>(q.ColInt(4));
    r.attempt.latency_ms = q.ColInt(5);
    r.attempt.result = q.ColText(6);
    r.attempt.error = q.ColText(7);
  }
  if (rc != SQLITE_DONE) return SqlError(db(), rc, "load attempts");
  return out;
}

}  // namespace dtx::store::sqlite_internal
