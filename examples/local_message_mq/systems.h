// Seed 000 §1.1 (本地消息表) on a message broker, no coordinator: system A (orders) and system B
// (stock), each its own process with its own SQLite database.
//
//   A  place:   one local transaction: the order row (`placed`) + a message row in A's outbox
//               (dtx::Outbox, topic stock-requests, key = order id). `dtx relay` publishes it.
//   B  request: one local transaction (dtx::Inbox: the message id into message_applied, so a
//               redelivered message is skipped): enough stock -> reserve, reply RESERVED; not
//               enough (a business failure, not a retry) -> record the rejection and reply with a
//               compensation message REJECTED (B's outbox, topic order-replies).
//   A  reply:   one local transaction: RESERVED -> order `confirmed`; REJECTED -> order
//               `cancelled` with the reason (A undoes its side).
//
// Thread-safety: none (one connection per system, one thread). Failures are Status values.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <vector>

#include "dtx/inbox.h"

namespace local_message_mq {

inline constexpr const char* kRequests = "stock-requests";  // A -> B
inline constexpr const char* kReplies = "order-replies";    // B -> A

// "a" or "b": the topic the system consumes; "" for another name.
std::string TopicOf(const std::string& system);

// Opens a system database (WAL, busy timeout) or fails with the SQLite error.
dtx::Result<sqlite3*> OpenDb(const std::string& path);
// Creates the system's tables and its outbox; B gets `stock` items ("widget=5") when missing.
dtx::Status SetUp(sqlite3* db, const std::string& system, const std::vector<std::string>& stock);
// Applies one message for `system` inside the inbox's open transaction on `db`.
dtx::Status Handle(sqlite3* db, const std::string& system, const dtx::InboxMessage& m);
// A's local transaction: the order row and its message row, committed together.
dtx::Status PlaceOrder(sqlite3* db, const std::string& order_id, const std::string& item,
                       int64_t qty);

// The first column of the first row as text ("" if none), for the demo's checks.
std::string QueryText(sqlite3* db, const std::string& sql);

}  // namespace local_message_mq
