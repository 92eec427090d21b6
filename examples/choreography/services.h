// The four services of the choreography example (seed 000 §2.1): order, payment, inventory and
// shipping, each with its own SQLite database and no coordinator. A service reacts to the events
// it listens to in one local transaction (dtx::Inbox) and emits its own events through its outbox
// (dtx::Outbox) in that same transaction; `dtx relay` moves them to the broker.
//
//   order      saves the order `pending`, emits ORDER_CREATED          (topic order-events)
//   payment    ORDER_CREATED -> bills, emits BILLED                    (topic payment-events)
//   inventory  BILLED -> reserves, emits ORDER_PREPARED, or PRODUCT_OUT_OF_STOCK
//                                                                      (topic inventory-events)
//   shipping   ORDER_PREPARED -> delivers, emits ORDER_DELIVERED       (topic shipping-events)
//   order      ORDER_DELIVERED -> concluded; PRODUCT_OUT_OF_STOCK -> failed
//   payment    PRODUCT_OUT_OF_STOCK -> refunds
//
// Every step also appends a line to the service's `timeline` table (same transaction), so the
// flow of one order can be printed across the four databases by correlation id (= order id).
// Thread-safety: none (one connection per service, one thread). Failures are Status values.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <vector>

#include "dtx/inbox.h"

namespace choreography {

inline const std::vector<std::string> kServices = {"order", "payment", "inventory", "shipping"};

// The topics `service` listens to; empty for an unknown service.
std::vector<std::string> TopicsOf(const std::string& service);

// Opens a service database (WAL, busy timeout) or fails with the SQLite error.
dtx::Result<sqlite3*> OpenDb(const std::string& path);
// Creates the service's tables, its outbox and its inbox tables; inventory gets `stock` items
// ("widget=5") when they are not there yet.
dtx::Status SetUp(sqlite3* db, const std::string& service, const std::vector<std::string>& stock);
// Applies one event for `service` inside the inbox's open transaction on `db`.
dtx::Status Handle(sqlite3* db, const std::string& service, const dtx::InboxMessage& m);
// The order service's local transaction: the order row (`pending`) + ORDER_CREATED.
dtx::Status PlaceOrder(sqlite3* db, const std::string& order_id, const std::string& item,
                       int64_t qty, int64_t amount);

// One row of every service's `timeline`, merged across databases.
struct TimelineEntry {
  int64_t at_ms = 0;
  std::string correlation_id;
  std::string service;
  std::string what;
};
dtx::Result<std::vector<TimelineEntry>> ReadTimeline(sqlite3* db);

// Query helpers for the demo's checks: the first column of the first row as text ("" if none).
std::string QueryText(sqlite3* db, const std::string& sql);

}  // namespace choreography
