/// @file
/// The sub-transaction barrier on PostgreSQL (dtx::PgDb): the caller's libpq connection behind the
/// BarrierDb interface of dtx/barrier.h. Part of the optional library dtx::pg (CMake:
/// find_package(dtx COMPONENTS pg), target dtx::pg; pkg-config: dtx-pg), so that programs that do
/// not use PostgreSQL do not need libpq.
///
/// @code
/// #include <libpq-fe.h>
///   PGconn* conn = PQconnectdb("host=127.0.0.1 dbname=bank");   // the handler's connection
///   dtx::PgDb db(conn);                                          // table dtm_barrier.barrier
///   dtx::Status s = dtx::EnsureBarrierTable(db);                 // once, at start-up
///   // In a handler: dtx::BranchBarrier::FromRequest(r); here the same identity by hand.
///   auto barrier = dtx::BranchBarrier::Create("saga", "order-42", "01", "action");
///   if (s.ok() && barrier.ok()) {
///     s = barrier->Call(db, [&](dtx::PgTx& tx) {                 // inside the barrier's BEGIN
///       PGresult* r = PQexec(tx.conn, "update account set balance = balance - 30 where id = 1");
///       bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
///       PQclear(r);
///       return ok ? dtx::Status::Ok() : dtx::Status::Internal("debit failed");
///     });
///   }
///   PQfinish(conn);
/// @endcode
///
/// Thread-safety and failures: as dtx/barrier.h (one connection, one thread at a time; Status
/// values, never exceptions). No libpq header is included here (PGconn is forward-declared).
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "dtx/barrier.h"
#include "dtx/export.h"
#include "dtx/status.h"

namespace dtx {

/// Settings of a PgDb.
struct DTX_EXPORT PgBarrierOptions {
  /// The barrier table: `schema.table` or `table` (then resolved through search_path), each part an
  /// unquoted identifier ([A-Za-z_][A-Za-z0-9_]*; PostgreSQL folds it to lower case) of at most 59
  /// bytes. The insert names the constraint uniq_barrier, as DTM's does, and PostgreSQL constraint
  /// (index) names are unique per schema: keep one barrier table per schema.
  std::string table = "dtm_barrier.barrier";
  /// SET LOCAL lock_timeout for every transaction Call runs (business code included): an insert
  /// waiting for another open transaction gives up after this with kTimeout (retryable) instead of
  /// holding the handler forever. The check-back insert of QueryPrepared runs under the same limit.
  /// 0 = no limit (the server's setting applies).
  std::chrono::milliseconds lock_timeout{10'000};
};

/// The open local transaction that Call hands to business code: the caller's connection, inside the
/// BEGIN that Call issued (default isolation, normally READ COMMITTED). Run any SQL on it with
/// PQexec/PQexecParams; SAVEPOINTs are fine. Do not BEGIN, COMMIT or ROLLBACK. If one of your
/// statements fails, return an error: the transaction is aborted, and returning ok anyway makes
/// Call roll back and answer kInternal.
struct DTX_EXPORT PgTx {
  PGconn* conn;  ///< the caller's connection, inside the barrier's transaction
};

/// The barrier on one libpq connection (synchronous API; not in pipeline or COPY mode). The
/// constructor never fails: an invalid table name makes every operation return kInvalidArgument.
class DTX_EXPORT PgDb final : public BarrierDb {
 public:
  /// Wraps `conn` (owned by the caller, open for the adapter's lifetime).
  explicit PgDb(PGconn* conn, PgBarrierOptions options = {});

  /// The wrapped connection.
  PGconn* handle() const { return conn_; }
  /// The barrier table's name.
  const std::string& table() const { return options_.table; }

  /// BEGIN, then SET LOCAL lock_timeout when configured.
  Status Begin() override;
  /// insert into \<table\>(...) values($1,...,$6) on conflict on constraint uniq_barrier do
  /// nothing; affected rows from the command tag. Outside a transaction it runs under lock_timeout
  /// in a single-statement transaction of its own (equivalent to autocommit).
  Result<int> InsertIgnore(const BarrierRow& row) override;
  Result<std::string> SelectReason(std::string_view gid, std::string_view branch_id,
                                   std::string_view op, std::string_view barrier_id) override;
  Status Commit() override;
  void Rollback() override;
  bool InTransaction() const override;

  /// One cleanup batch (see CleanBarrierTable): deletes at most `limit` rows whose create_time is
  /// before `horizon`, in a transaction of its own (rows locked by a running handler are skipped);
  /// returns how many. kInvalidArgument inside a transaction or for a limit outside
  /// 1..kMaxBarrierCleanupBatch.
  Result<int64_t> DeleteBefore(std::chrono::system_clock::time_point horizon, int limit);

  /// Runs §4.1's PostgreSQL script for this table, in one transaction: create schema (when the
  /// name is qualified), sequence \<table\>_seq, and the table with constraint uniq_barrier, each
  /// "if not exists". Two concurrent first calls may fail with a unique violation: retry.
  Status EnsureTable();

 private:
  Status Exec(const std::string& sql, std::string_view what);

  PGconn* conn_;
  PgBarrierOptions options_;
  Status usable_;
};

/// Free-function spelling of EnsureTable, for symmetry with dtx/barrier.h.
inline Status EnsureBarrierTable(PgDb& db) { return db.EnsureTable(); }

/// CleanBarrierTable of dtx/barrier.h on PostgreSQL.
DTX_EXPORT Result<int64_t> CleanBarrierTable(PgDb& db, const BarrierCleanupOptions& options);

}  // namespace dtx
