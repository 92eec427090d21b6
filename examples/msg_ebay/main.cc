// msg-ebay-example: the eBay BASE pattern of seed 002 on dtx transactional messages.
//
//   msg-ebay-example serve --service trade|user --db URL [--port P] ...
//       runs one service until SIGTERM/SIGINT; prints
//       "msg-ebay-example ready: service NAME listening on HOST:PORT" when it serves.
//   msg-ebay-example trade --dtx URL --db URL --query-prepared URL --user-url URL --xid X ...
//       places one trade in this process (the producer) and exits: 0 submitted, 1 the local
//       transaction failed (message aborted), 2 another error. --pause-at/--die-at POINT stop or
//       SIGKILL the process at after-prepare, before-commit or after-commit (crash tests).
//   msg-ebay-example demo --dtx URL [--data-dir DIR] [--pg-url URL]
//       starts both services as child processes and runs the four scenarios of README.md;
//       exits 0 when the outcome is the expected one.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "dtx/client.h"
#include "dtx/msg.h"
#include "dtx/participant.h"
#include "examples/common/demo_support.h"
#include "examples/common/serve_support.h"
#include "examples/msg_ebay/services.h"

namespace msg_ebay {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using dtx_examples::Checker;
using dtx_examples::Children;

constexpr const char* kReadyPrefix = "msg-ebay-example ready: ";
constexpr const char* kPausedPrefix = "msg-ebay-example paused: ";

// ---------------------------------------------------------------------------------------------------
// serve

struct ServeFlags {
  std::string service;
  std::string host = "127.0.0.1";
  int port = 0;
  std::string db;
  size_t workers = 8;
  // trade
  std::string dtx;
  std::string user_url;
  int64_t timeout_to_fail_s = 0;  // 0 = the coordinator's default
  int64_t retry_interval_s = 0;
  // user
  int delay_ms = 0;
  double lose_answer_rate = 0;
  uint64_t seed = 1;
  std::string pg_schema = "msg_ebay_user";
  bool reset = false;
};

int RunServe(const ServeFlags& f) {
  const sigset_t signals = dtx_examples::BlockStopSignals();  // before any thread starts

  dtx::ParticipantOptions options;
  options.host = f.host;
  options.port = static_cast<uint16_t>(f.port);
  options.worker_threads = f.workers;
  dtx::ParticipantServer server(options);
  std::unique_ptr<TradeService> trade;
  std::unique_ptr<UserService> user;
  if (f.service == "trade") {
    if (f.dtx.empty() || f.user_url.empty()) {
      std::fprintf(stderr, "serve: the trade service needs --dtx and --user-url\n");
      return 2;
    }
    TradeOptions o{f.dtx, f.user_url, std::nullopt, std::nullopt};
    if (f.timeout_to_fail_s > 0) o.timeout_to_fail_s = f.timeout_to_fail_s;
    if (f.retry_interval_s > 0) o.retry_interval_s = f.retry_interval_s;
    auto s = TradeService::Open(f.db, o);
    if (!s.ok()) {
      std::fprintf(stderr, "serve: %s\n", s.status().ToString().c_str());
      return 1;
    }
    trade = std::move(*s);
    trade->Register(server);
  } else {
    UserOptions o;
    o.delay_ms = f.delay_ms;
    o.lose_answer_rate = f.lose_answer_rate;
    o.seed = f.seed;
    o.pg_schema = f.pg_schema;
    o.reset = f.reset;
    auto s = UserService::Open(f.db, o);
    if (!s.ok()) {
      std::fprintf(stderr, "serve: %s\n", s.status().ToString().c_str());
      return 1;
    }
    user = std::move(*s);
    user->Register(server);
  }
  return dtx_examples::ServeUntilStopped(server, signals, kReadyPrefix, f.service, f.host, f.port,
                                         [&] {
                                           if (trade) trade->SetSelfUrl(server.base_url());
                                         });
}

// ---------------------------------------------------------------------------------------------------
// trade: one producer, in this process

struct TradeFlags {
  std::string dtx;
  std::string db;
  std::string query_prepared;
  std::string user_url;
  std::string gid;
  Trade trade;
  std::string pause_at;
  std::string die_at;
  int64_t timeout_to_fail_s = 0;
  int64_t retry_interval_s = 0;
};

// The hook for `point`: pause (print a line, wait for a line on stdin) and/or die (SIGKILL).
std::function<void()> HookFor(const TradeFlags& f, const std::string& point) {
  const bool pause = f.pause_at == point;
  const bool die = f.die_at == point;
  if (!pause && !die) return {};
  return [pause, die, point] {
    if (pause) {
      std::printf("%s%s\n", kPausedPrefix, point.c_str());
      std::fflush(stdout);
      char c = 0;
      while (read(STDIN_FILENO, &c, 1) == 1 && c != '\n') {
      }
    }
    if (die) {
      std::fprintf(stderr, "trade: dying at %s (SIGKILL)\n", point.c_str());
      raise(SIGKILL);
    }
  };
}

int RunTrade(const TradeFlags& f) {
  // Concurrent first CREATE SCHEMA IF NOT EXISTS may collide on PostgreSQL: one retry settles it.
  if (!msg_examples::CreatePgSchema(f.db, "msg_ebay_trade", false).ok()) {
    (void)msg_examples::CreatePgSchema(f.db, "msg_ebay_trade", false);
  }
  auto conn = msg_examples::OpenSql(f.db, "msg_ebay_trade");
  if (!conn.ok()) {
    std::fprintf(stderr, "trade: %s\n", conn.status().ToString().c_str());
    return 2;
  }
  if (Status s = InitTradeDb(**conn); !s.ok()) {
    std::fprintf(stderr, "trade: %s\n", s.ToString().c_str());
    return 2;
  }
  TradeOptions o{f.dtx, f.user_url, std::nullopt, std::nullopt};
  if (f.timeout_to_fail_s > 0) o.timeout_to_fail_s = f.timeout_to_fail_s;
  if (f.retry_interval_s > 0) o.retry_interval_s = f.retry_interval_s;
  dtx::MsgHooks hooks{HookFor(f, "after-prepare"), HookFor(f, "before-commit"),
                      HookFor(f, "after-commit")};
  dtx::Client client(f.dtx);
  TradeOutcome out = PlaceTrade(client, **conn, o, f.query_prepared, f.trade, f.gid, hooks);
  std::printf("msg-ebay-example trade: gid=%s xid=%s local=%s status=%s\n", out.gid.c_str(),
              f.trade.xid.c_str(), std::string(dtx::LocalOutcomeName(out.local)).c_str(),
              out.status.ToString().c_str());
  std::fflush(stdout);
  if (out.status.ok()) return 0;
  return out.local == dtx::LocalOutcome::kRolledBack ? 1 : 2;
}

// ---------------------------------------------------------------------------------------------------
// demo

struct DemoFlags {
  std::string dtx;
  std::string data_dir;
  std::string pg_url;
  int64_t timeout_to_fail_s = 3;
  int wait_s = 60;
};

const char* NameOf(int64_t user_id) {
  static const char* const kNames[] = {"?", "alice", "bob", "carol", "dave"};
  return user_id >= 1 && user_id <= 4 ? kNames[user_id] : "?";
}

struct Amounts {
  int64_t sold = 0;
  int64_t bought = 0;
};
std::map<int64_t, Amounts> UserAmounts(const json::object& state) {
  std::map<int64_t, Amounts> out;
  if (const json::value* users = state.if_contains("user"); users && users->is_array()) {
    for (const json::value& u : users->as_array()) {
      const json::object& o = u.as_object();
      out[dtx_examples::IntOf(o, "id")] = {dtx_examples::IntOf(o, "amt_sold"),
                                           dtx_examples::IntOf(o, "amt_bought")};
    }
  }
  return out;
}

int64_t Deliveries(const json::object& user_state, const std::string& gid) {
  auto rows = dtx_examples::RowsWhere(user_state, "delivery_log", "msg_id", gid + "/01");
  return rows.empty() ? 0 : dtx_examples::IntOf(rows[0], "deliveries");
}
bool Applied(const json::object& user_state, const std::string& gid) {
  return !dtx_examples::RowsWhere(user_state, "message_applied", "msg_id", gid + "/01").empty();
}
std::string GidOf(const std::string& body) {
  json::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) return {};
  const json::value* g = v.as_object().if_contains("gid");
  return g && g->is_string() ? std::string(g->as_string()) : std::string();
}

