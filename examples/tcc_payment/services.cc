#include "examples/tcc_payment/services.h"

#include <boost/json.hpp>
#include <cstdio>
#include <map>
#include <utility>

namespace tcc_payment {
namespace {

namespace json = boost::json;

// Business code gets the open local transaction (the barrier's) and the payment.
using Op = Status (*)(SqlConn& tx, const std::string& gid, const Payment& p);

Status Changed(const Result<int64_t>& r) { return r.status(); }

// --- member: the balance is frozen by Try, debited by Confirm, released by Cancel ---------------

Status MemberTry(SqlConn& tx, const std::string& gid, const Payment& p) {
  if (p.amount <= 0) return Status::Conflict("invalid amount");
  auto frozen = tx.Exec(
      "UPDATE accounts SET balance = balance - ?, frozen = frozen + ? "
      "WHERE member = ? AND balance >= ?",
      {p.amount, p.amount, p.member, p.amount});
  if (!frozen.ok()) return frozen.status();
  if (*frozen == 0) {
    auto rows = tx.Query("SELECT balance FROM accounts WHERE member = ?", {p.member});
    if (!rows.ok()) return rows.status();
    if (rows->empty()) return Status::Conflict("unknown member '" + p.member + "'");
    return Status::Conflict("insufficient balance: " + p.member + " has " +
                            std::to_string(AsInt((*rows)[0][0])) + ", the payment is " +
                            std::to_string(p.amount));
  }
  return Changed(
      tx.Exec("INSERT INTO freezes (gid, member, amount, status) VALUES (?, ?, ?, 'frozen')",
              {gid, p.member, p.amount}));
}

Status MemberConfirm(SqlConn& tx, const std::string& gid, const Payment&) {
  // The amount comes from the freeze row written by Try, not from the payload.
  auto rows =
      tx.Query("SELECT member, amount FROM freezes WHERE gid = ? AND status = 'frozen'", {gid});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) {
    std::fprintf(stderr, "[member] confirm %s: nothing frozen (Try never took effect?)\n",
                 gid.c_str());
    return Status::Ok();
  }
  const std::string member = AsText((*rows)[0][0]);
  const int64_t amount = AsInt((*rows)[0][1]);
  if (Status s = Changed(
          tx.Exec("UPDATE accounts SET frozen = frozen - ? WHERE member = ?", {amount, member}));
      !s.ok()) {
    return s;
  }
  return Changed(tx.Exec("UPDATE freezes SET status = 'debited' WHERE gid = ?", {gid}));
}

Status MemberCancel(SqlConn& tx, const std::string& gid, const Payment&) {
  auto rows =
      tx.Query("SELECT member, amount FROM freezes WHERE gid = ? AND status = 'frozen'", {gid});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return Status::Ok();  // the Try failed: nothing was frozen
  const std::string member = AsText((*rows)[0][0]);
  const int64_t amount = AsInt((*rows)[0][1]);
  if (Status s = Changed(
          tx.Exec("UPDATE accounts SET balance = balance + ?, frozen = frozen - ? WHERE member = ?",
                  {amount, amount, member}));
      !s.ok()) {
    return s;
  }
  return Changed(tx.Exec("UPDATE freezes SET status = 'released' WHERE gid = ?", {gid}));
}

// --- merchant: Try records a pending credit, Confirm credits it, Cancel drops it -----------------

Status MerchantTry(SqlConn& tx, const std::string& gid, const Payment& p) {
  auto rows = tx.Query("SELECT accepting FROM merchants WHERE merchant = ?", {p.merchant});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return Status::Conflict("unknown merchant '" + p.merchant + "'");
  if (AsInt((*rows)[0][0]) == 0) {
    return Status::Conflict("merchant '" + p.merchant + "' does not accept payments");
  }
  return Changed(
      tx.Exec("INSERT INTO credits (gid, merchant, amount, status) VALUES (?, ?, ?, 'pending')",
              {gid, p.merchant, p.amount}));
}

Status MerchantConfirm(SqlConn& tx, const std::string& gid, const Payment&) {
  auto rows =
      tx.Query("SELECT merchant, amount FROM credits WHERE gid = ? AND status = 'pending'", {gid});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return Status::Ok();
  if (Status s = Changed(tx.Exec("UPDATE merchants SET balance = balance + ? WHERE merchant = ?",
                                 {AsInt((*rows)[0][1]), AsText((*rows)[0][0])}));
      !s.ok()) {
    return s;
  }
  return Changed(tx.Exec("UPDATE credits SET status = 'credited' WHERE gid = ?", {gid}));
}

Status MerchantCancel(SqlConn& tx, const std::string& gid, const Payment&) {
  return Changed(tx.Exec(
      "UPDATE credits SET status = 'cancelled' WHERE gid = ? AND status = 'pending'", {gid}));
}

// --- points: Try records pending points, Confirm adds them, Cancel drops them ------------------

Status PointsTry(SqlConn& tx, const std::string& gid, const Payment& p) {
  if (p.points < 0) return Status::Conflict("negative points");
  return Changed(tx.Exec(
      "INSERT INTO pending_points (gid, member, points, status) VALUES (?, ?, ?, 'pending')",
      {gid, p.member, p.points}));
}

Status PointsConfirm(SqlConn& tx, const std::string& gid, const Payment&) {
  auto rows = tx.Query(
      "SELECT member, points FROM pending_points WHERE gid = ? AND status = 'pending'", {gid});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return Status::Ok();
  const std::string member = AsText((*rows)[0][0]);
  const int64_t points = AsInt((*rows)[0][1]);
  auto added =
      tx.Exec("UPDATE member_points SET points = points + ? WHERE member = ?", {points, member});
  if (!added.ok()) return added.status();
  if (*added == 0) {
    if (Status s = Changed(
            tx.Exec("INSERT INTO member_points (member, points) VALUES (?, ?)", {member, points}));
        !s.ok()) {
      return s;
    }
  }
  return Changed(tx.Exec("UPDATE pending_points SET status = 'credited' WHERE gid = ?", {gid}));
}

Status PointsCancel(SqlConn& tx, const std::string& gid, const Payment&) {
  return Changed(
      tx.Exec("UPDATE pending_points SET status = 'cancelled' WHERE gid = ? AND status = 'pending'",
              {gid}));
}

struct Table {
  std::string name;
  std::string select;
  std::vector<std::string> columns;
};

}  // namespace

