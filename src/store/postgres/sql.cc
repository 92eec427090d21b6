// The PostgreSQL store's SQL: every write is ONE statement that reports its outcome (see the
// comments on each), prepared once per connection; and the decoding of result rows.
#include "store/postgres/sql.h"

#include <string>
#include <vector>

#include "store/internal.h"
#include "store/postgres/keys.h"

namespace dtx::store::pg_internal {
namespace {

// The unnest() of branch rows shared by Create and AddBranches: parameters $first.. $first+9.
std::string BranchRowsUnnest(int first) {
  auto p = [&](int k, const char* type) { return "$" + std::to_string(first + k) + "::" + type; };
  return "unnest(" + p(0, "text[]") + ", " + p(1, "bytea[]") + ", " + p(2, "text[]") + ", " +
         p(3, "text[]") + ", " + p(4, "text[]") + ", " + p(5, "int8[]") + ", " + p(6, "int8[]") +
         ", " + p(7, "int8[]") + ", " + p(8, "int8[]") + ", " + p(9, "text[]") +
         ") WITH ORDINALITY AS v(url, bin_data, branch_id, op, status, create_time, update_time, "
         "finish_time, attempts, last_error, n)";
}

constexpr const char* kInsertBranchColumns =
    "INSERT INTO trans_branch_op (gid, url, bin_data, branch_id, op, status, create_time, "
    "update_time, finish_time, attempts, last_error) ";
constexpr const char* kBranchValues =
    "v.url, v.bin_data, v.branch_id, v.op, v.status, v.create_time, v.update_time, v.finish_time, "
    "v.attempts, v.last_error";

// Create: inserts the global row unless the gid exists (NOT EXISTS keeps the identity sequence
// untouched for the common duplicate; ON CONFLICT covers a concurrent insert of the same gid), then
// its branch rows in vector order, only if the global row was inserted.
// -> (created, branches inserted)
std::string CreateSql() {
  return std::string(
             "WITH g AS (INSERT INTO trans_global (gid, trans_type, status, protocol, "
             "query_prepared, custom_data, rollback_reason, result, owner, options, create_time, "
             "update_time, finish_time, rollback_time, next_cron_interval, next_cron_time, "
             "retry_count, lease_until) "
             "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::int8, $12::int8, $13::int8, "
             "$14::int8, $15::int8, $16::int8, $17::int8, $18::int8 "
             "WHERE NOT EXISTS (SELECT 1 FROM trans_global WHERE gid = $1) "
             "ON CONFLICT (gid) DO NOTHING RETURNING gid), "
             "b AS (") +
         kInsertBranchColumns + "SELECT g.gid, " + kBranchValues + " FROM g, " +
         BranchRowsUnnest(19) +
         " ORDER BY v.n RETURNING 1) "
         "SELECT (SELECT count(*) FROM g), (SELECT count(*) FROM b)";
}

// Update: compare-and-set on status. `miss` is the first addressed branch row that does not exist;
// the global row changes only if there is none and the status matches, the branch rows only if the
// global row changed. -> (global rows changed, branch rows changed, status before, missing
// branch_id, missing op)
constexpr const char* kUpdateSql =
    "WITH cur AS (SELECT status FROM trans_global WHERE gid = $1), "
    "v AS (SELECT * FROM unnest($13::text[], $14::text[], $15::text[], $16::int8[], $17::text[], "
    "$18::int8[]) WITH ORDINALITY AS v(branch_id, op, status, attempts, last_error, finish_time, "
    "n)), "
    "miss AS (SELECT v.branch_id, v.op FROM v WHERE NOT EXISTS (SELECT 1 FROM trans_branch_op t "
    "WHERE t.gid = $1 AND t.branch_id = v.branch_id AND t.op = v.op) ORDER BY v.n LIMIT 1), "
    "g AS (UPDATE trans_global SET status = COALESCE($3, status), "
    "rollback_reason = COALESCE($4, rollback_reason), custom_data = COALESCE($5, custom_data), "
    "options = COALESCE($6, options), next_cron_time = COALESCE($7::int8, next_cron_time), "
    "next_cron_interval = COALESCE($8::int8, next_cron_interval), "
    "retry_count = COALESCE($9::int8, retry_count), "
    "finish_time = COALESCE($10::int8, finish_time), "
    "rollback_time = COALESCE($11::int8, rollback_time), update_time = $12::int8, "
    "owner = COALESCE($21, owner), lease_until = COALESCE($22::int8, lease_until) "
    "WHERE gid = $1 AND status = $2 AND NOT EXISTS (SELECT 1 FROM miss) "
    "AND ($19::text IS NULL OR owner = $19) AND ($20::int8 IS NULL OR (next_cron_time <= "
    "$20::int8 AND lease_until <= $20::int8)) RETURNING id), "
    "b AS (UPDATE trans_branch_op t SET status = COALESCE(v.status, t.status), "
    "attempts = COALESCE(v.attempts, t.attempts), last_error = COALESCE(v.last_error, "
    "t.last_error), finish_time = COALESCE(v.finish_time, t.finish_time), update_time = $12::int8 "
    "FROM v, g WHERE t.gid = $1 AND t.branch_id = v.branch_id AND t.op = v.op RETURNING 1), "
    // The call history (issue 13): new calls, then the ones beyond the newest 20 of each row
    // (the DELETE sees the rows stored before this statement; a seq already kept is skipped).
    "ai AS (INSERT INTO trans_branch_attempt (gid, branch_id, op, seq, call_time, http_status, "
    "latency_ms, result, error) SELECT $1, a.branch_id, a.op, a.seq, a.call_time, a.http_status, "
    "a.latency_ms, a.result, a.error FROM unnest($23::text[], $24::text[], $25::int8[], "
    "$26::int8[], $27::int8[], $28::int8[], $29::text[], $30::text[]) AS a(branch_id, op, seq, "
    "call_time, http_status, latency_ms, result, error) WHERE EXISTS (SELECT 1 FROM g) "
    "ON CONFLICT (gid, branch_id, op, seq) DO NOTHING RETURNING 1), "
    "at AS (DELETE FROM trans_branch_attempt x USING (SELECT branch_id, op, max(seq) AS m FROM "
    "unnest($23::text[], $24::text[], $25::int8[]) AS a(branch_id, op, seq) GROUP BY branch_id, "
    "op) t WHERE EXISTS (SELECT 1 FROM g) AND x.gid = $1 AND x.branch_id = t.branch_id AND "
    "x.op = t.op AND x.seq <= t.m - 20 RETURNING 1) "
    "SELECT (SELECT count(*) FROM g), (SELECT count(*) FROM b), (SELECT status FROM cur), "
    "(SELECT branch_id FROM miss), (SELECT op FROM miss)";

// AddBranches: FOR SHARE holds off a concurrent status change until this commits. `dup` is the
// first new row whose key exists already or repeats an earlier new row. -> (status, duplicate
// branch_id, duplicate op, rows inserted)
std::string AddBranchesSql() {
  return "WITH cur AS (SELECT status FROM trans_global WHERE gid = $1 FOR SHARE), "
         "v AS (SELECT * FROM " +
         BranchRowsUnnest(3) +
         "), "
         "dup AS (SELECT v.branch_id, v.op FROM v WHERE EXISTS (SELECT 1 FROM trans_branch_op t "
         "WHERE t.gid = $1 AND t.branch_id = v.branch_id AND t.op = v.op) OR EXISTS (SELECT 1 "
         "FROM v AS w WHERE w.branch_id = v.branch_id AND w.op = v.op AND w.n < v.n) "
         "ORDER BY v.n LIMIT 1), "
         "ins AS (" +
         kInsertBranchColumns + "SELECT $1, " + kBranchValues +
         " FROM v WHERE (SELECT status FROM cur) = $2 AND NOT EXISTS (SELECT 1 FROM dup) "
         "ORDER BY v.n RETURNING 1) "
         "SELECT (SELECT status FROM cur), (SELECT branch_id FROM dup), (SELECT op FROM dup), "
         "(SELECT count(*) FROM ins)";
}

// ClaimDue: SKIP LOCKED lets coordinators claim in parallel; a row whose lease another claimer
// committed meanwhile fails the re-check of the WHERE term after locking and is skipped.
// -> gids, earliest first
constexpr const char* kClaimDueSql =
    "WITH due AS (SELECT id, next_cron_time FROM trans_global "
    "WHERE status IN ('prepared', 'submitted', 'aborting') AND next_cron_time <= $1::int8 "
    "AND lease_until <= $1::int8 "
    "ORDER BY next_cron_time, id LIMIT $2::int8 FOR UPDATE SKIP LOCKED), "
    "upd AS (UPDATE trans_global t SET next_cron_time = $3::int8, lease_until = $3::int8, "
    "owner = $4 FROM due "
    "WHERE t.id = due.id RETURNING t.gid, due.next_cron_time AS due_time, t.id) "
    "SELECT gid FROM upd ORDER BY due_time, id";

// -> (rows with that gid, rows changed)
constexpr const char* kResetNextSql =
    "WITH cur AS (SELECT 1 FROM trans_global WHERE gid = $1), "
    "u AS (UPDATE trans_global SET next_cron_time = $2::int8 WHERE gid = $1 AND "
    "status IN ('prepared', 'submitted', 'aborting') RETURNING 1) "
    "SELECT (SELECT count(*) FROM cur), (SELECT count(*) FROM u)";

// -> rows changed
constexpr const char* kResetCronSql =
    "WITH due AS (SELECT id FROM trans_global "
    "WHERE status IN ('prepared', 'submitted', 'aborting') AND next_cron_time > $2::int8 "
    "ORDER BY next_cron_time, id LIMIT $3::int8 FOR UPDATE SKIP LOCKED), "
    "u AS (UPDATE trans_global t SET next_cron_time = $1::int8 FROM due WHERE t.id = due.id "
    "RETURNING 1) "
    "SELECT count(*) FROM u";

}  // namespace

std::vector<Command> WriterPrepares() {
  std::vector<Command> cmds = {
      Command::Prepare(kBegin, "BEGIN"),
      Command::Prepare(kSavepoint, "SAVEPOINT dtx_op"),
      Command::Prepare(kRelease, "RELEASE SAVEPOINT dtx_op"),
      Command::Prepare(kRollbackTo, "ROLLBACK TO SAVEPOINT dtx_op"),
      Command::Prepare(kCommit, "COMMIT"),
      Command::Prepare(kRollback, "ROLLBACK"),
      Command::Prepare(kCreate, CreateSql()),
      Command::Prepare(kUpdate, kUpdateSql),
      Command::Prepare(kAddBranches, AddBranchesSql()),
      Command::Prepare(kClaimDue, kClaimDueSql),
      Command::Prepare(kResetNext, kResetNextSql),
      Command::Prepare(kResetCron, kResetCronSql),
      Command::Prepare(kAcquireKeys, pg_keys::kAcquireKeysSql),
      Command::Prepare(kWakeKeys, pg_keys::kWakeKeysSql),
      // -> rows inserted (0: the key exists)
      Command::Prepare(kKvInsert,
                       "WITH i AS (INSERT INTO kv (cat, k, v, version, create_time, update_time) "
                       "SELECT $1::text, $2::text, $3::text, 1, $4::int8, $4::int8 "
                       "WHERE NOT EXISTS (SELECT 1 FROM kv WHERE cat = $1::text AND k = $2::text) "
                       "ON CONFLICT (cat, k) DO NOTHING RETURNING 1) SELECT count(*) FROM i"),
      // Compare-and-set on version; a concurrent update re-checks the WHERE term after the lock.
      // -> rows changed
      Command::Prepare(kKvUpdate,
                       "WITH u AS (UPDATE kv SET v = $3::text, version = version + 1, "
                       "update_time = $5::int8 WHERE cat = $1::text AND k = $2::text AND "
                       "version = $4::int8 RETURNING 1) SELECT count(*) FROM u"),
      // -> rows deleted
      Command::Prepare(kKvDelete,
                       "WITH d AS (DELETE FROM kv WHERE cat = $1::text AND k = $2::text "
                       "RETURNING 1) SELECT count(*) FROM d"),
  };
  for (Command& c : RetentionWriterPrepares()) cmds.push_back(std::move(c));
  return cmds;
}

std::vector<Command> ReaderPrepares() {
  std::vector<Command> cmds = {
      Command::Prepare(kBeginRead, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
      Command::Prepare(kCommit, "COMMIT"),
      Command::Prepare(kRollback, "ROLLBACK"),
      Command::Prepare(kLoadGlobal, std::string("SELECT ") + kGlobalColumns +
                                        " FROM trans_global WHERE gid = $1"),
      Command::Prepare(kLoadBranches, std::string("SELECT ") + kBranchColumns +
                                          " FROM trans_branch_op WHERE gid = $1 ORDER BY id"),
      Command::Prepare(kKvGet, std::string("SELECT ") + kKvColumns +
                                   " FROM kv WHERE cat = $1::text AND k = $2::text"),
      Command::Prepare(kKvQuery, std::string("SELECT ") + kKvColumns +
                                     " FROM kv WHERE ($1::text = '' OR cat = $1::text) AND "
                                     "($2::text = '' OR k = $2::text) ORDER BY id"),
      Command::Prepare(kKvScan, std::string("SELECT ") + kKvColumns +
                                    " FROM kv WHERE cat = $1::text AND ($2::int8 = 0 OR id < "
                                    "$2::int8) ORDER BY id DESC LIMIT $3::int8"),
  };
  for (Command& c : RetentionReaderPrepares()) cmds.push_back(std::move(c));
  return cmds;
}

// ---------------------------------------------------------------------------------------------------
// Row decoding (binary results).

Result<core::GlobalTrans> ReadGlobal(const PGresult* r, int row) {
  using pg::GetBytes;
  using pg::GetInt;
  core::GlobalTrans g;
  g.id = GetInt(r, row, 0);
  g.gid = GetBytes(r, row, 1);
  if (Status s = internal::DecodeGlobalColumns(GetBytes(r, row, 2), GetBytes(r, row, 3),
                                               GetBytes(r, row, 10), &g);
      !s.ok()) {
    return s;
  }
  g.protocol = GetBytes(r, row, 4);
  g.query_prepared = GetBytes(r, row, 5);
  g.custom_data = GetBytes(r, row, 6);
  g.rollback_reason = GetBytes(r, row, 7);
  g.result = GetBytes(r, row, 8);
  g.owner = GetBytes(r, row, 9);
  g.create_time_ms = GetInt(r, row, 11);
  g.update_time_ms = GetInt(r, row, 12);
  g.finish_time_ms = GetInt(r, row, 13);
  g.rollback_time_ms = GetInt(r, row, 14);
  g.next_cron_interval_ms = GetInt(r, row, 15);
  g.next_cron_time_ms = GetInt(r, row, 16);
  g.retry_count = GetInt(r, row, 17);
  g.lease_until_ms = GetInt(r, row, 18);
  return g;
}

Result<core::BranchRow> ReadBranch(const PGresult* r, int row) {
  using pg::GetBytes;
  using pg::GetInt;
  core::BranchRow b;
  b.id = GetInt(r, row, 0);
  b.gid = GetBytes(r, row, 1);
  b.url = GetBytes(r, row, 2);
  b.bin_data = GetBytes(r, row, 3);
  b.branch_id = GetBytes(r, row, 4);
  b.op = GetBytes(r, row, 5);
  if (Status s = internal::DecodeBranchStatus(GetBytes(r, row, 6), &b); !s.ok()) return s;
  b.create_time_ms = GetInt(r, row, 7);
  b.update_time_ms = GetInt(r, row, 8);
  b.finish_time_ms = GetInt(r, row, 9);
  b.attempts = GetInt(r, row, 10);
  b.last_error = GetBytes(r, row, 11);
  return b;
}

KvRow ReadKv(const PGresult* r, int row) {
  KvRow k;
  k.id = pg::GetInt(r, row, 0);
  k.cat = pg::GetBytes(r, row, 1);
  k.k = pg::GetBytes(r, row, 2);
  k.v = pg::GetBytes(r, row, 3);
  k.version = pg::GetInt(r, row, 4);
  k.create_time_ms = pg::GetInt(r, row, 5);
  k.update_time_ms = pg::GetInt(r, row, 6);
  return k;
}

Status UnexpectedShape(std::string_view what) {
  return Status::Internal(std::string("postgres: unexpected result shape of ") + std::string(what))
      .WithInfo(ErrorInfo{std::string(kDatabaseErrorReason), {}});
}

Status NulByte(const std::string& gid) {
  return Status::InvalidArgument(
      "transaction " + gid + ": a text field contains a NUL byte, which PostgreSQL cannot store");
}

// The ten arrays of branch rows for BranchRowsUnnest, appended to `p`.
void AddBranchArrays(const std::vector<core::BranchRow>& rows, Params& p) {
  ArrayBuilder url, bin, bid, op, st, ct, ut, ft, at, le;
  for (const auto& b : rows) {
    url.Text(b.url);
    bin.Bytea(b.bin_data);
    bid.Text(b.branch_id);
    op.Text(b.op);
    st.Text(core::ToString(b.status));
    ct.Int(b.create_time_ms);
    ut.Int(b.update_time_ms);
    ft.Int(b.finish_time_ms);
    at.Int(b.attempts);
    le.Text(b.last_error);
  }
  for (ArrayBuilder* a : {&url, &bin, &bid, &op, &st, &ct, &ut, &ft, &at, &le}) {
    p.Text(std::move(*a).Finish());
  }
}
}  // namespace dtx::store::pg_internal
