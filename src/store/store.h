// Store: the durable source of truth for global transactions and branch rows.
//
// Every operation is asynchronous: it is queued and its callback runs later, on a thread owned by
// the store (SQLite and PostgreSQL: a writer thread for writes, a reader thread for reads; memory:
// inline, on the caller's thread, before the call returns). Callbacks must be short and must not
// call back into the store synchronously waiting for a result; the engine reposts them onto its own
// executor.
//
// Durability contract: a write's callback reports success only after the change is committed to
// disk (SQLite: WAL + synchronous=FULL, group commit of many operations per fsync; PostgreSQL:
// synchronous_commit=on, group commit of many operations per COMMIT). SQLite: a failed commit fails
// every operation of its batch with kIoError and the store stops accepting writes (fail loudly,
// never retry silently). PostgreSQL: a lost connection fails the operations in flight on it with
// kUnavailable and the store reconnects; such a kUnavailable means the outcome is unknown (the
// COMMIT may have reached the server), so the caller must reload before assuming either.
//
// A request refused at once (a queue is full: kUnavailable; the store is closed: kUnavailable; the
// store has failed: kIoError; PostgreSQL with no live writer connection: kUnavailable; a limit
// below is exceeded: kInvalidArgument) has its callback run inline, on the caller's thread, before
// the call returns.
//
// Each write operation is atomic: all of it is applied or none of it. All methods are thread-safe.
// Close() must not be called from a store callback.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/business_keys.h"
#include "core/model.h"
#include "util/histogram.h"
#include "util/status.h"

namespace dtx::store {

template <class T>
using Callback = std::function<void(Result<T>)>;
using DoneCallback = std::function<void(Status)>;

// ErrorInfo::reason of a failure reported by the database itself (PostgreSQL's error text, its
// SQLSTATE as fact "sqlstate"): the message is for the operator's log; a client is answered with a
// clear message of the code instead (api::WireMessage), never the database's internal names.
inline constexpr std::string_view kDatabaseErrorReason = "DATABASE_ERROR";

// The compare-and-set change of one transaction; defined in core (the state machines produce it).
using TransUpdate = core::TransUpdate;

// Filter and cursor for List (the `all` route). Rows come by descending id.
struct ListQuery {
  std::string gid;                   // exact match when non-empty
  std::string status;                // exact match when non-empty
  std::string trans_type;            // exact match when non-empty
  int64_t create_time_start_ms = 0;  // inclusive, 0 = unbounded
  int64_t create_time_end_ms = 0;    // inclusive, 0 = unbounded
  int64_t before_id = 0;             // cursor: only ids < before_id; 0 = from the newest
  int limit = 100;                   // 1..1000
};

struct ListPage {
  std::vector<core::GlobalTrans> transactions;
  int64_t next_before_id = 0;  // 0 = no more pages (the page held fewer than limit rows)
};

// One row of the key-value table (topics live there: cat "topics", k = topic name). Times are epoch
// ms; version starts at 1 and grows by one on every KvPut.
struct KvRow {
  int64_t id = 0;
  std::string cat;
  std::string k;
  std::string v;
  int64_t version = 0;
  int64_t create_time_ms = 0;
  int64_t update_time_ms = 0;
};

struct KvPage {
  std::vector<KvRow> rows;     // descending id
  int64_t next_before_id = 0;  // 0 = no more pages (the page held fewer than limit rows)
};

struct StoreStats {
  uint64_t commits = 0;        // committed write batches (one fsync / one COMMIT each)
  uint64_t write_ops = 0;      // write operations committed
  uint64_t queued_writes = 0;  // operations waiting for the writer right now
};

// What one retention batch deleted (Store::DeleteFinished).
struct RetentionCount {
  int64_t transactions = 0;  // trans_global rows
  int64_t branches = 0;      // trans_branch_op rows of those transactions
};

// One entry of a branch row's call history (Store::LoadAttempts).
struct AttemptRow {
  std::string branch_id;
  std::string op;
  core::CallAttempt attempt;
};

// Distributions of the committed write batches (SQLite and PostgreSQL; recorded by the writer
// threads, read by the metrics at exposition time).
struct StoreHistograms {
  Histogram batch_ops{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};  // operations per commit
  // BEGIN to COMMIT done (applying the batch and its fsync), seconds.
  Histogram commit_seconds{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                           0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5};
};

class Store {
 public:
  virtual ~Store() = default;

  // Creates the transaction and its branch rows (their ids are assigned in vector order).
  // kAlreadyExists if the gid exists (nothing changes).
  virtual void Create(core::TransSnapshot trans, DoneCallback done) = 0;
  // Create, answering also whether the transaction holds all of its business keys once created:
  // true when the store took them in the same write (memory and SQLite take them at insert when
  // none of its keys has any row) or it has none; false = not known (AcquireKeys tells). The
  // engine's submit skips its acquire on true. Default: Create, answering false.
  virtual void CreateTakingKeys(core::TransSnapshot trans, Callback<bool> done);

  // Applies a compare-and-set update (see TransUpdate).
  virtual void Update(TransUpdate update, DoneCallback done) = 0;

