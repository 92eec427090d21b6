/// @file
/// dtx::Inbox: the consuming side of the local message table (seed 002's message_applied). It
/// consumes messages from a broker (the URL's scheme picks it: redis:// Redis Streams, nats://
/// NATS JetStream, kafka:// Kafka, amqp:// RabbitMQ; docs/outbox.md) and, for each message, in ONE
/// local transaction of the consumer's own database (SQLite or PostgreSQL), inserts (consumer,
/// message_id) into the `message_applied` table and runs the handler. A message whose row exists
/// already is a duplicate and is skipped; the broker ack comes after the commit. So every
/// message's effect is applied exactly once even though brokers and `dtx relay` deliver at least
/// once — within the retention of the applied rows (docs/outbox.md).
///
/// @code
/// #include <sqlite3.h>
/// #include <atomic>
///   sqlite3* db = nullptr;                                  // the service's own database
///   if (sqlite3_open("payment.db", &db) != SQLITE_OK) return;
///   dtx::InboxOptions options;
///   options.broker = "redis://127.0.0.1:6379";
///   options.consumer = "payment";                           // dedup name and consumer group
///   options.topics = {"orders"};
///   auto inbox = dtx::Inbox::Open(db, options, [&](const dtx::InboxMessage& m) -> dtx::Status {
///     // Runs inside the inbox's open transaction on `db`: write through `db` (may Outbox::Write).
///     std::string sql = "insert into bills(order_id) values ('" + m.key + "')";  // (bind it)
///     if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
///       return dtx::Status::Unavailable(sqlite3_errmsg(db));  // rolled back, retried
///     }
///     return dtx::Status::Ok();
///   });
///   if (!inbox.ok() || !inbox.value()->EnsureTables().ok()) return;
///   std::atomic<bool> stop{false};                          // set it to end Run
///   inbox.value()->Run(stop);                               // or Poll in your own loop
///   inbox.value().reset();
///   sqlite3_close(db);
/// @endcode
///
/// Linking: libdtx_inbox (CMake dtx::inbox from find_package(dtx COMPONENTS inbox), pkg-config
/// dtx-inbox); it alone links the broker client libraries and libpq.
///
/// Handler failures: kUnavailable / kTimeout are transient (e.g. the database is busy) and retried
/// with backoff without limit; any other error counts an attempt, is retried with backoff and after
/// `max_attempts` the message is dead-lettered: a row in the dead-letter table with its payload
/// and the last error (visible with DeadLetters, re-applied with RetryDeadLetters), and the inbox
/// goes on. A failing message holds up the messages behind it while it is retried (per-key order
/// is kept), at most the sum of the backoff steps.
///
/// Thread-safety: an Inbox uses its connection and its broker consumer from the thread that calls
/// Poll/Run/...; one thread at a time. The handler runs on that thread. The connection must not be
/// used by anything else while the inbox runs (open one per inbox).
///
/// How it fails: Status values, never exceptions. Open: kInvalidArgument for bad options or an
/// unknown broker scheme. Poll: kUnavailable / kTimeout when the broker or the database is
/// unreachable or busy (the delivery in hand is kept and applied by the next Poll), kIoError /
/// kInternal for other database errors. Run logs these and retries with backoff until `stop`.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dtx/export.h"
#include "dtx/status.h"

/// Same declarations as in sqlite3.h and libpq-fe.h.
/// @{
typedef struct sqlite3 sqlite3;
typedef struct pg_conn PGconn;
/// @}

namespace dtx {

/// One message as the handler sees it.
struct DTX_EXPORT InboxMessage {
  std::string topic;       ///< stream / subject / Kafka topic / AMQP routing key
  std::string key;         ///< the outbox row's ordering key ("" when it had none)
  std::string message_id;  ///< what message_applied deduplicates on
  std::string payload;     ///< the bytes as written to the outbox
  std::vector<std::pair<std::string, std::string>> headers;  ///< the outbox row's headers
  int attempt = 1;  ///< 1 on the first try of this process, 2 on the first retry, ...

