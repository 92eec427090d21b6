#include "examples/order_saga/services.h"

#include <boost/json.hpp>
#include <cstdio>
#include <map>
#include <utility>

namespace order_saga {
namespace {

namespace json = boost::json;
using dtx::BranchRequest;
using dtx::BranchResult;

// Result of a business change: "" = applied, otherwise the reason of a business failure.
using Applied = Result<std::string>;

const char* const kGuardSchema =
    "CREATE TABLE IF NOT EXISTS applied ("
    "  gid TEXT NOT NULL, op TEXT NOT NULL,"
    "  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),"
    "  PRIMARY KEY (gid, op));";

// Runs `sql` and reports whether it changed a row (for INSERT OR IGNORE).
Result<bool> Changed(Db& db, const std::string& sql, const std::vector<Value>& params) {
  auto r = db.Query(sql, params);
  if (!r.ok()) return r.status();
  return db.Changes() > 0;
}

// --- order -------------------------------------------------------------------------------------

Applied OrderCreate(Db& db, const std::string& gid, const OrderRequest& o) {
  auto r = db.Query(
      "INSERT INTO orders (order_id, user, item, quantity, amount, status) "
      "VALUES (?, ?, ?, ?, ?, 'pending')",
      {gid, o.user, o.item, o.quantity, o.amount});
  if (!r.ok()) return r.status();
  return std::string();
}

Status OrderCancel(Db& db, const std::string& gid, const OrderRequest&) {
  return db.Query("UPDATE orders SET status = 'failed' WHERE order_id = ?", {gid}).status();
}

// --- payment -----------------------------------------------------------------------------------

Applied PaymentCharge(Db& db, const std::string& gid, const OrderRequest& o) {
  if (o.amount <= 0) return std::string("invalid amount");
  auto rows = db.Query("SELECT balance FROM accounts WHERE user = ?", {o.user});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return "unknown account '" + o.user + "'";
  const int64_t balance = AsInt((*rows)[0][0]);
  if (balance < o.amount) {
    return "insufficient balance: " + o.user + " has " + std::to_string(balance) +
           ", order costs " + std::to_string(o.amount);
  }
  if (auto r =
          db.Query("UPDATE accounts SET balance = balance - ? WHERE user = ?", {o.amount, o.user});
      !r.ok()) {
    return r.status();
  }
  auto r = db.Query("INSERT INTO payments (gid, user, amount, status) VALUES (?, ?, ?, 'charged')",
                    {gid, o.user, o.amount});
  if (!r.ok()) return r.status();
  return std::string();
}

Status PaymentRefund(Db& db, const std::string& gid, const OrderRequest&) {
  // Refund what was charged (from the payments row, not from the payload).
  auto rows =
      db.Query("SELECT user, amount FROM payments WHERE gid = ? AND status = 'charged'", {gid});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return Status::Ok();
  const std::string user = AsText((*rows)[0][0]);
  const int64_t amount = AsInt((*rows)[0][1]);
  if (auto r = db.Query("UPDATE accounts SET balance = balance + ? WHERE user = ?", {amount, user});
      !r.ok()) {
    return r.status();
  }
  return db.Query("UPDATE payments SET status = 'refunded' WHERE gid = ?", {gid}).status();
}

// --- inventory ---------------------------------------------------------------------------------

Applied InventoryReserve(Db& db, const std::string& gid, const OrderRequest& o) {
  if (o.quantity <= 0) return std::string("invalid quantity");
  auto rows = db.Query("SELECT available FROM stock WHERE item = ?", {o.item});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return "unknown item '" + o.item + "'";
  const int64_t available = AsInt((*rows)[0][0]);
  if (available < o.quantity) {
    return "out of stock: " + std::to_string(available) + " " + o.item +
           " available, order wants " + std::to_string(o.quantity);
  }
  if (auto r = db.Query("UPDATE stock SET available = available - ? WHERE item = ?",
                        {o.quantity, o.item});
      !r.ok()) {
    return r.status();
  }
  auto r = db.Query(
      "INSERT INTO reservations (gid, item, quantity, status) VALUES (?, ?, ?, 'reserved')",
      {gid, o.item, o.quantity});
  if (!r.ok()) return r.status();
  return std::string();
}

Status InventoryRelease(Db& db, const std::string& gid, const OrderRequest&) {
  auto rows = db.Query(
      "SELECT item, quantity FROM reservations WHERE gid = ? AND status = 'reserved'", {gid});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return Status::Ok();
  const std::string item = AsText((*rows)[0][0]);
  const int64_t quantity = AsInt((*rows)[0][1]);
  if (auto r =
          db.Query("UPDATE stock SET available = available + ? WHERE item = ?", {quantity, item});
      !r.ok()) {
    return r.status();
  }
  return db.Query("UPDATE reservations SET status = 'released' WHERE gid = ?", {gid}).status();
}

// --- shipping ----------------------------------------------------------------------------------

Applied ShippingShip(Db& db, const std::string& gid, const OrderRequest& o) {
  if (o.address.empty()) return std::string("no shipping address");
  auto r = db.Query(
      "INSERT INTO shipments (gid, address, item, quantity, status) VALUES (?, ?, ?, ?, 'created')",
      {gid, o.address, o.item, o.quantity});
  if (!r.ok()) return r.status();
  return std::string();
}

Status ShippingCancel(Db& db, const std::string& gid, const OrderRequest&) {
  return db.Query("UPDATE shipments SET status = 'cancelled' WHERE gid = ?", {gid}).status();
}

struct Table {
  std::string name;
  std::string select;
  std::vector<std::string> columns;
};

}  // namespace

struct Service::Business {
  std::string schema;  // tables and initial data; idempotent
  Endpoints endpoints;
  Applied (*act)(Db&, const std::string& gid, const OrderRequest&);
  Status (*undo)(Db&, const std::string& gid, const OrderRequest&);
  std::vector<Table> tables;  // for /state
};

namespace {

const std::map<std::string, Service::Business>& Businesses() {
  static const auto* businesses = new std::map<std::string, Service::Business>{
      {"order",
       {"CREATE TABLE IF NOT EXISTS orders (order_id TEXT PRIMARY KEY, user TEXT NOT NULL,"
        " item TEXT NOT NULL, quantity INTEGER NOT NULL, amount INTEGER NOT NULL,"
        " status TEXT NOT NULL);",
        {"/order/create", "/order/cancel"},
        OrderCreate,
        OrderCancel,
        {{"orders",
          "SELECT order_id, user, item, quantity, amount, status FROM orders ORDER BY rowid",
          {"order_id", "user", "item", "quantity", "amount", "status"}}}}},
      {"payment",
       {"CREATE TABLE IF NOT EXISTS accounts (user TEXT PRIMARY KEY, balance INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS payments (gid TEXT PRIMARY KEY, user TEXT NOT NULL,"
        " amount INTEGER NOT NULL, status TEXT NOT NULL);"
        "INSERT OR IGNORE INTO accounts (user, balance) VALUES ('alice', 100000), ('bob', 5000);",
        {"/payment/charge", "/payment/refund"},
        PaymentCharge,
        PaymentRefund,
        {{"accounts", "SELECT user, balance FROM accounts ORDER BY user", {"user", "balance"}},
         {"payments",
          "SELECT gid, user, amount, status FROM payments ORDER BY rowid",
          {"gid", "user", "amount", "status"}}}}},
      {"inventory",
       {"CREATE TABLE IF NOT EXISTS stock (item TEXT PRIMARY KEY, available INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS reservations (gid TEXT PRIMARY KEY, item TEXT NOT NULL,"
        " quantity INTEGER NOT NULL, status TEXT NOT NULL);"
        "INSERT OR IGNORE INTO stock (item, available) VALUES ('widget', 10), ('gadget', 3);",
        {"/inventory/reserve", "/inventory/release"},
        InventoryReserve,
        InventoryRelease,
        {{"stock", "SELECT item, available FROM stock ORDER BY item", {"item", "available"}},
         {"reservations",
          "SELECT gid, item, quantity, status FROM reservations ORDER BY rowid",
          {"gid", "item", "quantity", "status"}}}}},
      {"shipping",
       {"CREATE TABLE IF NOT EXISTS shipments (gid TEXT PRIMARY KEY, address TEXT NOT NULL,"
        " item TEXT NOT NULL, quantity INTEGER NOT NULL, status TEXT NOT NULL);",
        {"/shipping/ship", "/shipping/cancel"},
        ShippingShip,
        ShippingCancel,
        {{"shipments",
          "SELECT gid, address, item, quantity, status FROM shipments ORDER BY rowid",
          {"gid", "address", "item", "quantity", "status"}}}}},
  };
  return *businesses;
}

// One line per call on stderr, so that the demo shows what the coordinator did.
void Log(const std::string& service, const BranchRequest& r, const std::string& what) {
  std::fprintf(stderr, "[%s] %s gid=%s branch=%s: %s\n", service.c_str(), r.op.c_str(),
               r.gid.c_str(), r.branch_id.c_str(), what.c_str());
}

// Checks the identity the coordinator sends in the query (PROTOCOL.md §3.2).
std::string CheckIdentity(const BranchRequest& r, std::string_view expected_op) {
  if (r.gid.empty()) return "missing gid query parameter (not a call from dtx?)";
  if (r.op != expected_op) {
    return "op '" + r.op + "' on an endpoint for op '" + std::string(expected_op) + "'";
  }
  return {};
}

BranchResult BadRequest(const std::string& message) {
  return BranchResult::Custom(400, json::serialize(json::object{{"message", message}}));
}

}  // namespace

std::string EncodeOrder(const OrderRequest& o) {
  return json::serialize(json::object{{"user", o.user},
                                      {"item", o.item},
                                      {"quantity", o.quantity},
                                      {"amount", o.amount},
                                      {"address", o.address}});
}

Result<OrderRequest> DecodeOrder(const std::string& json_text) {
  json::error_code ec;
  json::value v = json::parse(json_text, ec);
  if (ec || !v.is_object()) return Status::InvalidArgument("payload is not a JSON object");
  const json::object& o = v.as_object();
  OrderRequest order;
  auto text = [&](const char* key, std::string& out) {
    const json::value* f = o.if_contains(key);
    if (f == nullptr || !f->is_string()) return false;
    out = std::string(f->as_string());
    return true;
  };
  auto integer = [&](const char* key, int64_t& out) {
    const json::value* f = o.if_contains(key);
    if (f == nullptr || !f->is_int64()) return false;
    out = f->as_int64();
    return true;
  };
  if (!text("user", order.user) || !text("item", order.item) || !text("address", order.address) ||
      !integer("quantity", order.quantity) || !integer("amount", order.amount)) {
    return Status::InvalidArgument(
        "payload needs user, item, address (strings), quantity and amount (integers)");
  }
  return order;
}

const std::vector<std::string>& ServiceNames() {
  static const std::vector<std::string> names = {"order", "payment", "inventory", "shipping"};
  return names;
}

Endpoints EndpointsOf(const std::string& service) {
  auto it = Businesses().find(service);
  return it == Businesses().end() ? Endpoints{} : it->second.endpoints;
}

Result<std::unique_ptr<Service>> Service::Open(const std::string& name,
                                               const std::string& db_path) {
  auto it = Businesses().find(name);
  if (it == Businesses().end()) return Status::InvalidArgument("unknown service '" + name + "'");
  auto db = Db::Open(db_path);
  if (!db.ok()) return db.status();
  {
    Transaction tx(**db);
    if (!tx.begin_status().ok()) return tx.begin_status();
    if (Status s = (*db)->Exec(kGuardSchema + it->second.schema); !s.ok()) return s;
    if (Status s = tx.Commit(); !s.ok()) return s;
  }
  return std::unique_ptr<Service>(new Service(name, std::move(*db), &it->second));
}

Service::Service(std::string name, std::unique_ptr<Db> db, const Business* business)
    : name_(std::move(name)), db_(std::move(db)), business_(business) {}

Service::~Service() = default;

void Service::Register(dtx::ParticipantServer& server) {
  // "*": dtx calls with GET when a step's payload is empty (PROTOCOL.md §3.2).
  server.Handle("*", business_->endpoints.action,
                [this](const BranchRequest& r) { return Action(r); });
  server.Handle("*", business_->endpoints.compensate,
                [this](const BranchRequest& r) { return Compensate(r); });
  server.Handle("GET", "/state", [this](const BranchRequest&) {
    auto state = StateJson();
    if (!state.ok()) return BranchResult::Error(state.status().ToString());
    return BranchResult::Custom(200, std::move(*state));
  });
}

BranchResult Service::Action(const BranchRequest& r) {
  if (std::string bad = CheckIdentity(r, "action"); !bad.empty()) return BadRequest(bad);
  auto order = DecodeOrder(r.body);
  // A payload that does not parse will never parse: a business failure, so the saga rolls back.
  if (!order.ok()) return BranchResult::Failure(order.status().message());

  std::lock_guard lock(mu_);
  Transaction tx(*db_);
  if (!tx.begin_status().ok()) return BranchResult::Error(tx.begin_status().ToString());
  auto inserted =
      Changed(*db_, "INSERT OR IGNORE INTO applied (gid, op) VALUES (?, 'action')", {r.gid});
  if (!inserted.ok()) return BranchResult::Error(inserted.status().ToString());
  if (!*inserted) {
    // Already applied (a retry), or the compensation ran first and blocked it: nothing to do.
    Log(name_, r, "SUCCESS (already applied or compensated: nothing done)");
    return BranchResult::Success();
  }
  Applied applied = business_->act(*db_, r.gid, *order);
  if (!applied.ok()) return BranchResult::Error(applied.status().ToString());
  if (!applied->empty()) {
    // Business failure: the transaction (including the guard row) is rolled back by ~Transaction.
    Log(name_, r, "FAILURE (" + *applied + ")");
    return BranchResult::Failure(*applied);
  }
  if (Status s = tx.Commit(); !s.ok()) return BranchResult::Error(s.ToString());
  Log(name_, r, "SUCCESS");
  return BranchResult::Success();
}

BranchResult Service::Compensate(const BranchRequest& r) {
  if (std::string bad = CheckIdentity(r, "compensate"); !bad.empty()) return BadRequest(bad);
  // The payload is not needed to undo (each service undoes what it recorded under the gid), so a
  // compensation never fails on a bad payload.
  OrderRequest unused;
  std::lock_guard lock(mu_);
  Transaction tx(*db_);
  if (!tx.begin_status().ok()) return BranchResult::Error(tx.begin_status().ToString());
  auto first =
      Changed(*db_, "INSERT OR IGNORE INTO applied (gid, op) VALUES (?, 'compensate')", {r.gid});
  if (!first.ok()) return BranchResult::Error(first.status().ToString());
  if (!*first) {
    Log(name_, r, "SUCCESS (a retry: already compensated)");
    return BranchResult::Success();
  }
  auto action_missing =
      Changed(*db_, "INSERT OR IGNORE INTO applied (gid, op) VALUES (?, 'action')", {r.gid});
  if (!action_missing.ok()) return BranchResult::Error(action_missing.status().ToString());
  if (!*action_missing) {
    // The action took effect: undo it.
    if (Status s = business_->undo(*db_, r.gid, unused); !s.ok()) {
      return BranchResult::Error(s.ToString());
    }
  }
  // Else: a null compensation (the action failed or never arrived); the row just inserted keeps a
  // late action from taking effect.
  if (Status s = tx.Commit(); !s.ok()) return BranchResult::Error(s.ToString());
  Log(name_, r,
      *action_missing ? "SUCCESS (null compensation: the action had not taken effect)"
                      : "SUCCESS (undone)");
  return BranchResult::Success();
}

Result<std::string> Service::StateJson() {
  std::lock_guard lock(mu_);
  json::object state;
  state["service"] = name_;
  for (const Table& t : business_->tables) {
    auto rows = db_->Query(t.select);
    if (!rows.ok()) return rows.status();
    json::array out;
    for (const Row& row : *rows) {
      json::object o;
      for (size_t c = 0; c < row.size() && c < t.columns.size(); ++c) {
        if (const auto* i = std::get_if<int64_t>(&row[c])) {
          o[t.columns[c]] = *i;
        } else if (const auto* s = std::get_if<std::string>(&row[c])) {
          o[t.columns[c]] = *s;
        } else {
          o[t.columns[c]] = nullptr;
        }
      }
      out.push_back(std::move(o));
    }
    state[t.name] = std::move(out);
  }
  return json::serialize(state);
}

}  // namespace order_saga
