// The PostgreSQL store's statements (names, SQL, per-role prepare lists) and row decoders
// (internal to src/store/postgres).
#pragma once

#include <libpq-fe.h>

#include <string>
#include <string_view>
#include <vector>

#include "core/model.h"
#include "dtx/status.h"
#include "store/postgres/pg_conn.h"
#include "store/store.h"

namespace dtx::store::pg_internal {

using pg::ArrayBuilder;
using pg::Command;
using pg::Deadline;
using pg::Params;
using pg::PgConn;
using pg::PgResult;

inline constexpr const char* kGlobalColumns =
    "id, gid, trans_type, status, protocol, query_prepared, custom_data, rollback_reason, result, "
    "owner, options, create_time, update_time, finish_time, rollback_time, next_cron_interval, "
    "next_cron_time, retry_count, lease_until";
inline constexpr const char* kBranchColumns =
    "id, gid, url, bin_data, branch_id, op, status, create_time, update_time, finish_time, "
    "attempts, last_error";

// ---------------------------------------------------------------------------------------------------
// Statements, prepared once per connection. Every write operation is ONE statement that reports its
// own outcome as a row (no error for an expected refusal), so a batch is one pipeline.

inline constexpr const char* kBegin = "dtx_begin";
inline constexpr const char* kSavepoint = "dtx_sp";
inline constexpr const char* kRelease = "dtx_release";
inline constexpr const char* kRollbackTo = "dtx_rollback_to";
inline constexpr const char* kCommit = "dtx_commit";
inline constexpr const char* kRollback = "dtx_rollback";
inline constexpr const char* kCreate = "dtx_create";
inline constexpr const char* kUpdate = "dtx_update";
inline constexpr const char* kAddBranches = "dtx_add_branches";
inline constexpr const char* kClaimDue = "dtx_claim_due";
inline constexpr const char* kResetNext = "dtx_reset_next";
inline constexpr const char* kResetCron = "dtx_reset_cron";
inline constexpr const char* kAcquireKeys = "dtx_acquire_keys";
inline constexpr const char* kWakeKeys = "dtx_wake_keys";
inline constexpr const char* kBeginRead = "dtx_begin_read";
inline constexpr const char* kLoadGlobal = "dtx_load_global";
inline constexpr const char* kLoadBranches = "dtx_load_branches";
inline constexpr const char* kKvInsert = "dtx_kv_insert";
inline constexpr const char* kKvUpdate = "dtx_kv_update";
inline constexpr const char* kKvDelete = "dtx_kv_delete";
inline constexpr const char* kKvGet = "dtx_kv_get";
inline constexpr const char* kKvQuery = "dtx_kv_query";
inline constexpr const char* kKvScan = "dtx_kv_scan";
inline constexpr const char* kDeleteFinished = "dtx_delete_finished";  // retention.cc
inline constexpr const char* kDeleteKvBefore = "dtx_delete_kv_before";
inline constexpr const char* kCountDue = "dtx_count_due";
inline constexpr const char* kLoadAttempts = "dtx_load_attempts";
inline constexpr const char* kKvColumns = "id, cat, k, v, version, create_time, update_time";

// The statements each role prepares on a new connection.
std::vector<Command> WriterPrepares();
std::vector<Command> ReaderPrepares();

// ---------------------------------------------------------------------------------------------------
// Row decoding (binary results).

Result<core::GlobalTrans> ReadGlobal(const PGresult* r, int row);
Result<core::BranchRow> ReadBranch(const PGresult* r, int row);
KvRow ReadKv(const PGresult* r, int row);
Status UnexpectedShape(std::string_view what);
Status NulByte(const std::string& gid);
// The ten arrays of branch rows for BranchRowsUnnest, appended to `p`.
void AddBranchArrays(const std::vector<core::BranchRow>& rows, Params& p);
// The eight arrays of the update's call history ($23..$30), appended to `p` (retention.cc).
void AddAttemptArrays(const std::vector<TransUpdate::BranchUpdate>& rows, Params& p);
// Retention and the call history (retention.cc): the writer's and the reader's statements.
std::vector<Command> RetentionWriterPrepares();
std::vector<Command> RetentionReaderPrepares();

}  // namespace dtx::store::pg_internal
