// SqliteStore: the embedded, default Store — one SQLite file in WAL mode with synchronous=FULL.
//
// Threads: one writer thread owns the only read-write connection and applies every write (Create,
// Update, AddBranches, ClaimDue, ResetNextCronTime, ResetCronTime) by group commit: it takes up to
// max_batch_ops queued operations, runs BEGIN IMMEDIATE, applies each inside its own SAVEPOINT (a
// refused operation — lost compare-and-set, duplicate key, unknown gid — rolls back only itself and
// gets its own status), COMMITs once (one fsync for the batch), and only then runs the batch's
// callbacks, on the writer thread. `reader_threads` threads, each with its own read-only
// connection, serve Load and List concurrently with the writer (WAL) and run their callbacks. Both
// queues are bounded; a full queue refuses at once with kUnavailable (callback inline, on the
// caller's thread).
//
// Failure: if BEGIN or COMMIT fails (disk full, I/O error, fsync failure), every operation of the
// batch gets kIoError, the failure is logged at critical level, and the store refuses every later
// write with kIoError until it is reopened (reads continue). A BEGIN that only found the database
// locked by another process (busy_timeout expired) fails its batch with kUnavailable and does not
// fail the store.
//
// Schema: versioned by PRAGMA user_version and marked as a dtx database by PRAGMA application_id.
// Migrations run in one transaction at open; a database written by a newer dtx, or a SQLite file
// that is not a dtx database, is refused at open. The schema is documented in schema.cc
// (kMigrations).
//
// All public methods are thread-safe. Close() drains both queues, joins the threads and closes the
// connections; it is idempotent and must not be called from a store callback.
#pragma once

#include <functional>
#include <memory>
#include <string_view>

#include "store/store.h"

namespace dtx::store {

// The newest schema version this binary knows (and creates).
inline constexpr int kSqliteSchemaVersion = 8;

// PRAGMA application_id of a dtx database ("dtx1" in ASCII).
inline constexpr int kSqliteApplicationId = 0x64747831;

// The due-work statements, exposed so that a test can check their query plan. Both name the partial
// index trans_global_due explicitly: without ANALYZE statistics SQLite prefers the status index and
// sorts, which reads every unfinished row; INDEXED BY makes the plan fixed (and makes prepare fail
// loudly if the index were ever missing).
inline constexpr std::string_view kSqliteClaimDueSql =
    "SELECT id, gid FROM trans_global INDEXED BY trans_global_due "
    "WHERE (status = 'prepared' OR status = 'submitted' OR status = 'aborting') "
    "AND next_cron_time <= ?1 AND lease_until <= ?1 "
    "ORDER BY next_cron_time, id LIMIT ?2";
inline constexpr std::string_view kSqliteResetCronTimeSql =
    "UPDATE trans_global SET next_cron_time = ?1 WHERE id IN ("
    "SELECT id FROM trans_global INDEXED BY trans_global_due "
    "WHERE (status = 'prepared' OR status = 'submitted' OR status = 'aborting') "
    "AND next_cron_time > ?2 "
    "ORDER BY next_cron_time, id LIMIT ?3)";

// Test seams. Production code uses OpenSqliteStore.
struct SqliteTestHooks {
  // Called at every COMMIT of the writer; returning true makes that COMMIT fail (as a failed fsync
  // would), which must fail the batch with kIoError and put the store into its failed state.
  std::function<bool()> fail_commit;
};

Result<std::unique_ptr<Store>> OpenSqliteStoreWithHooks(const SqliteOptions& options,
                                                        SqliteTestHooks hooks);

// The SQL that migrates a database from `version` - 1 to `version` (1..kSqliteSchemaVersion), so a
// test can build a database of an older version.
std::string_view SqliteMigrationSql(int version);

}  // namespace dtx::store