// The two services as child processes; their base URLs.
struct Services {
  std::string trade_db;
  std::string user_url;
  std::string trade_url;
};

dtx::Result<Services> StartServices(Children& children, const DemoFlags& f,
                                    const std::string& dir) {
  Services s;
  s.trade_db = "sqlite:" + dir + "/trade.db";
  const std::string user_db = f.pg_url.empty() ? "sqlite:" + dir + "/user.db" : f.pg_url;
  std::printf("== eBay BASE demo (seed 002) on dtx transactional messages\n");
  std::printf("  coordinator %s\n  trade service db %s\n  user service db %s\n", f.dtx.c_str(),
              s.trade_db.c_str(),
              f.pg_url.empty() ? user_db.c_str() : "PostgreSQL (schema msg_ebay_user)");
  std::vector<std::string> user_args = {"serve", "--service", "user", "--db", user_db};
  if (!f.pg_url.empty()) user_args.push_back("--reset");
  auto user_port = children.SpawnListening(user_args, kReadyPrefix);
  if (!user_port.ok()) return user_port.status();
  s.user_url = "http://127.0.0.1:" + std::to_string(*user_port);
  auto trade_port =
      children.SpawnListening({"serve", "--service", "trade", "--db", s.trade_db, "--dtx", f.dtx,
                               "--user-url", s.user_url, "--retry-interval", "1"},
                              kReadyPrefix);
  if (!trade_port.ok()) return trade_port.status();
  s.trade_url = "http://127.0.0.1:" + std::to_string(*trade_port);
  std::printf("  user service  %s\n  trade service %s\n", s.user_url.c_str(), s.trade_url.c_str());
  return s;
}

