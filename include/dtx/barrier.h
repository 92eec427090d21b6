/// @file
/// dtx::BranchBarrier: the sub-transaction barrier of PROTOCOL.md §4 for participant handlers. It
/// wraps the handler's business code in one local transaction together with the insert of a barrier
/// row keyed (gid, branch_id, op, barrier_id), so that every branch operation takes effect at most
/// once (idempotency), an undo whose forward step never ran does nothing (null compensation), and a
/// forward step that arrives after its undo does nothing (anti-hanging). Rows are written exactly
/// as DTM's SDKs write them, so a fleet mixing DTM SDKs and libdtx agrees on one table.
///
/// @code
/// #include <sqlite3.h>
///   sqlite3* conn = nullptr;                                   // the participant's own database
///   if (sqlite3_open("bank.db", &conn) != SQLITE_OK) return;
///   dtx::SqliteDb setup(conn);
///   if (!dtx::EnsureBarrierTable(setup).ok()) return;          // once, at start-up
///   dtx::ParticipantServer server({.port = 8081, .worker_threads = 1});  // one connection
///   server.Handle("*", "/api/TransOutCancel", [&](const dtx::BranchRequest& r) {
///     auto barrier = dtx::BranchBarrier::FromRequest(r);       // one per request
///     if (!barrier.ok()) return dtx::BarrierBranchResult(barrier.status());
///     dtx::SqliteDb db(conn);
///     dtx::Status s = barrier->Call(db, [&](dtx::SqliteTx& tx) {  // inside the barrier's BEGIN
///       int rc = sqlite3_exec(tx.db, "update account set frozen = 0 where id = 1", nullptr,
///                             nullptr, nullptr);
///       return rc == SQLITE_OK ? dtx::Status::Ok() : dtx::Status::Internal("unfreeze failed");
///     });
///     return dtx::BarrierBranchResult(s);                      // 200 / 409 / 425 / 500
///   });
/// @endcode
///
/// Databases: SQLite (the caller's `sqlite3*`) and PostgreSQL (the caller's libpq `PGconn*`, see
/// dtx/barrier_pg.h), each behind the small BarrierDb interface; the table must live in the same
/// database as the business tables (EnsureBarrierTable creates it as §4.1 specifies).
/// docs/barrier.md has the full story.
///
/// Thread-safety: none inside one object. A BranchBarrier belongs to one request (its barrier_id
/// counter is per request, §4.4); an adapter (SqliteDb, PgDb) wraps one connection, and a
/// connection runs one transaction at a time, so use each from one thread at a time. Concurrent
/// handlers use separate connections; the database's unique key then decides every race (no
/// read-then-write).
///
/// How it fails: every operation returns a Status, never throws. Invalid identity or table names
/// and values longer than their columns -> kInvalidArgument; a database error -> kUnavailable
/// (connection lost, deadlock, serialization failure: retryable), kTimeout (SQLite busy timeout or
/// PostgreSQL lock_timeout expired: retryable), kIoError (disk), or kInternal; the business code's
/// own error is returned unchanged. Whatever happens, Call leaves the connection outside any
/// transaction. An exception thrown by business code rolls the transaction back and is rethrown
/// unchanged.
///
/// Include policy: as client.h. No SQLite or libpq header is included here; the handle types are
/// forward-declared exactly as sqlite3.h and libpq-fe.h declare them. SqliteDb is part of dtx::dtx
/// (libdtx links SQLite); PgDb, PgTx and Call(PgDb&, ...) are in dtx/barrier_pg.h and the optional
/// library dtx::pg (it brings libpq).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include "dtx/export.h"
#include "dtx/participant.h"
#include "dtx/status.h"

/// Same declarations as in sqlite3.h and libpq-fe.h (repeating an identical typedef is valid C++).
/// @{
typedef struct sqlite3 sqlite3;
typedef struct pg_conn PGconn;
/// @}

namespace dtx {
/// The PostgreSQL adapter, declared in dtx/barrier_pg.h (library dtx::pg).
class PgDb;
struct PgTx;
}  // namespace dtx