  // Inserts branch rows for an existing transaction whose status is `expected_status`
  // (kConflict otherwise, kAlreadyExists if one of the (branch_id, op) pairs exists).
  virtual void AddBranches(std::string gid, core::GlobalStatus expected_status,
                           std::vector<core::BranchRow> rows, DoneCallback done) = 0;

  // The transaction with its branches in id order, or nullopt if the gid is unknown.
  virtual void Load(std::string gid, Callback<std::optional<core::TransSnapshot>> done) = 0;

  virtual void List(ListQuery query, Callback<ListPage> done) = 0;

  // Claims up to `limit` due transactions: status prepared/submitted/aborting and
  // next_cron_time <= now_ms, earliest first; sets their next_cron_time to lease_until_ms and owner
  // to `owner` in the same atomic write, and returns their gids.
  virtual void ClaimDue(int64_t now_ms, int limit, int64_t lease_until_ms, std::string owner,
                        Callback<std::vector<std::string>> done) = 0;

  // Sets next_cron_time = now_ms for one unfinished transaction. kNotFound for an unknown gid; a
  // final transaction is left unchanged and reported as OK.
  virtual void ResetNextCronTime(std::string gid, int64_t now_ms, DoneCallback done) = 0;

  // Sets next_cron_time = now_ms for at most `limit` unfinished transactions whose next_cron_time
  // is later than now_ms + timeout_ms; returns how many were changed.
  virtual void ResetCronTime(int64_t now_ms, int64_t timeout_ms, int limit,
                             Callback<int64_t> done) = 0;

  // Key-value table (UNIQUE (cat, k)). Reads run like Load/List, writes like Update (durable,
  // atomic, group-committed).
  // The row (cat, k), or nullopt.
  virtual void KvGet(std::string cat, std::string k, Callback<std::optional<KvRow>> done) = 0;
  // Every row matching cat and k in ascending id order; an empty argument does not filter.
  virtual void KvQuery(std::string cat, std::string k, Callback<std::vector<KvRow>> done) = 0;
  // Rows of `cat` by descending id with ids < before_id (0 = from the newest); limit 1..1000.
  virtual void KvScan(std::string cat, int64_t before_id, int limit, Callback<KvPage> done) = 0;
  // expected_version == 0: inserts (cat, k) with version 1 (kConflict if it exists); otherwise
  // compare-and-set: sets v and version = expected_version + 1 only if the stored version equals
  // expected_version (kConflict if it differs or the row is absent). update_time = now_ms (and
  // create_time on insert).
  virtual void KvPut(std::string cat, std::string k, std::string v, int64_t expected_version,
                     int64_t now_ms, DoneCallback done) = 0;
  // Deletes (cat, k); kNotFound if absent.
  virtual void KvDelete(std::string cat, std::string k, DoneCallback done) = 0;

  // Business keys (core/business_keys.h, docs/saga.md "Business keys"): the durable semantic lock.
  // Create writes one queued (not held) key row per entry of TransSnapshot::business_keys in its
  // atomic write; an Update that makes the transaction final deletes its key rows in the same
  // write. Rows are ordered by an ascending id (arrival order).
  //
  // AcquireKeys, one atomic write: if `gid` has key rows that are not held, and no other
  // transaction holds one of its keys nor has a row ahead of it on one (FIFO per key), and
  // `acquire`, marks all of them held (all keys or none). Answers the state: held (also when gid
  // has no key rows), or the gid ahead of it and the key. When the answer is "not held" and
  // wait_until_ms > 0, the same write sets the unfinished transaction's next_cron_time to
  // wait_until_ms and lease_until to 0: it sleeps until woken (WakeKeyWaiters) or then.
  // PostgreSQL locks the keys (in sorted order, try-locks) for a decision (acquire, or park), so
  // several coordinators agree; a key whose lock is taken by a decision in flight elsewhere makes
  // the answer `contended` with nothing acquired nor parked (the caller asks again). A plain read
  // (acquire false, wait_until_ms 0) takes no lock. Memory and SQLite never answer contended.
  virtual void AcquireKeys(std::string gid, bool acquire, int64_t wait_until_ms,
                           Callback<core::KeyState> done) = 0;
  // One atomic write: every waiting transaction (oldest first, at most `limit`) that can acquire
  // its keys now gets them (as AcquireKeys) and, if unfinished, next_cron_time = now_ms (recovery
  // claims it). Returns their gids.
  virtual void WakeKeyWaiters(int64_t now_ms, int limit,
                              Callback<std::vector<std::string>> done) = 0;
  // Whether any transaction waits for its keys (has a key row that is not held), as of the
  // answer. The engine asks after a wake-up found none to run: with none waiting it stops waking
  // after every release (docs/saga.md "Business keys"). Default: true (not known).
  virtual void HasKeyWaiters(Callback<bool> done);

  // Counters; cheap, thread-safe.
  virtual StoreStats Stats() const = 0;

  // Batch-size and commit-latency histograms, or nullptr (a store without a batching writer).
  virtual const StoreHistograms* Histograms() const { return nullptr; }

