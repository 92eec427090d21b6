#include "examples/local_message/services.h"

#include <boost/json.hpp>
#include <cstdio>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

#include "dtx/client.h"
#include "dtx/msg.h"

namespace local_message {
namespace {

namespace json = boost::json;
using msg_examples::SqlConn;

dtx::BranchResult JsonAnswer(int status, const json::object& body) {
  return dtx::BranchResult::Custom(status, json::serialize(body));
}

// A JSON object per row, all values as text.
Result<json::array> Rows(SqlConn& conn, const std::string& sql,
                         const std::vector<std::string>& columns) {
  auto rows = conn.Query(sql);
  if (!rows.ok()) return rows.status();
  json::array out;
  for (const auto& row : *rows) {
    json::object o;
    for (size_t c = 0; c < row.size() && c < columns.size(); ++c) o[columns[c]] = row[c];
    out.push_back(std::move(o));
  }
  return out;
}

dtx::BranchResult StateAnswer(
    SqlConn& conn,
    const std::vector<std::tuple<std::string, std::string, std::vector<std::string>>>& tables) {
  json::object state;
  for (const auto& [name, sql, columns] : tables) {
    auto rows = Rows(conn, sql, columns);
    if (!rows.ok()) return dtx::BranchResult::Error(rows.status().ToString());
    state[name] = std::move(*rows);
  }
  return dtx::BranchResult::Custom(200, json::serialize(state));
}

std::string RandomSuffix() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
  return buf;
}

}  // namespace

std::string EncodeOrder(const Order& o) {
  json::object j{{"order_id", o.order_id}, {"item", o.item}, {"qty", o.qty}};
  if (!o.reply_to.empty()) j["reply_to"] = o.reply_to;
  return json::serialize(j);
}

Result<Order> DecodeOrder(std::string_view text) {
  json::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return Status::InvalidArgument("order: not a JSON object");
  const json::object& o = v.as_object();
  Order order;
  for (auto [key, field] :
       {std::pair{"order_id", &order.order_id}, std::pair{"item", &order.item}}) {
    const json::value* f = o.if_contains(key);
    if (f == nullptr || !f->is_string() || f->as_string().empty()) {
      return Status::InvalidArgument(std::string("order: '") + key +
                                     "' must be a non-empty string");
    }
    *field = std::string(f->as_string());
  }
  const json::value* qty = o.if_contains("qty");
  if (qty == nullptr || !qty->is_int64())
    return Status::InvalidArgument("order: 'qty' must be an integer");
  order.qty = qty->as_int64();
  if (const json::value* r = o.if_contains("reply_to"); r && r->is_string()) {
    order.reply_to = std::string(r->as_string());
  }
  return order;
}

// ---------------------------------------------------------------------------------------------------
// System A: orders

OrderService::OrderService(std::string db_url, Endpoints endpoints)
    : pool_(std::move(db_url), "local_message_a"), endpoints_(std::move(endpoints)) {}

Result<std::unique_ptr<OrderService>> OrderService::Open(const std::string& db_url,
                                                         Endpoints endpoints) {
  if (Status s = msg_examples::CreatePgSchema(db_url, "local_message_a", false); !s.ok()) return s;
  std::unique_ptr<OrderService> service(new OrderService(db_url, std::move(endpoints)));
  auto conn = service->pool_.Acquire();
  if (!conn.ok()) return conn.status();
  Status s = (*conn)->Script(
      "CREATE TABLE IF NOT EXISTS orders("
      " order_id text PRIMARY KEY, item text NOT NULL, qty bigint NOT NULL CHECK (qty > 0),"
      " status text NOT NULL, reason text NOT NULL DEFAULT '');"
      "CREATE TABLE IF NOT EXISTS message_applied(msg_id text PRIMARY KEY)");
  if (!s.ok()) return s;
  if (Status b = (*conn)->EnsureBarrierTable(); !b.ok()) return b;
  return service;
}

void OrderService::SetSelfUrl(std::string url) {
  std::lock_guard lock(mu_);
  self_url_ = std::move(url);
}
std::string OrderService::SelfUrl() {
  std::lock_guard lock(mu_);
  return self_url_;
}

