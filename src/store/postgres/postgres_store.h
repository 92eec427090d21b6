// PostgresStore: the Store shared by several coordinators — one PostgreSQL database, every table in
// one schema (PostgresOptions::schema, default "dtx").
//
// Threads: `writer_connections` writer threads, each owning one connection, take turns on one
// bounded write queue. A writer pops up to max_batch_ops operations and sends them as ONE libpq
// pipeline (one round trip): BEGIN, the operations' statements, COMMIT. Each operation is one
// statement (data-modifying CTEs) that decides its own outcome inside the database — a lost
// compare-and-set, an existing gid, an unknown gid or branch changes nothing and reports its status
// as a row, so it needs no error, no rollback and no savepoint. A statement that does raise an
// error (bad UTF-8, a concurrent duplicate, a deadlock, a statement timeout) aborts the
// transaction; the writer rolls it back, fails only that operation, and sends the others again with
// a SAVEPOINT / RELEASE around each, so that a further error is undone alone (ROLLBACK TO its
// savepoint, then the remaining operations and the COMMIT are re-sent). Callbacks run on the writer
// thread after the COMMIT returned (synchronous_commit=on: the WAL is flushed).
// `reader_connections` reader threads serve Load (one REPEATABLE READ, READ ONLY transaction: a
// transaction and its branches are consistent) and List. Both queues are bounded; a full queue
// refuses at once with kUnavailable (callback inline, on the caller's thread).
//
// Several coordinators: ClaimDue locks due rows with FOR UPDATE SKIP LOCKED and pushes their
// next_cron_time to the lease in the same statement, so coordinators claiming in parallel never get
// the same gid while its lease is valid. Update is a compare-and-set on status in one UPDATE (two
// owners cannot both move a transaction); AddBranches share-locks the global row, so it cannot race
// a status change.
//
// Failure: PostgreSQL keeps its own durability, so unlike SQLite nothing here puts the store into a
// permanent failed state. A lost connection (server restart, pg_terminate_backend, network) or a
// server silent past io_timeout_ms fails the operations in flight on that connection with
// kUnavailable — their outcome is unknown: the COMMIT may have been applied — and the thread
// reconnects with capped exponential backoff. While no writer is connected, writes are refused at
// once with kUnavailable; a read that finds its connection lost reconnects and is retried once.
// Errors of one statement map to codes by SQLSTATE (pg_conn.h: ErrorStatus).
//
// Schema: a dtx_schema_version table in the schema records the applied migrations; migrations are
// an ordered list applied in one transaction under a transaction-level advisory lock (several
// coordinators starting at once: one migrates, the others wait and find it done). A schema newer
// than this binary, or an existing schema without dtx_schema_version that holds other tables, is
// refused at open. The schema is documented in postgres_store.cc (kMigrations) and
// docs/storage.md.
//
// All public methods are thread-safe. Close() drains both queues (while no writer can connect,
// queued writes fail with kUnavailable), joins the threads and closes the connections; it is
// idempotent and must not be called from a store callback.
#pragma once

#include "store/store.h"

namespace dtx::store {

// The newest schema version this binary knows (and creates).
inline constexpr int kPostgresSchemaVersion = 6;

// application_name of the store's connections: "dtx writer <schema>" / "dtx reader <schema>" (so
// an operator, or a test, can find them in pg_stat_activity).
inline constexpr const char* kPostgresWriterAppName = "dtx writer ";
inline constexpr const char* kPostgresReaderAppName = "dtx reader ";

}  // namespace dtx::store
