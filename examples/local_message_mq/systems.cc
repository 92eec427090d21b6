// Systems A and B of the local-message-table example: see systems.h.
#include "examples/local_message_mq/systems.h"

#include <boost/json.hpp>
#include <variant>

#include "dtx/outbox.h"

namespace local_message_mq {
namespace {

using dtx::Status;
using Param = std::variant<std::string, int64_t>;

Status SqlError(sqlite3* db, int rc, const std::string& sql) {
  std::string msg = sql.substr(0, 60) + ": " + sqlite3_errmsg(db);
  if ((rc & 0xFF) == SQLITE_BUSY || (rc & 0xFF) == SQLITE_LOCKED) return Status::Timeout(msg);
  return Status::Internal(msg);
}

// One statement with parameters; `rows` (optional) gets the first column of each row.
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

// A message row in the open transaction: `body` + "type", keyed and correlated by the order id.
Status Send(sqlite3* db, const std::string& topic, const std::string& type,
            boost::json::object body) {
  const std::string order_id(body.at("order_id").as_string());
  body["type"] = type;
  dtx::Outbox outbox;
  dtx::Result<std::string> id = outbox.Write(db, {.topic = topic,
                                                  .key = order_id,
                                                  .payload = boost::json::serialize(body),
                                                  .headers = {{"correlation_id", order_id}}});
  return id.ok() ? Status::Ok() : id.status();
}

std::string Str(const boost::json::object& o, const char* k) {
  const boost::json::value* v = o.if_contains(k);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : "";
}

// B: a stock request. A business failure (not enough stock) is answered, not retried.
Status Reserve(sqlite3* db, const boost::json::object& req) {
  const std::string id = Str(req, "order_id"), item = Str(req, "item");
  const boost::json::value* q = req.if_contains("qty");
  const int64_t qty = q != nullptr && q->is_int64() ? q->as_int64() : 0;
  if (id.empty() || item.empty() || qty <= 0) {
    return Status::InvalidArgument("request without order_id, item or a positive qty");
  }
  std::vector<std::string> left;
  if (Status s = Exec(db, "select qty from stock where item = ?", {item}, &left); !s.ok()) return s;
  const int64_t have = left.empty() ? 0 : std::stoll(left[0]);
  if (have >= qty) {
    if (Status s = Exec(db, "update stock set qty = qty - ? where item = ?", {qty, item});
        !s.ok()) {
      return s;
    }
    if (Status s =
            Exec(db, "insert into reservations values (?, ?, ?, 'reserved')", {id, item, qty});
        !s.ok()) {
      return s;
    }
    return Send(db, kReplies, "RESERVED", {{"order_id", id}});
  }
  const std::string why = "out of stock: " + std::to_string(have) + " " + item + " left, " +
                          std::to_string(qty) + " asked";
  if (Status s = Exec(db, "insert into reservations values (?, ?, ?, 'rejected')", {id, item, qty});
      !s.ok()) {
    return s;
  }
  return Send(db, kReplies, "REJECTED", {{"order_id", id}, {"reason", why}});  // compensation
}

// A: B's answer to an order.
Status Conclude(sqlite3* db, const std::string& type, const boost::json::object& reply) {
  const std::string id = Str(reply, "order_id");
  if (type == "RESERVED") {
    return Exec(db, "update orders set status = 'confirmed' where order_id = ?", {id});
  }
  if (type == "REJECTED") {  // the compensation: A undoes its side
    return Exec(db, "update orders set status = 'cancelled', reason = ? where order_id = ?",
                {Str(reply, "reason"), id});
  }
  return Status::InvalidArgument("unknown reply type '" + type + "'");
}

}  // namespace

std::string TopicOf(const std::string& system) {
  if (system == "a") return kReplies;
  if (system == "b") return kRequests;
  return "";
}

dtx::Result<sqlite3*> OpenDb(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) {
    Status s = Status::Unavailable(path + ": " + sqlite3_errmsg(db));
    sqlite3_close(db);
    return s;
  }
  sqlite3_busy_timeout(db, 5000);  // dtx relay and the inbox use the file too
  sqlite3_exec(db, "pragma journal_mode=wal", nullptr, nullptr, nullptr);
  return db;
}

Status SetUp(sqlite3* db, const std::string& system, const std::vector<std::string>& stock) {
  if (Status s = dtx::Outbox().EnsureTable(db); !s.ok()) return s;
  if (system == "a") {
    return Exec(db,
                "create table if not exists orders (order_id text primary key, item text, "
                "qty integer, status text not null, reason text)");
  }
  if (Status s = Exec(db, "create table if not exists stock (item text primary key, qty integer)");
      !s.ok()) {
    return s;
  }
  if (Status s = Exec(db,
                      "create table if not exists reservations (order_id text primary key, "
                      "item text, qty integer, status text not null)");
      !s.ok()) {
    return s;
  }
  for (const std::string& kv : stock) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos) return Status::InvalidArgument("stock: item=qty, not " + kv);
    if (Status s = Exec(db, "insert or ignore into stock values (?, ?)",
                        {kv.substr(0, eq), static_cast<int64_t>(std::stoll(kv.substr(eq + 1)))});
        !s.ok()) {
      return s;
    }
  }
  return Status::Ok();
}

Status Handle(sqlite3* db, const std::string& system, const dtx::InboxMessage& m) {
  boost::json::error_code ec;
  boost::json::value v = boost::json::parse(m.payload, ec);
  if (ec || !v.is_object()) return Status::InvalidArgument("payload is not a JSON object");
  const boost::json::object& o = v.as_object();
  if (system == "b") return Reserve(db, o);
  return Conclude(db, Str(o, "type"), o);
}

Status PlaceOrder(sqlite3* db, const std::string& order_id, const std::string& item, int64_t qty) {
  if (Status s = Exec(db, "begin immediate"); !s.ok()) return s;
  Status s = Exec(db, "insert into orders (order_id, item, qty, status) values (?,?,?,'placed')",
                  {order_id, item, qty});
  if (s.ok()) {
    s = Send(db, kRequests, "RESERVE",
             {{"order_id", order_id}, {"item", item}, {"qty", qty}, {"reply_to", kReplies}});
  }
  if (s.ok()) s = Exec(db, "commit");
  if (!s.ok()) (void)Exec(db, "rollback");  // the error that made it roll back is returned
  return s;
}

std::string QueryText(sqlite3* db, const std::string& sql) {
  std::vector<std::string> rows;
  return Exec(db, sql, {}, &rows).ok() && !rows.empty() ? rows[0] : "";
}

}  // namespace local_message_mq