namespace dtx {

/// Column sizes of DTM's table (PROTOCOL.md §4.1), in characters (UTF-8 code points, as varchar(n)
/// counts them). Values are checked against them before any insert and never truncated (§4.2).
/// @{
inline constexpr size_t kBarrierTransTypeMaxChars = 45;
inline constexpr size_t kBarrierGidMaxChars = 128;
inline constexpr size_t kBarrierBranchIdMaxChars = 128;
inline constexpr size_t kBarrierOpMaxChars = 45;
inline constexpr size_t kBarrierIdMaxChars = 45;
inline constexpr size_t kBarrierReasonMaxChars = 45;
/// @}

/// The fixed key of the msg check-back row (PROTOCOL.md §1.9, §4.5): a two-phase message's local
/// transaction runs a barrier with branch_id "00" and op "msg"; QueryPrepared inserts the same key
/// with reason "rollback".
/// @{
inline constexpr std::string_view kMsgBranchId = "00";
inline constexpr std::string_view kMsgOp = "msg";
/// @}
/// The message of the kAlreadyExists status that Call returns for op "msg" when the check-back
/// already decided "rollback" (DTM's ErrDuplicated).
inline constexpr std::string_view kDuplicatedMessage = "DUPLICATED";

/// One barrier row as written by the insert-ignore primitive (§4.2). Views into the caller's
/// strings.
struct DTX_EXPORT BarrierRow {
  std::string_view trans_type;  ///< "saga", "tcc", "msg", "xa", ...
  std::string_view gid;         ///< the global transaction id
  std::string_view branch_id;   ///< "01", "02", ... ("00" for a message's local transaction)
  std::string_view op;          ///< the branch op: "action", "compensate", "try", "cancel", ...
  std::string_view barrier_id;  ///< "01", "02", ...: the Call's number within the request
  std::string_view reason;      ///< the op that wrote the row (the origin row: the undo's op)
};

/// Checks the six values against their column sizes: non-empty key fields, no NUL byte, valid
/// UTF-8, at most the column's characters. kInvalidArgument names the first offending field.
DTX_EXPORT Status ValidateBarrierRow(const BarrierRow& row);

/// The few operations the barrier needs from a database. SqliteDb and PgDb implement it; a test or
/// another database can implement it too and use BranchBarrier::Call(BarrierDb&, ...). An adapter
/// wraps one connection that the caller owns and keeps open for the adapter's lifetime.
class DTX_EXPORT BarrierDb {
 public:
  virtual ~BarrierDb() = default;

  /// Starts the local transaction that Call runs in. kInvalidArgument when the connection is
  /// already inside a transaction (Call must own the transaction it commits).
  virtual Status Begin() = 0;
  /// The insert-ignore primitive of §4.2, inside the open transaction or, outside one, in
  /// autocommit mode. Returns 1 when this call inserted the row, 0 when a row with the same key
  /// exists. Waits while another open transaction holds the same key (or, on SQLite, the write
  /// lock).
  virtual Result<int> InsertIgnore(const BarrierRow& row) = 0;
  /// The reason of the row with key (gid, branch_id, op, barrier_id); kNotFound when there is none.
  virtual Result<std::string> SelectReason(std::string_view gid, std::string_view branch_id,
                                           std::string_view op, std::string_view barrier_id) = 0;
  /// Commits the open transaction. kInternal when there is none any more (the business code ended
  /// it) or it cannot commit (an SQL statement in it failed); the transaction is then rolled back.
  virtual Status Commit() = 0;
  /// Rolls the open transaction back; does nothing outside a transaction. Never fails visibly (a
  /// lost connection has no transaction left to roll back).
  virtual void Rollback() = 0;
  /// True while the connection is inside a transaction (QueryPrepared needs autocommit).
  virtual bool InTransaction() const = 0;
};

// ---------------------------------------------------------------------------------------------------
// SQLite

/// Settings of a SqliteDb.
struct DTX_EXPORT SqliteBarrierOptions {
  /// The barrier table, an unquoted identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63 bytes) in the
  /// connection's main database: SQLite has no schemas, and an ATTACHed file would not commit
  /// atomically with the business tables in WAL mode (§4.1).
  std::string table = "dtm_barrier";
  /// Installed on the connection by the constructor (sqlite3_busy_timeout), so that competing
  /// writers queue for the single write lock instead of failing with SQLITE_BUSY (§4.2). A writer
  /// that waits longer gets kTimeout (retryable). 0 leaves the connection's own busy handler alone.
  std::chrono::milliseconds busy_timeout{10'000};
};

/// The open local transaction that Call hands to business code: the caller's connection, inside the
/// BEGIN IMMEDIATE that Call issued. Run any SQL on it (sqlite3_prepare_v2 ... sqlite3_step);
/// SAVEPOINTs are fine. Do not BEGIN, COMMIT or ROLLBACK: Call ends the transaction (commit when
/// the business code returns ok, rollback otherwise) and reports kInternal if it was ended early.
struct DTX_EXPORT SqliteTx {
  sqlite3* db;  ///< the caller's connection, inside the barrier's transaction
};

/// The barrier on one SQLite connection. Needs SQLite >= 3.24 (upsert syntax); older libraries make
/// every operation fail with kUnimplemented. The constructor never fails: an invalid table name
/// makes every operation return kInvalidArgument.
class DTX_EXPORT SqliteDb final : public BarrierDb {
 public:
  /// Wraps `db` (owned by the caller, open for the adapter's lifetime) and installs the busy
  /// timeout of `options`.
  explicit SqliteDb(sqlite3* db, SqliteBarrierOptions options = {});