void OrderService::Register(dtx::ParticipantServer& server) {
  // Place an order: the order row and the message to B commit together (seed step 1).
  server.Handle("POST", "/order", [this](const dtx::BranchRequest& r) {
    auto order = DecodeOrder(r.body);
    if (!order.ok()) return JsonAnswer(400, {{"message", order.status().message()}});
    auto conn = pool_.Acquire();
    if (!conn.ok()) return dtx::BranchResult::Error(conn.status().ToString());
    SqlConn& c = **conn;
    dtx::Client client(endpoints_.dtx);
    dtx::Msg msg(client, "");
    Order message = *order;
    message.reply_to = SelfUrl() + "/order/compensate";
    msg.Add(endpoints_.peer_url + "/stock/reserve", EncodeOrder(message));
    if (endpoints_.retry_interval_s > 0) msg.SetRetryInterval(endpoints_.retry_interval_s);
    Status s = msg.DoAndSubmit(SelfUrl() + "/order/queryPrepared", c.barrier(), [&] {
      return c
          .Exec("INSERT INTO orders(order_id, item, qty, status) VALUES(?, ?, ?, 'placed')",
                {order->order_id, order->item, std::to_string(order->qty)})
          .status();  // duplicate id or qty <= 0: a constraint violation -> abort, no message
    });
    std::fprintf(stderr, "order: %s gid=%s local=%s: %s\n", order->order_id.c_str(),
                 msg.gid().c_str(), std::string(dtx::LocalOutcomeName(msg.local_outcome())).c_str(),
                 s.ToString().c_str());
    json::object answer{{"gid", msg.gid()}, {"local", dtx::LocalOutcomeName(msg.local_outcome())}};
    if (msg.local_outcome() == dtx::LocalOutcome::kCommitted) {
      answer["dtm_result"] = "SUCCESS";
      return JsonAnswer(200, answer);
    }
    answer["message"] = s.ToString();
    if (msg.local_outcome() == dtx::LocalOutcome::kRolledBack) {
      answer["dtm_result"] = "FAILURE";
      return JsonAnswer(409, answer);
    }
    return JsonAnswer(500, answer);
  });

  // The compensation message from B: cancel the order, once (message_applied in the same local
  // transaction).
  server.Handle("*", "/order/compensate", [this](const dtx::BranchRequest& r) {
    if (r.gid.empty()) return JsonAnswer(400, {{"message", "not a dtx call"}});
    json::error_code ec;
    json::value v = json::parse(r.body, ec);
    const json::object* o = !ec && v.is_object() ? &v.as_object() : nullptr;
    const json::value* id = o ? o->if_contains("order_id") : nullptr;
    const json::value* reason = o ? o->if_contains("reason") : nullptr;
    if (id == nullptr || !id->is_string() || reason == nullptr || !reason->is_string()) {
      return dtx::BranchResult::Failure("compensation without order_id and reason");
    }
    auto conn = pool_.Acquire();
    if (!conn.ok()) return dtx::BranchResult::Error(conn.status().ToString());
    SqlConn& c = **conn;
    const std::string msg_id = r.gid + "/" + r.branch_id;
    Status s = c.InTransaction([&]() -> Status {
      auto first =
          c.Exec("INSERT INTO message_applied(msg_id) VALUES(?) ON CONFLICT (msg_id) DO NOTHING",
                 {msg_id});
      if (!first.ok() || *first == 0) return first.status();  // error, or applied before
      return c
          .Exec(
              "UPDATE orders SET status = 'cancelled', reason = ? WHERE order_id = ? AND "
              "status = 'placed'",
              {std::string(reason->as_string()), std::string(id->as_string())})
          .status();
    });
    std::fprintf(stderr, "order: compensation %s for %s: %s\n", msg_id.c_str(),
                 std::string(id->as_string()).c_str(), s.ToString().c_str());
    return s.ok() ? dtx::BranchResult::Success() : dtx::BranchResult::Error(s.ToString());
  });

  server.Handle("*", "/order/queryPrepared", [this](const dtx::BranchRequest& r) {
    auto conn = pool_.Acquire();
    if (!conn.ok()) return dtx::BranchResult::Error(conn.status().ToString());
    return dtx::QueryPrepared(r, (*conn)->barrier());
  });

  server.Handle("GET", "/state", [this](const dtx::BranchRequest&) {
    auto conn = pool_.Acquire();
    if (!conn.ok()) return dtx::BranchResult::Error(conn.status().ToString());
    return StateAnswer(
        **conn,
        {{"orders",
          "SELECT order_id, item, qty, status, reason FROM orders ORDER BY order_id",
          {"order_id", "item", "qty", "status", "reason"}},
         {"message_applied", "SELECT msg_id FROM message_applied ORDER BY msg_id", {"msg_id"}}});
  });
}

