/// @file
/// dtx::Outbox: the local message table (seed 000 §1.1) in the application's own database. Write
/// writes one event row in the caller's open transaction, so the event commits or rolls back
/// together with the business data; `dtx relay` (docs/outbox.md) later publishes committed rows to
/// a broker and marks them published. Rows written by other languages with plain SQL are equally
/// valid: the schema is documented in docs/outbox.md and created by EnsureTable or `dtx relay
/// --init`.
///
/// @code
/// #include <sqlite3.h>
///   sqlite3* db = nullptr;
///   if (sqlite3_open("orders.db", &db) != SQLITE_OK) return;
///   dtx::Outbox outbox;                                   // table "dtx_outbox"
///   if (!outbox.EnsureTable(db).ok()) return;             // once (or `dtx relay --init`)
///   const std::string order_id = "42";
///   sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
///   sqlite3_exec(db, "insert into orders(id) values ('42')", nullptr, nullptr, nullptr);
///   dtx::OutboxMessage event;
///   event.topic = "orders";                               // the Kafka topic, stream, subject...
///   event.key = order_id;                                 // per-key order
///   event.payload = R"({"event":"ORDER_CREATED","order":"42"})";
///   event.headers = {{"correlation_id", order_id}};
///   auto id = outbox.Write(db, event);                    // in the open transaction
///   sqlite3_exec(db, id.ok() ? "COMMIT" : "ROLLBACK", nullptr, nullptr, nullptr);
/// @endcode
///
/// Linking: the sqlite3 calls are in libdtx (dtx::dtx); the PGconn calls (EnsureTable, Write on a
/// PGconn) are in libdtx_pg (dtx::pg), so a program that uses only SQLite needs no libpq.
///
/// Thread-safety: an Outbox is an immutable value (table name, limits) and may be shared; each
/// connection is used by one thread at a time, as SQLite and libpq require.
///
/// How it fails: every operation returns a Status, never throws. Values over their limits or an
/// invalid table name -> kInvalidArgument; a connection outside a transaction -> kInvalidArgument
/// (an outbox row written in autocommit would commit without the business data); a database error
/// -> kUnavailable / kTimeout (retryable), kIoError or kInternal. Write never ends the caller's
/// transaction, but a failed PostgreSQL statement aborts it (roll back).
#pragma once

#include <cstddef>
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

/// Limits of one outbox row (bytes), checked by Write and again by the relay.
/// @{
inline constexpr size_t kOutboxTopicMaxBytes = 255;
inline constexpr size_t kOutboxKeyMaxBytes = 255;
inline constexpr size_t kOutboxMessageIdMaxBytes = 128;
inline constexpr size_t kOutboxPayloadMaxBytes = 1 << 20;
inline constexpr size_t kOutboxHeadersMax = 64;
inline constexpr size_t kOutboxHeaderMaxBytes = 4096;  ///< name + value
/// @}

/// Row states (the `state` column): the published flag and the parked state of the relay.
enum class OutboxState : int { kPending = 0, kPublished = 1, kParked = 2 };

/// The SQL dialect of SchemaSql / ValidTable.
enum class OutboxDialect { kSqlite, kPostgres };

/// One event to write.
struct DTX_EXPORT OutboxMessage {
  /// Kafka topic / AMQP exchange (routing key = topic) / Redis stream / NATS subject. Printable
  /// ASCII without spaces, 1..255 bytes.
  std::string topic{};
  /// Ordering key (e.g. the order id): the relay publishes one key's rows in id order, each after
  /// the previous one was acknowledged. Empty = no ordering needs (still published in id order per
  /// relay).
  std::string key{};
  /// The event body, UTF-8 text (binary data: encode it, e.g. base64). At most 1 MiB.
  std::string payload{};
  /// Headers carried to the consumer (e.g. correlation_id). Names: [A-Za-z0-9_.-]+.
  std::vector<std::pair<std::string, std::string>> headers{};
  /// The id consumers dedup on. Empty: Write generates 32 random hex digits.
  std::string message_id{};
};

/// Settings of an Outbox.
struct DTX_EXPORT OutboxOptions {
  /// The table: an unquoted identifier; on PostgreSQL also `schema.table`. At most 55 bytes a part
  /// (index and trigger names append suffixes within PostgreSQL's 63).
  std::string table = "dtx_outbox";
};

/// Checks a message against the limits above; kInvalidArgument names the first offending field.
DTX_EXPORT Status ValidateOutboxMessage(const OutboxMessage& m);
/// A random message id: 32 lowercase hex digits (128 bits from a per-thread generator seeded by
/// std::random_device).
DTX_EXPORT std::string NewOutboxMessageId();
/// Headers as the JSON object stored in the `headers` column ({"name":"value",...}), and back.
/// @{
DTX_EXPORT std::string EncodeOutboxHeaders(
    const std::vector<std::pair<std::string, std::string>>& headers);
DTX_EXPORT Result<std::vector<std::pair<std::string, std::string>>> DecodeOutboxHeaders(
    std::string_view json);
/// @}
/// The PostgreSQL channel the insert trigger notifies (and `dtx relay` listens on): dtx_outbox_ +
/// the table name with '.' replaced by '_'. The trigger notifies only while a relay waits for
/// rows, which it shows by holding the advisory lock `pg_advisory_lock(hashtextextended(channel,
/// 0))`; a writer that does not notify holds that lock shared until its transaction ends.
DTX_EXPORT std::string OutboxNotifyChannel(std::string_view table);

/// Writes outbox rows; see the file description.
class DTX_EXPORT Outbox {
 public:
  /// Nothing is checked here: an invalid table name makes every call fail with kInvalidArgument.
  explicit Outbox(OutboxOptions options = {});

  /// The table's name.
  const std::string& table() const { return options_.table; }
  /// kInvalidArgument when the table name is not valid for the dialect.
  Status ValidTable(OutboxDialect dialect) const;

  /// The DDL of docs/outbox.md for this table: table, pending and published indexes and, on
  /// PostgreSQL, the statement-level insert trigger that NOTIFYs the relay. Idempotent ("if not
  /// exists" / "or replace").
  Result<std::string> SchemaSql(OutboxDialect dialect) const;
  /// Runs SchemaSql in a transaction of its own (the connection must be outside one). Two first
  /// calls racing on PostgreSQL may fail with a unique violation: retry.
  /// @{
  Status EnsureTable(sqlite3* db) const;
  Status EnsureTable(PGconn* conn) const;
  /// @}

  /// Inserts the message as a pending row in the caller's open transaction; returns its message id.
  /// @{
  Result<std::string> Write(sqlite3* db, const OutboxMessage& m) const;
  Result<std::string> Write(PGconn* conn, const OutboxMessage& m) const;
  /// @}

 private:
  OutboxOptions options_;
};

}  // namespace dtx