// A trade posted to the trade service (its local transaction + a 2-phase message), and the
// message's final state.
struct Posted {
  dtx::Result<dtx_examples::HttpAnswer> answer = dtx::Status::Internal("not posted");
  std::string gid;
  dtx::Result<dtx::TransactionInfo> final_state = dtx::Status::Internal("no gid");
};

Posted PostTrade(dtx::Client& client, const Services& svc, const Trade& t, int wait_s) {
  Posted p;
  p.answer = dtx_examples::HttpCall("POST", svc.trade_url + "/trade", EncodeTrade(t), 30s);
  std::printf("  POST /trade -> %s\n",
              p.answer.ok() ? (std::to_string(p.answer->status) + " " + p.answer->body).c_str()
                            : p.answer.status().ToString().c_str());
  p.gid = p.answer.ok() ? GidOf(p.answer->body) : "";
  if (!p.gid.empty()) p.final_state = client.WaitFinal(p.gid, std::chrono::seconds(wait_s));
  if (p.final_state.ok()) dtx_examples::PrintTransaction("message", *p.final_state);
  return p;
}

// (c), (d): a producer process (`trade`) that dies (SIGKILL) at `point`; the coordinator's
// check-back decides the message.
dtx::Result<dtx::TransactionInfo> CrashingTrade(Children& children, dtx::Client& client,
                                                const DemoFlags& f, const Services& svc,
                                                const std::string& label, const Trade& t,
                                                const std::string& gid, const std::string& point) {
  std::printf(
      "\n== %s trade %s: %s (%lld) sells to %s (%lld) for %lld; the producer process "
      "dies %s\n",
      label.c_str(), t.xid.c_str(), NameOf(t.seller_id), static_cast<long long>(t.seller_id),
      NameOf(t.buyer_id), static_cast<long long>(t.buyer_id), static_cast<long long>(t.amount),
      point.c_str());
  auto status = children.Run({"trade",
                              "--dtx",
                              f.dtx,
                              "--db",
                              svc.trade_db,
                              "--query-prepared",
                              svc.trade_url + "/trade/queryPrepared",
                              "--user-url",
                              svc.user_url,
                              "--gid",
                              gid,
                              "--xid",
                              t.xid,
                              "--seller",
                              std::to_string(t.seller_id),
                              "--buyer",
                              std::to_string(t.buyer_id),
                              "--amount",
                              std::to_string(t.amount),
                              "--die-at",
                              point,
                              "--timeout-to-fail",
                              std::to_string(f.timeout_to_fail_s)});
  if (status.ok()) {
    std::printf("  producer: %s\n", WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL
                                        ? "killed by SIGKILL"
                                        : "exited normally (unexpected)");
  }
  auto now = client.Query(gid);
  std::printf(
      "  coordinator right after: %s; the check-back comes after timeout_to_fail = %lld s\n",
      now.ok() ? now->status.c_str() : now.status().ToString().c_str(),
      static_cast<long long>(f.timeout_to_fail_s));
  auto fin = client.WaitFinal(gid, std::chrono::seconds(f.wait_s));
  if (fin.ok()) dtx_examples::PrintTransaction("message", *fin);
  return fin;
}