  /// The wrapped connection.
  sqlite3* handle() const { return db_; }
  /// The barrier table's name.
  const std::string& table() const { return options_.table; }

  /// BEGIN IMMEDIATE: takes the write lock at once, so the lock upgrade can never deadlock.
  Status Begin() override;
  /// `insert into TABLE(...) values(?,?,?,?,?,?) on conflict(gid, branch_id, op, barrier_id) do
  /// nothing`; affected rows from sqlite3_changes(). Stricter than INSERT OR IGNORE, which would
  /// also swallow NOT NULL and CHECK violations.
  Result<int> InsertIgnore(const BarrierRow& row) override;
  Result<std::string> SelectReason(std::string_view gid, std::string_view branch_id,
                                   std::string_view op, std::string_view barrier_id) override;
  Status Commit() override;
  void Rollback() override;
  bool InTransaction() const override;

  /// One cleanup batch (see CleanBarrierTable): deletes at most `limit` rows whose create_time is
  /// before `horizon`, oldest first, in a transaction of their own; returns how many.
  /// kInvalidArgument inside a transaction or for a limit outside 1..kMaxBarrierCleanupBatch.
  Result<int64_t> DeleteBefore(std::chrono::system_clock::time_point horizon, int limit);
  /// Creates the table and its unique index as §4.1 gives them, if missing, in one transaction. The
  /// index is named uniq_barrier for the default table and uniq_\<table\> otherwise (SQLite index
  /// names are per database). Does not check the layout of an existing table.
  Status EnsureTable();

 private:
  Status Exec(const char* sql, std::string_view what);

  sqlite3* db_;
  SqliteBarrierOptions options_;
  Status usable_;
};

/// Free-function spelling of EnsureTable, for symmetry with the rest of the API.
inline Status EnsureBarrierTable(SqliteDb& db) { return db.EnsureTable(); }

/// Largest batch of a barrier cleanup (rows per delete transaction).
inline constexpr int kMaxBarrierCleanupBatch = 10'000;

/// Settings of CleanBarrierTable.
struct DTX_EXPORT BarrierCleanupOptions {
  /// Rows created before this instant are deleted. It must lie further back than the longest a
  /// global transaction can stay unfinished (its timeout plus every retry, including an operator's
  /// manual retry days later): a branch call that arrives after its barrier rows are gone is
  /// executed again (no idempotency, no null-compensation or anti-hanging protection).
  std::chrono::system_clock::time_point horizon;
  /// Rows per delete transaction, 1..kMaxBarrierCleanupBatch: short transactions keep the table's
  /// locks (SQLite: the write lock) for a moment only, so handlers are not starved.
  int batch_rows = 1000;
  /// Batches per call at most (>= 1); what is left waits for the next call.
  int max_batches = 1000;
  /// Sleep between two batches (the calling thread sleeps; run it off the request path).
  std::chrono::milliseconds pause{10};
};

/// Deletes old barrier rows in batches (rows created before options.horizon), on a connection
/// outside any transaction; returns how many rows it deleted. Stops at the first database error
/// (rows deleted by earlier batches stay deleted). Call it periodically, e.g. once an hour with a
/// horizon of 7 days:
/// @code
/// #include <sqlite3.h>
/// #include <cstdio>
///   sqlite3* conn = nullptr;
///   if (sqlite3_open("bank.db", &conn) != SQLITE_OK) return;
///   dtx::SqliteDb db(conn);
///   dtx::BarrierCleanupOptions cleanup;
///   cleanup.horizon = std::chrono::system_clock::now() - std::chrono::hours(24 * 7);
///   dtx::Result<int64_t> deleted = dtx::CleanBarrierTable(db, cleanup);
///   if (!deleted.ok()) std::fprintf(stderr, "%s\n", deleted.status().ToString().c_str());
/// @endcode
/// PostgreSQL: the same with a dtx::PgDb (dtx/barrier_pg.h).
DTX_EXPORT Result<int64_t> CleanBarrierTable(SqliteDb& db, const BarrierCleanupOptions& options);

// ---------------------------------------------------------------------------------------------------
// The barrier

/// The barrier of one branch request; see the file description.
class DTX_EXPORT BranchBarrier {
 public:
  /// From the four identity fields of a branch call (query string or dtm-* metadata, §3.2). All
  /// must be non-empty and fit their columns (trans_type and op 45, gid and branch_id 128
  /// characters), else kInvalidArgument.
  static Result<BranchBarrier> Create(std::string trans_type, std::string gid,
                                      std::string branch_id, std::string op);
  /// Create(r.trans_type, r.gid, r.branch_id, r.op).
  static Result<BranchBarrier> FromRequest(const BranchRequest& r);
  /// The barrier of a two-phase message's local transaction: ("msg", gid, "00", "msg"). Its Call
  /// answers kAlreadyExists "DUPLICATED" once the check-back has decided "rollback".
  static Result<BranchBarrier> ForMsg(std::string gid);