  // The call history of a transaction's branch rows (TransUpdate::BranchUpdate::new_attempts; the
  // newest core::kMaxAttemptLog per row), ordered by branch_id, op, seq. Empty for an unknown gid.
  // A read, like Load. Default: kUnimplemented.
  virtual void LoadAttempts(std::string gid, Callback<std::vector<AttemptRow>> done);

  // --- Retention and monitoring (issue 13; docs/operations.md "Retention"). The defaults answer
  // kUnimplemented, for stores that do not offer them.

  // How many transactions recovery could claim now (ClaimDue's condition at now_ms), counting at
  // most `cap` (1..kMaxCountCap) so that the read is bounded. A read, like List.
  virtual void CountDue(int64_t now_ms, int64_t cap, Callback<int64_t> done);

  // Deletes at most `limit` (1..kMaxRetentionBatch) finished transactions (succeed or failed)
  // whose update_time is before `before_ms`, with their branch rows and call history, in one
  // atomic write; never
  // an unfinished one, and never the transaction with the highest id (SQLite takes max(id) + 1 for
  // the next id; keeping the newest keeps ids from being reused). Safe to run on several
  // coordinators at once (a row deleted by another is simply not counted).
  virtual void DeleteFinished(int64_t before_ms, int limit, Callback<RetentionCount> done);

  // Deletes at most `limit` (1..kMaxRetentionBatch) key-value rows whose category is `cat` or
  // starts with `cat` + ":" and whose update_time is before `before_ms`; returns how many.
  virtual void DeleteKvBefore(std::string cat, int64_t before_ms, int limit,
                              Callback<int64_t> done);

  // Stops accepting work, finishes what is queued, joins the store's threads. Idempotent.
  virtual void Close() = 0;
};

// Limits on one request (kInvalidArgument outside them).
inline constexpr int kMaxListLimit = 1000;    // ListQuery::limit is 1..kMaxListLimit
inline constexpr int kMaxClaimLimit = 10000;  // ClaimDue / ResetCronTime limit is 1..kMaxClaimLimit
inline constexpr int kMaxRetentionBatch = 5000;   // DeleteFinished / DeleteKvBefore limit
inline constexpr int64_t kMaxCountCap = 1000000;  // CountDue cap

struct SqliteOptions {
  std::string path;                   // database file; its directory is created if missing
  int max_batch_ops = 512;            // write operations per commit (group commit)
  size_t max_queued_writes = 100000;  // beyond this, writes fail at once with kUnavailable
  int reader_threads = 2;             // connections serving Load/List
  int busy_timeout_ms = 5000;
  size_t max_queued_reads = 10000;  // beyond this, Load/List fail at once with kUnavailable
};

// Opens (creating and migrating the schema if needed) a SQLite store. Fails if the file cannot be
// opened, is not a dtx database, or has a newer schema version than this binary knows.
Result<std::unique_ptr<Store>> OpenSqliteStore(const SqliteOptions& options);

struct PostgresOptions {
  // libpq connection URI or key=value string: postgres://user:pass@host:port/db?sslmode=require.
  std::string url;
  // Every table lives in this schema (created if missing): several dtx clusters, or tests, can
  // share one database. Lower-case letters, digits and '_', starting with a letter or '_', <= 63.
  std::string schema = "dtx";
  int writer_connections = 2;  // writer threads, one connection each (1..64)
  int reader_connections = 2;  // reader threads serving Load/List, one connection each (1..64)
  int max_batch_ops = 512;     // write operations per COMMIT (group commit)
  size_t max_queued_writes = 100000;  // beyond this, writes fail at once with kUnavailable
  size_t max_queued_reads = 10000;    // beyond this, Load/List fail at once with kUnavailable
  int connect_timeout_ms = 5000;      // one connection attempt (TCP, TLS, authentication, setup)
  // Server side, per statement (a lock wait included): exceeded -> that operation gets
  // kUnavailable.
  int statement_timeout_ms = 10000;
  // Client side, per round trip (one batch, one read): a server that does not answer within it is
  // treated as a lost connection (kUnavailable, reconnect). Must exceed statement_timeout_ms.
  int io_timeout_ms = 30000;
};

// Opens a PostgreSQL store: connects every writer and reader connection, creates or migrates the
// schema (one transaction under an advisory lock, so coordinators starting together do not race).
// Fails with kInvalidArgument for bad options or a schema that is newer than this binary or not a
// dtx schema, kUnavailable if the server cannot be reached.
Result<std::unique_ptr<Store>> OpenPostgresStore(const PostgresOptions& options);

// An in-memory store for tests and simulation. Callbacks run inline. Same semantics as SQLite
// except durability.
std::unique_ptr<Store> NewMemoryStore();

// Parses --store: "sqlite:PATH", "memory:", or a PostgreSQL URL "postgres://user:pass@host:port/db"
// (also "postgresql://"); the URL may carry "schema=NAME" among its query parameters (default dtx),
// which dtx removes before handing the URL to libpq.
Result<std::unique_ptr<Store>> OpenStore(const std::string& spec);

}  // namespace dtx::store