// What the four scenarios left behind.
struct Outcome {
  Posted a, b;
  std::string gid_c, gid_d;
  dtx::Result<dtx::TransactionInfo> final_c = dtx::Status::Internal("not run");
  dtx::Result<dtx::TransactionInfo> final_d = dtx::Status::Internal("not run");
};

void CheckOutcome(Checker& k, const Outcome& o, const json::object& trade_state,
                  const json::object& user_state) {
  auto has_trade = [&](const std::string& xid) {
    return dtx_examples::RowsWhere(trade_state, "transaction", "xid", xid).size();
  };
  const auto& fa = o.a.final_state;
  const auto& fb = o.b.final_state;
  k.Expect(o.a.answer.ok() && o.a.answer->status == 200,
           "(a) the trade was recorded and its message submitted");
  k.Expect(fa.ok() && fa->status == "succeed", "(a) the message was delivered (succeed)");
  k.Expect(Deliveries(user_state, o.a.gid) == 2,
           "(a) delivered twice (the first answer was lost): " +
               std::to_string(Deliveries(user_state, o.a.gid)));
  k.Expect(Applied(user_state, o.a.gid), "(a) message_applied has it");
  k.Expect(o.b.answer.ok() && o.b.answer->status == 409,
           "(b) the retried trade was refused (duplicate xid)");
  k.Expect(fb.ok() && fb->status == "failed", "(b) its message was aborted (failed)");
  k.Expect(Deliveries(user_state, o.b.gid) == 0, "(b) never delivered");
  k.Expect(has_trade("T1001") == 1, "T1001 recorded once");
  k.Expect(o.final_c.ok() && o.final_c->status == "succeed",
           "(c) died after its commit: the check-back found the commit, the message was delivered");
  k.Expect(has_trade("T1002") == 1 && Applied(user_state, o.gid_c),
           "(c) T1002 recorded and applied");
  k.Expect(o.final_d.ok() && o.final_d->status == "failed",
           "(d) died before its commit: the check-back rolled the message back");
  k.Expect(has_trade("T1003") == 0 && Deliveries(user_state, o.gid_d) == 0,
           "(d) T1003 not recorded, nothing delivered");
}