struct Service::Business {
  // The same DDL runs on SQLite and PostgreSQL; the inserts are the initial data.
  std::string schema;
  std::vector<std::string> tables;  // dropped by a reset
  Op try_op;
  Op confirm_op;
  Op cancel_op;
  std::vector<Table> dump;  // for /state
};

namespace {

const std::map<std::string, Service::Business>& Businesses() {
  static const auto* businesses = new std::map<std::string, Service::Business>{
      {"member",
       {"CREATE TABLE IF NOT EXISTS accounts (member VARCHAR(64) PRIMARY KEY,"
        " balance BIGINT NOT NULL CHECK (balance >= 0),"
        " frozen BIGINT NOT NULL DEFAULT 0 CHECK (frozen >= 0));"
        "CREATE TABLE IF NOT EXISTS freezes (gid VARCHAR(128) PRIMARY KEY,"
        " member VARCHAR(64) NOT NULL, amount BIGINT NOT NULL, status VARCHAR(16) NOT NULL);"
        "INSERT INTO accounts (member, balance, frozen) VALUES ('alice', 10000, 0),"
        " ('bob', 500, 0) ON CONFLICT DO NOTHING;",
        {"accounts", "freezes"},
        MemberTry,
        MemberConfirm,
        MemberCancel,
        {{"accounts",
          "SELECT member, balance, frozen FROM accounts ORDER BY member",
          {"member", "balance", "frozen"}},
         {"freezes",
          "SELECT gid, member, amount, status FROM freezes ORDER BY gid",
          {"gid", "member", "amount", "status"}}}}},
      {"merchant",
       {"CREATE TABLE IF NOT EXISTS merchants (merchant VARCHAR(64) PRIMARY KEY,"
        " balance BIGINT NOT NULL, accepting INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS credits (gid VARCHAR(128) PRIMARY KEY,"
        " merchant VARCHAR(64) NOT NULL, amount BIGINT NOT NULL, status VARCHAR(16) NOT NULL);"
        "INSERT INTO merchants (merchant, balance, accepting) VALUES ('coffee-shop', 0, 1),"
        " ('closed-shop', 0, 0) ON CONFLICT DO NOTHING;",
        {"merchants", "credits"},
        MerchantTry,
        MerchantConfirm,
        MerchantCancel,
        {{"merchants",
          "SELECT merchant, balance, accepting FROM merchants ORDER BY merchant",
          {"merchant", "balance", "accepting"}},
         {"credits",
          "SELECT gid, merchant, amount, status FROM credits ORDER BY gid",
          {"gid", "merchant", "amount", "status"}}}}},
      {"points",
       {"CREATE TABLE IF NOT EXISTS member_points (member VARCHAR(64) PRIMARY KEY,"
        " points BIGINT NOT NULL);"
        "CREATE TABLE IF NOT EXISTS pending_points (gid VARCHAR(128) PRIMARY KEY,"
        " member VARCHAR(64) NOT NULL, points BIGINT NOT NULL, status VARCHAR(16) NOT NULL);"
        "INSERT INTO member_points (member, points) VALUES ('alice', 0), ('bob', 0)"
        " ON CONFLICT DO NOTHING;",
        {"member_points", "pending_points"},
        PointsTry,
        PointsConfirm,
        PointsCancel,
        {{"member_points",
          "SELECT member, points FROM member_points ORDER BY member",
          {"member", "points"}},
         {"pending_points",
          "SELECT gid, member, points, status FROM pending_points ORDER BY gid",
          {"gid", "member", "points", "status"}}}}},
  };
  return *businesses;
}

}  // namespace