// ---------------------------------------------------------------------------------------------------
// System B: stock

StockService::StockService(std::string db_url, Endpoints endpoints)
    : pool_(std::move(db_url), "local_message_b"), endpoints_(std::move(endpoints)) {}

Result<std::unique_ptr<StockService>> StockService::Open(const std::string& db_url,
                                                         Endpoints endpoints) {
  if (Status s = msg_examples::CreatePgSchema(db_url, "local_message_b", false); !s.ok()) return s;
  std::unique_ptr<StockService> service(new StockService(db_url, std::move(endpoints)));
  auto conn = service->pool_.Acquire();
  if (!conn.ok()) return conn.status();
  Status s = (*conn)->Script(
      "CREATE TABLE IF NOT EXISTS stock(item text PRIMARY KEY,"
      " available bigint NOT NULL CHECK (available >= 0));"
      "CREATE TABLE IF NOT EXISTS reservations(order_id text PRIMARY KEY, item text NOT NULL,"
      " qty bigint NOT NULL);"
      // B's local message table: every message B took, and what became of it.
      "CREATE TABLE IF NOT EXISTS message_applied(msg_id text PRIMARY KEY, outcome text NOT NULL,"
      " compensation_gid text NOT NULL DEFAULT '');"
      "INSERT INTO stock(item, available) VALUES ('widget', 5), ('gadget', 1)"
      " ON CONFLICT (item) DO NOTHING");
  if (!s.ok()) return s;
  if (Status b = (*conn)->EnsureBarrierTable(); !b.ok()) return b;
  return service;
}

void StockService::SetSelfUrl(std::string url) {
  std::lock_guard lock(mu_);
  self_url_ = std::move(url);
}
std::string StockService::SelfUrl() {
  std::lock_guard lock(mu_);
  return self_url_;
}

