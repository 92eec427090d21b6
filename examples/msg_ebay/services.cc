#include "examples/msg_ebay/services.h"

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <thread>
#include <utility>

namespace msg_ebay {
namespace {

namespace json = boost::json;
using msg_examples::ConnPool;
using msg_examples::SqlConn;

json::object ErrorBody(std::string_view result, const std::string& message) {
  json::object o;
  if (!result.empty()) o["dtm_result"] = result;
  o["message"] = message;
  return o;
}

// A value of a dump: an integer when the text is one, else the text.
json::value DumpValue(const std::string& text) {
  // "01" stays a string (branch and barrier ids).
  const bool leading_zero = text.size() > 1 && text[0] == '0';
  if (!text.empty() && text.size() < 19 && !leading_zero) {
    size_t i = text[0] == '-' ? 1 : 0;
    bool digits = i < text.size();
    for (; i < text.size(); ++i) digits = digits && text[i] >= '0' && text[i] <= '9';
    if (digits) return static_cast<int64_t>(std::stoll(text));
  }
  return json::string(text);
}

struct DumpSpec {
  std::string name;
  std::string sql;
  std::vector<std::string> columns;
};

Result<std::string> Dump(SqlConn& conn, const std::vector<DumpSpec>& specs) {
  json::object out;
  for (const DumpSpec& spec : specs) {
    auto rows = conn.Query(spec.sql);
    if (!rows.ok()) return rows.status();
    json::array arr;
    for (const auto& row : *rows) {
      json::object o;
      for (size_t c = 0; c < row.size() && c < spec.columns.size(); ++c) {
        o[spec.columns[c]] = DumpValue(row[c]);
      }
      arr.push_back(std::move(o));
    }
    out[spec.name] = std::move(arr);
  }
  return json::serialize(out);
}

dtx::BranchResult JsonAnswer(int status, const json::object& body) {
  return dtx::BranchResult::Custom(status, json::serialize(body));
}

}  // namespace

std::string EncodeTrade(const Trade& t) {
  return json::serialize(json::object{
      {"xid", t.xid}, {"seller_id", t.seller_id}, {"buyer_id", t.buyer_id}, {"amount", t.amount}});
}

Result<Trade> DecodeTrade(std::string_view text) {
  json::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return Status::InvalidArgument("trade: not a JSON object");
  const json::object& o = v.as_object();
  Trade t;
  const json::value* xid = o.if_contains("xid");
  if (xid == nullptr || !xid->is_string() || xid->as_string().empty()) {
    return Status::InvalidArgument("trade: 'xid' must be a non-empty string");
  }
  t.xid = std::string(xid->as_string());
  for (auto [key, field] : {std::pair{"seller_id", &t.seller_id},
                            std::pair{"buyer_id", &t.buyer_id}, std::pair{"amount", &t.amount}}) {
    const json::value* f = o.if_contains(key);
    if (f == nullptr || !f->is_int64()) {
      return Status::InvalidArgument(std::string("trade: '") + key + "' must be an integer");
    }
    *field = f->as_int64();
  }
  return t;
}

// ---------------------------------------------------------------------------------------------------
// Trade service (the producer)

Status InitTradeDb(SqlConn& conn) {
  // The seed's table. "transaction" is a keyword in both databases, hence the quotes. The CHECKs
  // make an invalid trade a constraint violation: the local transaction fails (kConflict) and the
  // message is aborted.
  Status s = conn.Script(
      "CREATE TABLE IF NOT EXISTS \"transaction\"("
      " xid text PRIMARY KEY,"
      " seller_id bigint NOT NULL,"
      " buyer_id bigint NOT NULL,"
      " amount bigint NOT NULL CHECK (amount > 0),"
      " CHECK (seller_id <> buyer_id))");
  if (!s.ok()) return s;
  return conn.EnsureBarrierTable();
}

TradeOutcome PlaceTrade(dtx::Client& client, SqlConn& conn, const TradeOptions& options,
                        const std::string& query_prepared, const Trade& trade, std::string gid,
                        dtx::MsgHooks hooks) {
  dtx::Msg msg(client, std::move(gid));
  msg.Add(options.user_url + "/user/applyTrade", EncodeTrade(trade));
  if (options.timeout_to_fail_s) msg.SetTimeoutToFail(*options.timeout_to_fail_s);
  if (options.retry_interval_s) msg.SetRetryInterval(*options.retry_interval_s);
  msg.SetHooks(std::move(hooks));
  // begin; INSERT INTO transaction ...; (barrier row); commit -- then submit. No UPDATE of "user"
  // here: that is the user service's job, driven by the message.
  Status s = msg.DoAndSubmit(query_prepared, conn.barrier(), [&]() -> Status {
    auto r = conn.Exec(
        "INSERT INTO \"transaction\"(xid, seller_id, buyer_id, amount) VALUES(?, ?, ?, ?)",
        {trade.xid, std::to_string(trade.seller_id), std::to_string(trade.buyer_id),
         std::to_string(trade.amount)});
    return r.status();  // a duplicate xid or an invalid trade -> kConflict -> abort
  });
  return {msg.gid(), s, msg.local_outcome()};
}

TradeService::TradeService(std::string db_url, TradeOptions options)
    : pool_(std::move(db_url), "msg_ebay_trade"), options_(std::move(options)) {}

Result<std::unique_ptr<TradeService>> TradeService::Open(const std::string& db_url,
                                                         TradeOptions options) {
  if (Status s = msg_examples::CreatePgSchema(db_url, "msg_ebay_trade", false); !s.ok()) return s;
  std::unique_ptr<TradeService> service(new TradeService(db_url, std::move(options)));
  auto conn = service->pool_.Acquire();
  if (!conn.ok()) return conn.status();
  if (Status s = InitTradeDb(**conn); !s.ok()) return s;
  return service;
}

void TradeService::SetSelfUrl(std::string url) {
  std::lock_guard lock(mu_);
  self_url_ = std::move(url);
}

std::string TradeService::QueryPreparedUrl() {
  std::lock_guard lock(mu_);
  return self_url_ + "/trade/queryPrepared";
}

void TradeService::Register(dtx::ParticipantServer& server) {
  server.Handle("POST", "/trade", [this](const dtx::BranchRequest& r) {
    auto trade = DecodeTrade(r.body);
    if (!trade.ok()) return JsonAnswer(400, ErrorBody("", trade.status().message()));
    std::string gid;
    json::error_code ec;
    json::value body = json::parse(r.body, ec);
    if (const json::value* g = body.as_object().if_contains("gid"); g && g->is_string()) {
      gid = std::string(g->as_string());
    }
    auto conn = pool_.Acquire();
    if (!conn.ok()) return dtx::BranchResult::Error(conn.status().ToString());
    dtx::Client client(options_.dtx);
    TradeOutcome out = PlaceTrade(client, **conn, options_, QueryPreparedUrl(), *trade, gid);
    json::object answer{{"gid", out.gid}, {"local", dtx::LocalOutcomeName(out.local)}};
    std::fprintf(stderr, "trade: %s gid=%s local=%s: %s\n", trade->xid.c_str(), out.gid.c_str(),
                 std::string(dtx::LocalOutcomeName(out.local)).c_str(),
                 out.status.ToString().c_str());
    if (out.local == dtx::LocalOutcome::kCommitted) {
      // The trade is recorded; the message is delivered even if the submit failed (the
      // coordinator's check-back finds the commit).
      answer["dtm_result"] = "SUCCESS";
      if (!out.status.ok())
        answer["note"] = "submit failed, delivery after check-back: " + out.status.ToString();
      return JsonAnswer(200, answer);
    }
    answer["message"] = out.status.ToString();
    if (out.local == dtx::LocalOutcome::kRolledBack) {
      answer["dtm_result"] = "FAILURE";
      return JsonAnswer(409, answer);
    }
    return JsonAnswer(500, answer);
  });
  // The check-back: GET /trade/queryPrepared?gid=..&trans_type=msg&branch_id=00&op=msg.
  server.Handle("*", "/trade/queryPrepared", [this](const dtx::BranchRequest& r) {
    auto conn = pool_.Acquire();
    if (!conn.ok()) return dtx::BranchResult::Error(conn.status().ToString());
    dtx::BranchResult answer = dtx::QueryPrepared(r, (*conn)->barrier());
    std::fprintf(stderr, "trade: check-back gid=%s -> %d\n", r.gid.c_str(), answer.status);
    return answer;
  });
  server.Handle("GET", "/state", [this](const dtx::BranchRequest&) {
    auto conn = pool_.Acquire();
    if (!conn.ok()) return dtx::BranchResult::Error(conn.status().ToString());
    auto dump = Dump(**conn, {{"transaction",
                               "SELECT xid, seller_id, buyer_id, amount FROM \"transaction\" "
                               "ORDER BY xid",
                               {"xid", "seller_id", "buyer_id", "amount"}},
                              {"barrier",
                               "SELECT trans_type, gid, branch_id, op, barrier_id, reason FROM " +
                                   (*conn)->barrier_table() + " ORDER BY id",
                               {"trans_type", "gid", "branch_id", "op", "barrier_id", "reason"}}});
    if (!dump.ok()) return dtx::BranchResult::Error(dump.status().ToString());
    return dtx::BranchResult::Custom(200, *dump);
  });
}

// ---------------------------------------------------------------------------------------------------
// User service (the consumer)

Status InitUserDb(SqlConn& conn) {
  return conn.Script(
      "CREATE TABLE IF NOT EXISTS \"user\"("
      " id bigint PRIMARY KEY, name text NOT NULL,"
      " amt_sold bigint NOT NULL DEFAULT 0, amt_bought bigint NOT NULL DEFAULT 0);"
      // The seed's consumption log: a message is applied iff its row is here.
      "CREATE TABLE IF NOT EXISTS message_applied(msg_id text PRIMARY KEY);"
      // How often each message arrived (outside the business transaction; for the demo/tests).
      "CREATE TABLE IF NOT EXISTS delivery_log(msg_id text PRIMARY KEY, deliveries bigint NOT "
      "NULL);"
      "INSERT INTO \"user\"(id, name) VALUES (1, 'alice'), (2, 'bob'), (3, 'carol'), (4, 'dave') "
      "ON CONFLICT (id) DO NOTHING");
}

UserService::UserService(std::string db_url, UserOptions options)
    : pool_(std::move(db_url), options.pg_schema),
      options_(std::move(options)),
      rng_(options_.seed) {}

Result<std::unique_ptr<UserService>> UserService::Open(const std::string& db_url,
                                                       UserOptions options) {
  if (Status s = msg_examples::CreatePgSchema(db_url, options.pg_schema, options.reset); !s.ok()) {
    return s;
  }
  std::unique_ptr<UserService> service(new UserService(db_url, std::move(options)));
  auto conn = service->pool_.Acquire();
  if (!conn.ok()) return conn.status();
  if (Status s = InitUserDb(**conn); !s.ok()) return s;
  return service;
}

Status UserService::Apply(const std::string& msg_id, const Trade& trade) {
  auto conn = pool_.Acquire();
  if (!conn.ok()) return conn.status();
  SqlConn& c = **conn;
  auto logged = c.Exec(
      "INSERT INTO delivery_log(msg_id, deliveries) VALUES(?, 1) ON CONFLICT (msg_id) DO UPDATE "
      "SET deliveries = delivery_log.deliveries + 1",
      {msg_id});
  if (!logged.ok()) return logged.status();
  // One local transaction: the message_applied row and both updates commit together, so a
  // message is applied exactly once however often it is delivered (seed 002).
  return c.InTransaction([&]() -> Status {
    auto first = c.Exec(
        "INSERT INTO message_applied(msg_id) VALUES(?) ON CONFLICT (msg_id) DO NOTHING", {msg_id});
    if (!first.ok()) return first.status();
    if (*first == 0) return Status::Ok();  // applied before: a duplicate delivery, nothing to do
    for (int64_t id : {trade.seller_id, trade.buyer_id}) {
      auto r = c.Exec("INSERT INTO \"user\"(id, name) VALUES(?, ?) ON CONFLICT (id) DO NOTHING",
                      {std::to_string(id), "user-" + std::to_string(id)});
      if (!r.ok()) return r.status();
    }
    auto sold = c.Exec("UPDATE \"user\" SET amt_sold = amt_sold + ? WHERE id = ?",
                       {std::to_string(trade.amount), std::to_string(trade.seller_id)});
    if (!sold.ok()) return sold.status();
    auto bought = c.Exec("UPDATE \"user\" SET amt_bought = amt_bought + ? WHERE id = ?",
                         {std::to_string(trade.amount), std::to_string(trade.buyer_id)});
    return bought.status();
  });
}

bool UserService::LoseThisAnswer() {
  int n = lose_next_.load();
  while (n > 0) {
    if (lose_next_.compare_exchange_weak(n, n - 1)) return true;
  }
  if (options_.lose_answer_rate <= 0) return false;
  std::lock_guard lock(rng_mu_);
  return std::uniform_real_distribution<double>(0, 1)(rng_) < options_.lose_answer_rate;
}

void UserService::Register(dtx::ParticipantServer& server) {
  server.Handle("*", "/user/applyTrade", [this](const dtx::BranchRequest& r) {
    if (r.gid.empty() || r.branch_id.empty()) {
      return JsonAnswer(400, ErrorBody("", "not a dtx call: gid and branch_id are required"));
    }
    auto trade = DecodeTrade(r.body);
    // A message that can never be applied: FAILURE (the coordinator retries it and alerts).
    if (!trade.ok()) return dtx::BranchResult::Failure(trade.status().message());
    const std::string msg_id = r.gid + "/" + r.branch_id;
    Status s = Apply(msg_id, *trade);
    if (!s.ok()) {
      std::fprintf(stderr, "user: %s: %s\n", msg_id.c_str(), s.ToString().c_str());
      return dtx::BranchResult::Error(s.ToString());  // retried with backoff
    }
    if (options_.delay_ms > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(options_.delay_ms));
    if (LoseThisAnswer()) {
      std::fprintf(stderr, "user: %s applied, answer dropped (simulated)\n", msg_id.c_str());
      return dtx::BranchResult::Error("answer lost (simulated): the change is committed");
    }
    return dtx::BranchResult::Success();
  });
  server.Handle("POST", "/admin/lose-answers", [this](const dtx::BranchRequest& r) {
    int n = 1;
    if (auto count = r.QueryParam("count")) {
      try {
        n = std::stoi(*count);
      } catch (...) {
        return JsonAnswer(400, ErrorBody("", "count must be an integer"));
      }
    }
    lose_next_ += n;
    return dtx::BranchResult::Success();
  });
  server.Handle("GET", "/state", [this](const dtx::BranchRequest&) {
    auto conn = pool_.Acquire();
    if (!conn.ok()) return dtx::BranchResult::Error(conn.status().ToString());
    auto dump =
        Dump(**conn,
             {{"user",
               "SELECT id, name, amt_sold, amt_bought FROM \"user\" ORDER BY id",
               {"id", "name", "amt_sold", "amt_bought"}},
              {"message_applied", "SELECT msg_id FROM message_applied ORDER BY msg_id", {"msg_id"}},
              {"delivery_log",
               "SELECT msg_id, deliveries FROM delivery_log ORDER BY msg_id",
               {"msg_id", "deliveries"}}});
    if (!dump.ok()) return dtx::BranchResult::Error(dump.status().ToString());
    return dtx::BranchResult::Custom(200, *dump);
  });
}

}  // namespace msg_ebay