std::string EncodePayment(const Payment& p) {
  return json::serialize(json::object{
      {"member", p.member}, {"merchant", p.merchant}, {"amount", p.amount}, {"points", p.points}});
}

Result<Payment> DecodePayment(const std::string& json_text) {
  json::error_code ec;
  json::value v = json::parse(json_text, ec);
  if (ec || !v.is_object()) return Status::InvalidArgument("payload is not a JSON object");
  const json::object& o = v.as_object();
  Payment p;
  const json::value* member = o.if_contains("member");
  const json::value* merchant = o.if_contains("merchant");
  const json::value* amount = o.if_contains("amount");
  const json::value* points = o.if_contains("points");
  if (!member || !member->is_string() || !merchant || !merchant->is_string() || !amount ||
      !amount->is_int64() || (points && !points->is_int64())) {
    return Status::InvalidArgument(
        "payload must be {\"member\":str,\"merchant\":str,\"amount\":int,\"points\":int}");
  }
  p.member = std::string(member->as_string());
  p.merchant = std::string(merchant->as_string());
  p.amount = amount->as_int64();
  p.points = points ? points->as_int64() : 0;
  return p;
}

const std::vector<std::string>& ServiceNames() {
  static const std::vector<std::string> names = {"member", "merchant", "points"};
  return names;
}

Service::Service(std::string name, std::unique_ptr<ConnPool> pool, const Business* business)
    : name_(std::move(name)), pool_(std::move(pool)), business_(business) {}

Service::~Service() = default;

Result<std::unique_ptr<Service>> Service::Open(const std::string& name, const std::string& db_url,
                                               bool reset) {
  auto it = Businesses().find(name);
  if (it == Businesses().end()) return Status::InvalidArgument("unknown service '" + name + "'");
  const Business& business = it->second;
  const std::string schema = "tcc_payment_" + name;
  if (Status s = CreatePgSchema(db_url, schema, reset); !s.ok()) return s;
  auto pool = std::make_unique<ConnPool>(db_url, schema, 16);
  {
    auto conn = pool->Acquire();
    if (!conn.ok()) return conn.status();
    if (reset && !IsPostgresUrl(db_url)) {  // PostgreSQL: the schema was dropped above
      std::string drop;
      for (const std::string& t : business.tables) drop += "DROP TABLE IF EXISTS " + t + ";";
      drop += "DROP TABLE IF EXISTS " + (*conn)->barrier_table() + ";";
      if (Status s = (*conn)->ExecScript(drop); !s.ok()) return s;
    }
    if (Status s = (*conn)->ExecScript(business.schema); !s.ok()) return s;
    if (Status s = (*conn)->EnsureBarrierTable(); !s.ok()) return s;
  }
  return std::unique_ptr<Service>(new Service(name, std::move(pool), &business));
}

