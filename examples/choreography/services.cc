// The choreography services: see services.h.
#include "examples/choreography/services.h"

#include <boost/json.hpp>
#include <chrono>
#include <variant>

#include "dtx/outbox.h"

namespace choreography {
namespace {

using dtx::Status;
using Param = std::variant<std::string, int64_t>;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Status SqlError(sqlite3* db, int rc, const std::string& sql) {
  std::string msg = sql.substr(0, 60) + ": " + sqlite3_errmsg(db);
  if ((rc & 0xFF) == SQLITE_BUSY || (rc & 0xFF) == SQLITE_LOCKED) return Status::Timeout(msg);
  return Status::Internal(msg);
}

// Runs one statement with parameters; `rows` (optional) gets the first column of each row.
Status Exec(sqlite3* db, const std::string& sql, const std::vector<Param>& params = {},
            std::vector<std::string>* rows = nullptr) {
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr);
  if (rc != SQLITE_OK) return SqlError(db, rc, sql);
  for (size_t i = 0; i < params.size(); ++i) {
    const int at = static_cast<int>(i + 1);
    if (const auto* v = std::get_if<int64_t>(&params[i])) {
      sqlite3_bind_int64(s, at, *v);
    } else {
      const std::string& t = std::get<std::string>(params[i]);
      sqlite3_bind_text(s, at, t.c_str(), static_cast<int>(t.size()), SQLITE_TRANSIENT);
    }
  }
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    if (rows == nullptr) continue;
    const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    rows->push_back(t != nullptr ? t : "");
  }
  sqlite3_finalize(s);
  return rc == SQLITE_DONE ? Status::Ok() : SqlError(db, rc, sql);
}

Status Log(sqlite3* db, const std::string& service, const std::string& order_id,
           const std::string& what) {
  return Exec(db, "insert into timeline (at_ms, correlation_id, service, what) values (?,?,?,?)",
              {NowMs(), order_id, service, what});
}

// Writes `event` (fields of `body` + "type") to the service's topic, keyed and correlated by the
// order id, in the open transaction, and logs it.
Status Emit(sqlite3* db, const std::string& service, const std::string& type,
            boost::json::object body) {
  const std::string order_id(body.at("order_id").as_string());
  body["type"] = type;
  dtx::Outbox outbox;
  dtx::Result<std::string> id = outbox.Write(db, {.topic = service + "-events",
                                                  .key = order_id,
                                                  .payload = boost::json::serialize(body),
                                                  .headers = {{"correlation_id", order_id}}});
  if (!id.ok()) return id.status();
  return Log(db, service, order_id, "emits " + type);
}

std::string Str(const boost::json::object& o, const char* k) {
  const boost::json::value* v = o.if_contains(k);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : "";
}
int64_t Int(const boost::json::object& o, const char* k) {
  const boost::json::value* v = o.if_contains(k);
  return v != nullptr && v->is_int64() ? v->as_int64() : -1;
}

Status Payment(sqlite3* db, const std::string& type, const boost::json::object& e) {
  const std::string id = Str(e, "order_id");
  if (type == "ORDER_CREATED") {
    if (Status s = Exec(db, "insert into payments (order_id, amount, status) values (?,?,'billed')",
                        {id, Int(e, "amount")});
        !s.ok()) {
      return s;
    }
    if (Status s = Log(db, "payment", id, "billed " + std::to_string(Int(e, "amount"))); !s.ok()) {
      return s;
    }
    return Emit(db, "payment", "BILLED", e);
  }
  if (type == "PRODUCT_OUT_OF_STOCK") {
    if (Status s = Exec(db, "update payments set status = 'refunded' where order_id = ?", {id});
        !s.ok()) {
      return s;
    }
    return Log(db, "payment", id, "refunded");
  }
  return Status::Ok();  // ORDER_PREPARED: nothing to do
}

Status Inventory(sqlite3* db, const std::string& type, const boost::json::object& e) {
  if (type != "BILLED") return Status::Ok();
  const std::string id = Str(e, "order_id"), item = Str(e, "item");
  const int64_t qty = Int(e, "qty");
  if (id.empty() || item.empty() || qty <= 0) {
    return Status::InvalidArgument("BILLED without order_id, item or a positive qty");
  }
  std::vector<std::string> left;
  if (Status s = Exec(db, "select qty from stock where item = ?", {item}, &left); !s.ok()) return s;
  const int64_t have = left.empty() ? 0 : std::stoll(left[0]);
  const bool enough = have >= qty;
  if (enough) {
    if (Status s = Exec(db, "update stock set qty = qty - ? where item = ?", {qty, item});
        !s.ok()) {
      return s;
    }
  }
  if (Status s = Exec(db, "insert into reservations (order_id, item, qty, status) values (?,?,?,?)",
                      {id, item, qty, std::string(enough ? "reserved" : "out_of_stock")});
      !s.ok()) {
    return s;
  }
  if (!enough) {
    if (Status s = Log(db, "inventory", id,
                       "out of stock: " + std::to_string(qty) + " " + item + " wanted, " +
                           std::to_string(have) + " left");
        !s.ok()) {
      return s;
    }
    return Emit(db, "inventory", "PRODUCT_OUT_OF_STOCK", {{"order_id", id}, {"item", item}});
  }
  if (Status s = Log(db, "inventory", id, "reserved " + std::to_string(qty) + " " + item);
      !s.ok()) {
    return s;
  }
  return Emit(db, "inventory", "ORDER_PREPARED", {{"order_id", id}});
}