void CheckAmounts(Checker& k, const std::map<int64_t, Amounts>& amounts0,
                  const json::object& user_state) {
  auto amounts = UserAmounts(user_state);
  auto delta = [&](int64_t id) {
    return Amounts{amounts[id].sold - amounts0.at(id).sold,
                   amounts[id].bought - amounts0.at(id).bought};
  };
  const Amounts alice = delta(1), bob = delta(2), carol = delta(3), dave = delta(4);
  k.Expect(alice.sold == 30 && alice.bought == 45, "alice: sold +" + std::to_string(alice.sold) +
                                                       ", bought +" + std::to_string(alice.bought) +
                                                       " (T1001 once, T1002 once)");
  k.Expect(bob.sold == 0 && bob.bought == 30, "bob: bought +" + std::to_string(bob.bought));
  k.Expect(carol.sold == 45 && carol.bought == 0, "carol: sold +" + std::to_string(carol.sold));
  k.Expect(dave.sold == 0 && dave.bought == 0, "dave: unchanged (T1003 never happened)");
}

int RunDemo(const DemoFlags& f) {
  setvbuf(stdout, nullptr, _IOLBF, 0);  // interleave sensibly with the services' stderr logs
  auto dir = dtx_examples::DemoDataDir(f.data_dir, "msg-ebay", {"trade.db", "user.db"});
  Children children;
  auto svc = dir.ok() ? StartServices(children, f, *dir) : dir.status();
  auto before = svc.ok() ? dtx_examples::FetchJson(svc->user_url + "/state") : svc.status();
  if (!before.ok()) {
    std::fprintf(stderr, "demo: %s\n", before.status().ToString().c_str());
    return 1;
  }
  const auto amounts0 = UserAmounts(*before);
  const std::string run = std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                             std::chrono::system_clock::now().time_since_epoch())
                                             .count());
  dtx::Client client(f.dtx);
  Outcome o;
  // (a) A trade that commits; the first delivery's answer is lost, so the user service gets the
  // message twice and applies it once.
  std::printf(
      "\n== (a) trade T1001: alice (1) sells to bob (2) for 30; the user service loses "
      "its first answer\n");
  (void)dtx_examples::HttpCall("POST", svc->user_url + "/admin/lose-answers?count=1");
  const Trade a{"T1001", 1, 2, 30};
  o.a = PostTrade(client, *svc, a, f.wait_s);
  // (b) The same trade again (a client retry): the insert violates the primary key, the local
  // transaction fails, and the message is aborted: nothing is delivered.
  std::printf("\n== (b) trade T1001 again (a retried request): the local transaction fails\n");
  o.b = PostTrade(client, *svc, a, f.wait_s);
  o.gid_c = "ebay-c-" + run;
  o.final_c = CrashingTrade(children, client, f, *svc, "(c)", Trade{"T1002", 3, 1, 45}, o.gid_c,
                            "after-commit");
  o.gid_d = "ebay-d-" + run;
  o.final_d = CrashingTrade(children, client, f, *svc, "(d)", Trade{"T1003", 3, 4, 70}, o.gid_d,
                            "before-commit");

  std::printf("\n== databases\n");
  auto trade_state = dtx_examples::FetchJson(svc->trade_url + "/state");
  auto user_state = dtx_examples::FetchJson(svc->user_url + "/state");
  if (!trade_state.ok() || !user_state.ok()) {
    std::fprintf(stderr, "demo: cannot read the services' state\n");
    return 1;
  }
  dtx_examples::PrintState("trade service", *trade_state);
  dtx_examples::PrintState("user service", *user_state);
  std::printf("\n== checks\n");
  Checker k;
  CheckOutcome(k, o, *trade_state, *user_state);
  CheckAmounts(k, amounts0, *user_state);
  return dtx_examples::DemoVerdict(k.failures(),
                                   "every committed trade was applied exactly once, no other.");
}

}  // namespace
}  // namespace msg_ebay