dtx::BranchResult Service::Handle(const std::string& op, const dtx::BranchRequest& request) {
  auto done = [&](const dtx::BranchResult& r) {
    std::fprintf(stderr, "[%s] %-7s gid=%s branch=%s -> %d %s\n", name_.c_str(), op.c_str(),
                 request.gid.c_str(), request.branch_id.c_str(), r.status, r.body.c_str());
    return r;
  };
  auto payment = DecodePayment(request.body);
  if (!payment.ok()) {
    // Only a Try may refuse; a malformed Confirm/Cancel is a bug that an operator must see.
    return done(op == "try" ? dtx::BranchResult::Failure(payment.status().message())
                            : dtx::BranchResult::Error(payment.status().message()));
  }
  auto barrier = dtx::BranchBarrier::FromRequest(request);
  if (!barrier.ok()) return done(dtx::BarrierBranchResult(barrier.status()));
  if (barrier->op() != op) {
    return done(dtx::BranchResult::Error("op '" + barrier->op() + "' sent to the " + op + " URL"));
  }
  auto conn = pool_->Acquire();
  if (!conn.ok()) return done(dtx::BranchResult::Error(conn.status().ToString()));
  const Op business = op == "try"       ? business_->try_op
                      : op == "confirm" ? business_->confirm_op
                                        : business_->cancel_op;
  const std::string& gid = request.gid;
  Status s =
      (*conn)->CallBarrier(*barrier, [&](SqlConn& tx) { return business(tx, gid, *payment); });
  // Confirm and Cancel must eventually succeed: they never answer FAILURE (a business refusal
  // there would be retried forever anyway).
  if (op != "try" && s.code() == dtx::Code::kConflict) {
    return done(dtx::BranchResult::Error(s.ToString()));
  }
  return done(dtx::BarrierBranchResult(s));
}

void Service::Register(dtx::ParticipantServer& server) {
  for (const std::string op : {"try", "confirm", "cancel"}) {
    server.Handle("POST", "/" + name_ + "/" + op,
                  [this, op](const dtx::BranchRequest& r) { return Handle(op, r); });
  }
  server.Handle("GET", "/state", [this](const dtx::BranchRequest&) {
    auto state = StateJson();
    if (!state.ok()) return dtx::BranchResult::Error(state.status().ToString());
    return dtx::BranchResult::Custom(200, *state);
  });
}

Result<std::string> Service::StateJson() {
  auto conn = pool_->Acquire();
  if (!conn.ok()) return conn.status();
  json::object out;
  std::vector<Table> tables = business_->dump;
  tables.push_back({"barrier",
                    "SELECT gid, branch_id, op, barrier_id, reason FROM " +
                        (*conn)->barrier_table() + " ORDER BY id",
                    {"gid", "branch_id", "op", "barrier_id", "reason"}});
  for (const Table& t : tables) {
    auto rows = (*conn)->Query(t.select);
    if (!rows.ok()) return rows.status();
    json::array arr;
    for (const Row& row : *rows) {
      json::object o;
      for (size_t c = 0; c < t.columns.size() && c < row.size(); ++c) {
        if (const auto* n = std::get_if<int64_t>(&row[c])) {
          o[t.columns[c]] = *n;
        } else if (const auto* s = std::get_if<std::string>(&row[c])) {
          o[t.columns[c]] = *s;
        } else {
          o[t.columns[c]] = nullptr;
        }
      }
      arr.push_back(std::move(o));
    }
    out[t.name] = std::move(arr);
  }
  return json::serialize(out);
}

}  // namespace tcc_payment