  /// The value of header `name`, or "" (e.g. Header("correlation_id")).
  std::string Header(std::string_view name) const;
};

/// Applies one message inside the inbox's open transaction; any error rolls it back.
using InboxHandler = std::function<Status(const InboxMessage&)>;

/// What Inbox::Open needs; the defaults suit most consumers.
struct InboxOptions {
  /// redis://host:port (Redis Streams), nats://, kafka://host:port[,host:port] or amqp://...
  /// (docs/outbox.md has each broker's settings). Required.
  std::string broker{};
  /// This consumer's name: the `consumer` column of message_applied and the broker's consumer
  /// group (a Redis group, a NATS durable, a Kafka group.id). [A-Za-z0-9_.-]+, 1..128 bytes.
  std::string consumer{};
  /// This process's name within the group; a restarted process with the same name gets its own
  /// unacknowledged deliveries back first. Default: `consumer`.
  std::string instance{};
  /// Topics (streams / subjects) to consume, 1..16.
  std::vector<std::string> topics{};
  /// The dedup table and the dead-letter table (unquoted identifiers; PostgreSQL also schema.name).
  /// @{
  std::string applied_table = "message_applied";
  std::string dead_letter_table = "dtx_inbox_dead";
  /// @}
  /// Handler failures (not transient) before a message is dead-lettered, 1..100.
  int max_attempts = 5;
  /// Backoff between tries of one message: retry_base doubling up to retry_max, +-25 % jitter.
  /// With the defaults a message is dead-lettered about 1.5 s after its first failure.
  /// @{
  std::chrono::milliseconds retry_base{100};
  std::chrono::milliseconds retry_max{5'000};
  /// @}
  /// Deliveries per broker fetch, 1..1000.
  size_t batch = 100;
  /// A delivery left unacknowledged this long by a dead instance of the group is taken over.
  std::chrono::milliseconds redeliver_after{30'000};
  /// Run deletes applied rows older than this every minute (0 = keep forever). Must exceed the
  /// longest time a duplicate can still arrive: the broker's redelivery horizon and the longest
  /// outage of `dtx relay` (a row published but not marked is published again when it restarts).
  /// Dead-lettered messages' rows are kept while their dead letters exist.
  std::chrono::seconds retain{7 * 24 * 3600};
};

/// What an Inbox did since it was opened.
struct InboxCounters {
  int64_t applied = 0;        ///< handler committed
  int64_t duplicates = 0;     ///< skipped: already in message_applied
  int64_t failures = 0;       ///< handler errors (each try)
  int64_t dead_lettered = 0;  ///< parked in the dead-letter table
  int64_t ack_failures = 0;   ///< committed but not acknowledged (redelivered, then skipped)
};

/// A message the handler kept refusing, parked in the dead-letter table.
struct DeadLetter {
  InboxMessage message;    ///< the message as it was delivered
  int attempts = 0;        ///< handler failures counted so far
  std::string last_error;  ///< the last failure's message
  int64_t dead_at_ms = 0;  ///< Unix milliseconds
};

/// Consumes a broker's topics into the consumer's database, each message applied exactly once.
class DTX_EXPORT Inbox {
 public:
  /// Opens an inbox on a SQLite connection. The connection stays the caller's (closed by the
  /// caller after the Inbox is destroyed). Connects to the broker lazily (Poll reports it).
  static Result<std::unique_ptr<Inbox>> Open(sqlite3* db, InboxOptions options,
                                             InboxHandler handler);
  /// Opens an inbox on a PostgreSQL connection (outside a transaction), as the SQLite one.
  static Result<std::unique_ptr<Inbox>> Open(PGconn* conn, InboxOptions options,
                                             InboxHandler handler);
  ~Inbox();
  Inbox(const Inbox&) = delete;
  Inbox& operator=(const Inbox&) = delete;

  /// Creates message_applied and the dead-letter table if missing (docs/outbox.md shows the DDL).
  /// The connection must be outside a transaction.
  Status EnsureTables();

  /// Fetches up to `batch` deliveries (waiting at most `wait` when none is ready) and applies them
  /// in order; returns how many were finished (applied, duplicate or dead-lettered). A message
  /// being retried keeps the rest waiting: Poll then sleeps at most `wait` and tries it again.
  Result<size_t> Poll(std::chrono::milliseconds wait);

  /// Polls until `stop` (checked at least every 200 ms); logs and backs off on errors; deletes
  /// applied rows past `retain` every minute. Returns when stopped.
  void Run(const std::atomic<bool>& stop);

  /// Dead letters, oldest first (at most `limit`).
  Result<std::vector<DeadLetter>> DeadLetters(size_t limit = 100);
  /// Runs the handler again on each dead letter (oldest first, at most `limit`), each in one
  /// transaction that also deletes the dead letter; a failure leaves it (attempts + 1, new error).
  /// Returns how many were applied.
  Result<int64_t> RetryDeadLetters(size_t limit = 100);
  /// Deletes up to `batch` applied rows older than `age` (not those of dead letters).
  Result<int64_t> DeleteAppliedOlderThan(std::chrono::seconds age, size_t batch = 1000);

  /// Counts since Open (read on the inbox's thread).
  const InboxCounters& counters() const;

  class Impl;  ///< private: src/sdk/inbox.cc

 private:
  explicit Inbox(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dtx