  /// @{
  /// The branch identity given to Create.
  const std::string& trans_type() const { return trans_type_; }
  const std::string& gid() const { return gid_; }
  const std::string& branch_id() const { return branch_id_; }
  const std::string& op() const { return op_; }
  /// @}

  /// The number of Calls made so far: the last barrier_id used ("%02d" of it), 0 before the first.
  int barrier_id() const { return barrier_id_; }

  /// The algorithm of §4.3. Takes the next barrier_id ("01", "02", ...: call in a deterministic
  /// order), begins a local transaction, inserts the origin row (cancel -> try, compensate and
  /// rollback -> action; reason = op) and the row of op, then:
  ///   op "msg" and its row existed     -> rollback, kAlreadyExists "DUPLICATED", business not run;
  ///   the row of op existed (duplicate or forward call after its undo), or an undo inserted its
  ///   origin row (null compensation)   -> commit, ok, business not run;
  ///   otherwise                        -> business(tx): ok -> commit, ok; error -> rollback, that
  ///                                       error; exception -> rollback, rethrown.
  /// Database errors roll back and are returned (see the header comment for the codes).
  Status Call(SqliteDb& db, const std::function<Status(SqliteTx&)>& business);
  /// PostgreSQL: include dtx/barrier_pg.h and link dtx::pg.
  Status Call(PgDb& db, const std::function<Status(PgTx&)>& business);
  /// The same on any adapter; business code reaches the connection through its own captures.
  Status Call(BarrierDb& db, const std::function<Status()>& business);

  /// The msg check-back handler of §4.5, on a connection outside any transaction: inserts
  /// (trans_type, gid, "00", "msg", "01", reason "rollback") in autocommit mode, waiting for a
  /// local "msg" transaction that holds the key, then reads the row's reason: "msg" -> ok (the
  /// local transaction committed: SUCCESS); "rollback" -> kConflict (it never committed and now
  /// never will: FAILURE); anything else, or a database error -> another code (answer 500; the
  /// coordinator asks again). Does not advance barrier_id.
  Status QueryPrepared(BarrierDb& db);

 private:
  BranchBarrier(std::string trans_type, std::string gid, std::string branch_id, std::string op)
      : trans_type_(std::move(trans_type)),
        gid_(std::move(gid)),
        branch_id_(std::move(branch_id)),
        op_(std::move(op)) {}

  std::string trans_type_;
  std::string gid_;
  std::string branch_id_;
  std::string op_;
  int barrier_id_ = 0;
};

/// The HTTP answer for the result of Call or QueryPrepared, as DTM's handlers give it:
/// ok -> 200 {"dtm_result":"SUCCESS"}; kConflict -> 409 FAILURE (a business refusal from Call, the
/// "rollback" decision from QueryPrepared); kOngoing -> 425 ONGOING; anything else -> 500 with the
/// status text (the coordinator retries with backoff).
DTX_EXPORT BranchResult BarrierBranchResult(const Status& status);

}  // namespace dtx
