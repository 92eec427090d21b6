// The PostgreSQL store's retention (issue 13): finished transactions with their branch rows and
// call history, and old key-value rows, deleted in bounded batches. Each batch is one statement
// (one WriteOp of the group-committing writer); FOR UPDATE SKIP LOCKED lets several coordinators
// run it at once without waiting on each other or deleting a row twice.
#include "store/internal.h"
#include "store/postgres/store_impl.h"

namespace dtx::store::pg_internal {

namespace {

// -> (transactions deleted, branch rows deleted). Never the newest transaction (the same rule as
// SQLite's, store.h).
constexpr const char* kDeleteFinishedSql =
    "WITH f AS (SELECT id, gid FROM trans_global "
    "WHERE status IN ('succeed', 'failed') AND update_time < $1::int8 "
    "AND id < (SELECT max(id) FROM trans_global) "
    "ORDER BY update_time LIMIT $2::int8 FOR UPDATE SKIP LOCKED), "
    "b AS (DELETE FROM trans_branch_op t USING f WHERE t.gid = f.gid RETURNING 1), "
    "a AS (DELETE FROM trans_branch_attempt x USING f WHERE x.gid = f.gid RETURNING 1), "
    "g AS (DELETE FROM trans_global t USING f WHERE t.id = f.id RETURNING 1) "
    "SELECT (SELECT count(*) FROM g), (SELECT count(*) FROM b)";
// `cat` itself or `cat:...` (cat is COLLATE "C": bytewise, ':' < ';'). -> rows deleted
constexpr const char* kDeleteKvBeforeSql =
    "WITH d AS (DELETE FROM kv WHERE id IN (SELECT id FROM kv WHERE (cat = $1::text OR "
    "(cat > $1::text || ':' AND cat < $1::text || ';')) AND update_time < $2::int8 "
    "ORDER BY id LIMIT $3::int8 FOR UPDATE SKIP LOCKED) RETURNING 1) SELECT count(*) FROM d";

}  // namespace

std::vector<Command> RetentionWriterPrepares() {
  return {
      Command::Prepare(kDeleteFinished, kDeleteFinishedSql),
      Command::Prepare(kDeleteKvBefore, kDeleteKvBeforeSql),
  };
}

std::vector<Command> RetentionReaderPrepares() {
  return {
      Command::Prepare(kCountDue,
                       "SELECT count(*) FROM (SELECT 1 FROM trans_global "
                       "WHERE status IN ('prepared', 'submitted', 'aborting') "
                       "AND next_cron_time <= $1::int8 AND lease_until <= $1::int8 "
                       "LIMIT $2::int8) d"),
      Command::Prepare(
          kLoadAttempts,
          "SELECT branch_id, op, seq, call_time, http_status, latency_ms, result, error "
          "FROM trans_branch_attempt WHERE gid = $1 ORDER BY branch_id, op, seq"),
  };
}

void AddAttemptArrays(const std::vector<TransUpdate::BranchUpdate>& rows, Params& p) {
  ArrayBuilder bid, op, seq, time, http, latency, result, error;
  for (const auto& b : rows) {
    for (const core::CallAttempt& a : b.new_attempts) {
      bid.Text(b.branch_id);
      op.Text(b.op);
      seq.Int(a.seq);
      time.Int(a.time_ms);
      http.Int(a.http_status);
      latency.Int(a.latency_ms);
      result.Text(a.result);
      error.Text(a.error);
    }
  }
  for (ArrayBuilder* a : {&bid, &op, &seq, &time, &http, &latency, &result, &error}) {
    p.Text(std::move(*a).Finish());
  }
}

void PostgresStore::DeleteFinished(int64_t before_ms, int limit, Callback<RetentionCount> done) {
  if (Status s = internal::ValidateRetentionLimit(limit); !s.ok()) return done(std::move(s));
  auto count = std::make_shared<RetentionCount>();
  WriteOp op;
  op.stmt = kDeleteFinished;
  op.params.Int(before_ms).Int(limit);
  op.parse = [count](const PGresult* r) {
    if (PQntuples(r) != 1 || PQnfields(r) != 2) return UnexpectedShape("delete finished");
    count->transactions = pg::GetInt(r, 0, 0);
    count->branches = pg::GetInt(r, 0, 1);
    return Status::Ok();
  };
  op.complete = internal::ValueWhenCommitted(count, done);
  SubmitWrite(std::move(op), [done](Status s) { done(std::move(s)); });
}

void PostgresStore::DeleteKvBefore(std::string cat, int64_t before_ms, int limit,
                                   Callback<int64_t> done) {
  if (Status s = internal::ValidateRetentionLimit(limit); !s.ok()) return done(std::move(s));
  if (cat.empty()) return done(Status::InvalidArgument("kv retention needs a category"));
  auto count = std::make_shared<int64_t>(0);
  WriteOp op;
  op.stmt = kDeleteKvBefore;
  op.params.Text(std::move(cat)).Int(before_ms).Int(limit);
  if (!op.params.nul_free()) op.pre = Status::InvalidArgument("category contains a NUL byte");
  op.parse = [count](const PGresult* r) {
    if (PQntuples(r) != 1 || PQnfields(r) != 1) return UnexpectedShape("delete kv rows");
    *count = pg::GetInt(r, 0, 0);
    return Status::Ok();
  };
  op.complete = internal::ValueWhenCommitted(count, done);
  SubmitWrite(std::move(op), [done](Status s) { done(std::move(s)); });
}

}  // namespace dtx::store::pg_internal