int main(int argc, char** argv) {
  CLI::App app{"msg-ebay-example: the eBay BASE pattern (seed 002) on dtx transactional messages"};
  app.require_subcommand(1);

  msg_ebay::ServeFlags serve;
  CLI::App* serve_cmd = app.add_subcommand("serve", "run the trade or the user service");
  serve_cmd->add_option("--service", serve.service, "trade or user")
      ->required()
      ->check(CLI::IsMember({"trade", "user"}));
  serve_cmd->add_option("--db", serve.db, "sqlite:PATH or postgres://...")->required();
  dtx_examples::AddListenFlags(serve_cmd, serve.host, serve.port, serve.workers);
  serve_cmd->add_option("--dtx", serve.dtx, "trade: coordinator API URL");
  serve_cmd->add_option("--user-url", serve.user_url, "trade: base URL of the user service");
  serve_cmd->add_option("--timeout-to-fail", serve.timeout_to_fail_s,
                        "trade: timeout_to_fail of the messages, s (0 = coordinator default)");
  serve_cmd->add_option("--retry-interval", serve.retry_interval_s,
                        "trade: retry_interval of the messages, s (0 = coordinator default)");
  serve_cmd->add_option("--delay-ms", serve.delay_ms, "user: sleep after applying, ms");
  serve_cmd
      ->add_option("--lose-answer-rate", serve.lose_answer_rate,
                   "user: probability of answering 500 after applying (tests)")
      ->check(CLI::Range(0.0, 1.0));
  serve_cmd->add_option("--seed", serve.seed, "user: seed of --lose-answer-rate");
  serve_cmd->add_option("--pg-schema", serve.pg_schema, "user: PostgreSQL schema")
      ->capture_default_str();
  serve_cmd->add_flag("--reset", serve.reset, "user: drop the PostgreSQL schema first");

  msg_ebay::TradeFlags trade;
  CLI::App* trade_cmd = app.add_subcommand("trade", "place one trade in this process and exit");
  trade_cmd->add_option("--dtx", trade.dtx, "coordinator API URL")->required();
  trade_cmd->add_option("--db", trade.db, "the trade service's database")->required();
  trade_cmd->add_option("--query-prepared", trade.query_prepared, "check-back URL")->required();
  trade_cmd->add_option("--user-url", trade.user_url, "base URL of the user service")->required();
  trade_cmd->add_option("--gid", trade.gid, "message gid (default: a fresh one)");
  trade_cmd->add_option("--xid", trade.trade.xid, "trade id")->required();
  trade_cmd->add_option("--seller", trade.trade.seller_id, "seller's user id")->required();
  trade_cmd->add_option("--buyer", trade.trade.buyer_id, "buyer's user id")->required();
  trade_cmd->add_option("--amount", trade.trade.amount, "amount")->required();
  const std::vector<std::string> points = {"after-prepare", "before-commit", "after-commit"};
  trade_cmd->add_option("--pause-at", trade.pause_at, "print a line and wait for stdin there")
      ->check(CLI::IsMember(points));
  trade_cmd->add_option("--die-at", trade.die_at, "SIGKILL this process there")
      ->check(CLI::IsMember(points));
  trade_cmd->add_option("--timeout-to-fail", trade.timeout_to_fail_s, "msg timeout_to_fail, s");
  trade_cmd->add_option("--retry-interval", trade.retry_interval_s, "msg retry_interval, s");

  msg_ebay::DemoFlags demo;
  CLI::App* demo_cmd = app.add_subcommand("demo", "start both services and run the scenarios");
  demo_cmd
      ->add_option("--dtx", demo.dtx, "coordinator API URL, e.g. http://127.0.0.1:36789/api/dtmsvr")
      ->required();
  demo_cmd->add_option("--data-dir", demo.data_dir,
                       "directory of the SQLite databases (default: a new /tmp directory)");
  demo_cmd->add_option("--pg-url", demo.pg_url,
                       "PostgreSQL URL for the user service (default: SQLite)");
  demo_cmd
      ->add_option("--timeout-to-fail", demo.timeout_to_fail_s,
                   "timeout_to_fail of the crashing producers' messages, s")
      ->check(CLI::Range(1, 60))
      ->capture_default_str();
  demo_cmd->add_option("--wait", demo.wait_s, "how long to wait for each message, s")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  if (serve_cmd->parsed()) return msg_ebay::RunServe(serve);
  if (trade_cmd->parsed()) return msg_ebay::RunTrade(trade);
  return msg_ebay::RunDemo(demo);
}