Status Shipping(sqlite3* db, const std::string& type, const boost::json::object& e) {
  if (type != "ORDER_PREPARED") return Status::Ok();
  const std::string id = Str(e, "order_id");
  if (Status s = Exec(db, "insert into shipments (order_id, status) values (?, 'delivered')", {id});
      !s.ok()) {
    return s;
  }
  if (Status s = Log(db, "shipping", id, "delivered"); !s.ok()) return s;
  return Emit(db, "shipping", "ORDER_DELIVERED", {{"order_id", id}});
}

Status Order(sqlite3* db, const std::string& type, const boost::json::object& e) {
  const std::string id = Str(e, "order_id");
  const char* status = type == "ORDER_DELIVERED"        ? "concluded"
                       : type == "PRODUCT_OUT_OF_STOCK" ? "failed"
                                                        : nullptr;
  if (status == nullptr) return Status::Ok();
  if (Status s = Exec(db, "update orders set status = ? where order_id = ? and status = 'pending'",
                      {std::string(status), id});
      !s.ok()) {
    return s;
  }
  return Log(db, "order", id, std::string("order ") + status);
}

bool Acts(const std::string& service, const std::string& type) {
  if (service == "payment") return type == "ORDER_CREATED" || type == "PRODUCT_OUT_OF_STOCK";
  if (service == "inventory") return type == "BILLED";
  if (service == "shipping") return type == "ORDER_PREPARED";
  return type == "ORDER_DELIVERED" || type == "PRODUCT_OUT_OF_STOCK";
}

}  // namespace

std::vector<std::string> TopicsOf(const std::string& service) {
  if (service == "order") return {"shipping-events", "inventory-events"};
  if (service == "payment") return {"order-events", "inventory-events"};
  if (service == "inventory") return {"payment-events"};
  if (service == "shipping") return {"inventory-events"};
  return {};
}

dtx::Result<sqlite3*> OpenDb(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) {
    std::string e = db != nullptr ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return Status::IoError(path + ": " + e);
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_exec(db, "pragma journal_mode=wal", nullptr, nullptr, nullptr);
  return db;
}

Status SetUp(sqlite3* db, const std::string& service, const std::vector<std::string>& stock) {
  const char* tables =
      "create table if not exists timeline (at_ms integer, correlation_id text, service text,"
      " what text);"
      "create table if not exists orders (order_id text primary key, item text, qty integer,"
      " amount integer, status text);"
      "create table if not exists payments (order_id text primary key, amount integer,"
      " status text);"
      "create table if not exists stock (item text primary key, qty integer check (qty >= 0));"
      "create table if not exists reservations (order_id text primary key, item text,"
      " qty integer, status text);"
      "create table if not exists shipments (order_id text primary key, status text);";
  if (sqlite3_exec(db, tables, nullptr, nullptr, nullptr) != SQLITE_OK) {
    return Status::Internal(std::string("create tables: ") + sqlite3_errmsg(db));
  }
  if (Status s = dtx::Outbox().EnsureTable(db); !s.ok()) return s;
  if (service == "inventory") {
    for (const std::string& item : stock) {
      size_t eq = item.find('=');
      if (eq == std::string::npos) return Status::InvalidArgument("--stock wants item=qty");
      if (Status s = Exec(db, "insert or ignore into stock (item, qty) values (?, ?)",
                          {item.substr(0, eq), std::stoll(item.substr(eq + 1))});
          !s.ok()) {
        return s;
      }
    }
  }
  return Status::Ok();
}

Status Handle(sqlite3* db, const std::string& service, const dtx::InboxMessage& m) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(m.payload, ec);
  if (ec || !v.is_object() || Str(v.as_object(), "order_id").empty()) {
    return Status::InvalidArgument("not an order event: " + m.payload.substr(0, 80));
  }
  const boost::json::object& e = v.as_object();
  const std::string type = Str(e, "type");
  if (!Acts(service, type)) return Status::Ok();  // still recorded in message_applied
  if (Status s = Log(db, service, Str(e, "order_id"), "got " + type); !s.ok()) return s;
  if (service == "payment") return Payment(db, type, e);
  if (service == "inventory") return Inventory(db, type, e);
  if (service == "shipping") return Shipping(db, type, e);
  return Order(db, type, e);
}

Status PlaceOrder(sqlite3* db, const std::string& order_id, const std::string& item, int64_t qty,
                  int64_t amount) {
  if (Status s = Exec(db, "BEGIN IMMEDIATE"); !s.ok()) return s;
  Status s = Exec(db,
                  "insert into orders (order_id, item, qty, amount, status) values "
                  "(?,?,?,?,'pending')",
                  {order_id, item, qty, amount});
  if (s.ok()) s = Log(db, "order", order_id, "order placed: pending");
  if (s.ok()) {
    s = Emit(db, "order", "ORDER_CREATED",
             {{"order_id", order_id}, {"item", item}, {"qty", qty}, {"amount", amount}});
  }
  if (s.ok()) s = Exec(db, "COMMIT");
  if (!s.ok()) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  return s;
}

dtx::Result<std::vector<TimelineEntry>> ReadTimeline(sqlite3* db) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db, "select at_ms, correlation_id, service, what from timeline", -1, &s,
                         nullptr) != SQLITE_OK) {
    return Status::Internal(sqlite3_errmsg(db));
  }
  std::vector<TimelineEntry> out;
  auto text = [&](int i) {
    const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
    return std::string(t != nullptr ? t : "");
  };
  while (sqlite3_step(s) == SQLITE_ROW) {
    out.push_back({sqlite3_column_int64(s, 0), text(1), text(2), text(3)});
  }
  sqlite3_finalize(s);
  return out;
}

std::string QueryText(sqlite3* db, const std::string& sql) {
  std::vector<std::string> rows;
  if (!Exec(db, sql, {}, &rows).ok() || rows.empty()) return "";
  return rows[0];
}

}  // namespace choreography
