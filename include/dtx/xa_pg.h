/// @file
/// XA branches on PostgreSQL for participant services (PROTOCOL.md §1.8, §4.6): the
/// resource-manager side of dtx/xa.h. One call of HandleXaBranch answers one coordinator or
/// application call of an XA branch on the participant's own libpq connection:
///
///   op=action    BEGIN; insert the fence row (xa, gid, branch, action, 01, "action") into the
///                barrier table; run the business SQL; registerBranch with the coordinator
///                (phase2_url); PREPARE TRANSACTION '\<gid\>-\<branch_id\>'. The prepared
///                transaction survives a crash of the participant (and of PostgreSQL) and holds its
///                row locks.
///   op=commit    COMMIT PREPARED; an unknown xid is success (committed by an earlier call).
///   op=rollback  ROLLBACK PREPARED; an unknown xid is success (null rollback); then the fence row
///                with reason "rollback" is inserted, so an action that arrives late finds it and
///                refuses (anti-hanging).
/// A repeated action whose branch already prepared or committed answers success without running the
/// business code again; one fenced by a rollback answers FAILURE.
///
/// @code
/// #include <libpq-fe.h>
///   PGconn* conn = PQconnectdb("host=127.0.0.1 dbname=bank_a");  // one per worker in real code
///   dtx::ParticipantServer server({.port = 8081, .worker_threads = 1});
///   server.Handle("POST", "/api/xa/debit", [&](const dtx::BranchRequest& r) {
///     return dtx::HandleXaBranch(r, conn, [&](dtx::PgTx& tx) {
///       PGresult* res = PQexec(tx.conn, "update account set balance = balance - 30 where id = 1");
///       bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
///       PQclear(res);
///       return ok ? dtx::Status::Ok() : dtx::Status::Internal("debit failed");
///     });
///   });
///   dtx::Client coordinator("http://127.0.0.1:36789/api/dtmsvr");
///   auto report = dtx::RecoverPreparedXa(conn, coordinator);     // at start-up: in-doubt branches
///   if (report.ok() && server.Start().ok()) { /* serve until shutdown */ }
/// @endcode
///
/// Part of dtx::pg. Needs max_prepared_transactions > 0 on the server (PREPARE TRANSACTION fails
/// with a message naming it otherwise) and the barrier table (EnsureBarrierTable). After a crash,
/// the coordinator's retries finish every prepared branch; RecoverPreparedXa resolves in-doubt ones
/// by asking the coordinator, e.g. at start-up.
///
/// Thread-safety: one connection per call, used by one thread (handlers get a connection from a
/// pool); the connection must be outside any transaction. How it fails: the BranchResult carries
/// the class the coordinator understands — business error kConflict -> 409 FAILURE (the
/// transaction rolls back), a database or coordinator error -> 500 (retried), never an exception.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

#include "dtx/barrier.h"
#include "dtx/barrier_pg.h"
#include "dtx/client.h"
#include "dtx/export.h"
#include "dtx/participant.h"
#include "dtx/status.h"

namespace dtx {

/// Settings of HandleXaBranch and RecoverPreparedXa.
struct DTX_EXPORT PgXaOptions {
  /// The barrier table that holds the fence rows (and its lock_timeout for every statement).
  PgBarrierOptions barrier;
  /// Deadline of the registerBranch call that the action makes inside its local transaction.
  std::chrono::milliseconds register_timeout{10'000};
};

/// The PostgreSQL transaction id of a branch: "\<gid\>-\<branch_id\>" (DTM's naming).
DTX_EXPORT std::string XaXid(std::string_view gid, std::string_view branch_id);

/// Handles one XA branch call as described above. `business` runs inside the local transaction of
/// op=action only; return kConflict to refuse (the global transaction then rolls back).
DTX_EXPORT BranchResult HandleXaBranch(const BranchRequest& request, PGconn* conn,
                                       const std::function<Status(PgTx&)>& business,
                                       const PgXaOptions& options = {});

/// What RecoverPreparedXa did, by outcome.
struct DTX_EXPORT XaRecoveryReport {
  int committed = 0;    ///< the coordinator says succeed/submitted: COMMIT PREPARED
  int rolled_back = 0;  ///< failed/aborting: ROLLBACK PREPARED (+ fence row)
  int undecided = 0;    ///< still prepared, unknown gid, or not of the form `gid-branch_id`: left
};

/// In-doubt recovery: every prepared transaction of this database older than `min_age` is looked up
/// at the coordinator by its gid and finished the way the coordinator decided. Safe to run at any
/// time and concurrently with the coordinator's own retries (COMMIT/ROLLBACK PREPARED are
/// idempotent here). Errors of single lookups leave that transaction undecided; a failed listing
/// returns the error.
DTX_EXPORT Result<XaRecoveryReport> RecoverPreparedXa(
    PGconn* conn, Client& coordinator, std::chrono::seconds min_age = std::chrono::seconds(10),
    const PgXaOptions& options = {});

}  // namespace dtx