dtx::BranchResult StockService::Reserve(const dtx::BranchRequest& r) {
  if (r.gid.empty()) return JsonAnswer(400, {{"message", "not a dtx call"}});
  auto order = DecodeOrder(r.body);
  if (!order.ok() || order->reply_to.empty()) {
    // A message that can never be taken: FAILURE (the coordinator retries it and alerts).
    return dtx::BranchResult::Failure(order.ok() ? "order message without reply_to"
                                                 : order.status().message());
  }
  auto conn = pool_.Acquire();
  if (!conn.ok()) return dtx::BranchResult::Error(conn.status().ToString());
  SqlConn& c = **conn;
  const std::string msg_id = r.gid + "/" + r.branch_id;

  // 1. Take the message and reserve, in one local transaction (seed step 3).
  std::string refusal;
  Status s = c.InTransaction([&]() -> Status {
    auto first = c.Exec(
        "INSERT INTO message_applied(msg_id, outcome) VALUES(?, 'reserved') ON CONFLICT (msg_id) "
        "DO NOTHING",
        {msg_id});
    if (!first.ok() || *first == 0) return first.status();  // error, or taken before: done
    auto left = c.Query("SELECT available FROM stock WHERE item = ?", {order->item});
    if (!left.ok()) return left.status();
    if (left->empty()) {
      refusal = "unknown item " + order->item;
    } else if (std::stoll((*left)[0][0]) < order->qty) {
      refusal = "out of stock: " + (*left)[0][0] + " " + order->item + " left";
    }
    if (!refusal.empty()) return Status::Conflict(refusal);  // rolls the message_applied row back
    auto upd = c.Exec("UPDATE stock SET available = available - ? WHERE item = ?",
                      {std::to_string(order->qty), order->item});
    if (!upd.ok()) return upd.status();
    return c
        .Exec("INSERT INTO reservations(order_id, item, qty) VALUES(?, ?, ?)",
              {order->order_id, order->item, std::to_string(order->qty)})
        .status();
  });
  if (s.ok()) {
    std::fprintf(stderr, "stock: %s order %s: reserved (or taken before)\n", msg_id.c_str(),
                 order->order_id.c_str());
    return dtx::BranchResult::Success();
  }
  if (s.code() != dtx::Code::kConflict || refusal.empty()) {
    return dtx::BranchResult::Error(s.ToString());  // temporary: the coordinator redelivers
  }

  // 2. A business failure: retrying will not help. Record the message as rejected and send a
  // compensation message back to A, committed together (a new two-phase message whose check-back
  // is ours). A fresh gid per attempt: an attempt that died before its commit is rolled back by
  // the check-back, and the redelivered message makes a new one.
  dtx::Client client(endpoints_.dtx);
  dtx::Msg compensation(client, "comp-" + RandomSuffix());
  compensation.Add(order->reply_to, json::serialize(json::object{{"order_id", order->order_id},
                                                                 {"reason", refusal}}));
  if (endpoints_.retry_interval_s > 0) compensation.SetRetryInterval(endpoints_.retry_interval_s);
  Status sent = compensation.DoAndSubmit(SelfUrl() + "/stock/queryPrepared", c.barrier(), [&] {
    // A plain insert: if a concurrent delivery of the same message took it meanwhile, this is a
    // constraint violation and the compensation is aborted.
    return c
        .Exec(
            "INSERT INTO message_applied(msg_id, outcome, compensation_gid) VALUES(?, "
            "'rejected', ?)",
            {msg_id, compensation.gid()})
        .status();
  });
  std::fprintf(stderr, "stock: %s order %s: %s -> compensation %s local=%s: %s\n", msg_id.c_str(),
               order->order_id.c_str(), refusal.c_str(), compensation.gid().c_str(),
               std::string(dtx::LocalOutcomeName(compensation.local_outcome())).c_str(),
               sent.ToString().c_str());
  switch (compensation.local_outcome()) {
    case dtx::LocalOutcome::kCommitted:
      return dtx::BranchResult::Success();  // taken; A hears back through the compensation
    case dtx::LocalOutcome::kRolledBack:
      // Taken by a concurrent delivery (constraint violation): done. Anything else: retry.
      return sent.code() == dtx::Code::kConflict ? dtx::BranchResult::Success()
                                                 : dtx::BranchResult::Error(sent.ToString());
    default:
      return dtx::BranchResult::Error(sent.ToString());
  }
}

void StockService::Register(dtx::ParticipantServer& server) {
  server.Handle("*", "/stock/reserve", [this](const dtx::BranchRequest& r) { return Reserve(r); });
  server.Handle("*", "/stock/queryPrepared", [this](const dtx::BranchRequest& r) {
    auto conn = pool_.Acquire();
    if (!conn.ok()) return dtx::BranchResult::Error(conn.status().ToString());
    return dtx::QueryPrepared(r, (*conn)->barrier());
  });
  server.Handle("GET", "/state", [this](const dtx::BranchRequest&) {
    auto conn = pool_.Acquire();
    if (!conn.ok()) return dtx::BranchResult::Error(conn.status().ToString());
    return StateAnswer(
        **conn,
        {{"stock", "SELECT item, available FROM stock ORDER BY item", {"item", "available"}},
         {"reservations",
          "SELECT order_id, item, qty FROM reservations ORDER BY order_id",
          {"order_id", "item", "qty"}},
         {"message_applied",
          "SELECT msg_id, outcome, compensation_gid FROM message_applied ORDER BY msg_id",
          {"msg_id", "outcome", "compensation_gid"}}});
  });
}

}  // namespace local_message
