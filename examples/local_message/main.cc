// local-message-example: seed 000 §1.1 (本地消息表, the local message table) on dtx messages.
//
//   local-message-example serve --service order|stock --db URL --dtx URL --peer-url URL [--port P]
//       runs system A (order) or B (stock) until SIGTERM/SIGINT; prints
//       "local-message-example ready: service NAME listening on HOST:PORT" when it serves.
//   local-message-example demo --dtx URL [--data-dir DIR]
//       starts both systems as child processes, places three orders (reserved; out of stock ->
//       compensation message back to A; invalid -> no message), checks the outcome, exits 0 if it
//       is the expected one.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "dtx/client.h"
#include "dtx/participant.h"
#include "examples/common/demo_support.h"
#include "examples/common/serve_support.h"
#include "examples/local_message/services.h"

namespace local_message {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using dtx_examples::Checker;
using dtx_examples::Children;

constexpr const char* kReadyPrefix = "local-message-example ready: ";

struct ServeFlags {
  std::string service;
  std::string host = "127.0.0.1";
  int port = 0;
  std::string db;
  std::string dtx;
  std::string peer_url;
  int64_t retry_interval_s = 0;
  size_t workers = 8;
};

int RunServe(const ServeFlags& f) {
  const sigset_t signals = dtx_examples::BlockStopSignals();  // before any thread starts

  dtx::ParticipantOptions options;
  options.host = f.host;
  options.port = static_cast<uint16_t>(f.port);
  options.worker_threads = f.workers;
  dtx::ParticipantServer server(options);
  const Endpoints endpoints{f.dtx, f.peer_url, f.retry_interval_s};
  std::unique_ptr<OrderService> order;
  std::unique_ptr<StockService> stock;
  if (f.service == "order") {
    auto s = OrderService::Open(f.db, endpoints);
    if (!s.ok()) {
      std::fprintf(stderr, "serve: %s\n", s.status().ToString().c_str());
      return 1;
    }
    order = std::move(*s);
    order->Register(server);
  } else {
    auto s = StockService::Open(f.db, endpoints);
    if (!s.ok()) {
      std::fprintf(stderr, "serve: %s\n", s.status().ToString().c_str());
      return 1;
    }
    stock = std::move(*s);
    stock->Register(server);
  }
  return dtx_examples::ServeUntilStopped(server, signals, kReadyPrefix, f.service, f.host, f.port,
                                         [&] {
                                           if (order) order->SetSelfUrl(server.base_url());
                                           if (stock) stock->SetSelfUrl(server.base_url());
                                         });
}

// ---------------------------------------------------------------------------------------------------
// demo

struct DemoFlags {
  std::string dtx;
  std::string data_dir;
  int wait_s = 60;
};

std::string Describe(const dtx::Result<dtx_examples::HttpAnswer>& a) {
  return a.ok() ? std::to_string(a->status) + " " + a->body : a.status().ToString();
}
std::string GidOf(const dtx::Result<dtx_examples::HttpAnswer>& a) {
  if (!a.ok()) return {};
  json::error_code ec;
  json::value v = json::parse(a->body, ec);
  if (ec || !v.is_object()) return {};
  const json::value* g = v.as_object().if_contains("gid");
  return g && g->is_string() ? std::string(g->as_string()) : std::string();
}
std::string Text(const json::object& row, const char* column) {
  const json::value* v = row.if_contains(column);
  return v && v->is_string() ? std::string(v->as_string()) : std::string("<none>");
}
void PrintTransaction(const char* what, const dtx::Result<dtx::TransactionInfo>& t) {
  if (!t.ok()) {
    std::printf("  %s: %s\n", what, t.status().ToString().c_str());
    return;
  }
  dtx_examples::PrintTransaction(what, *t);
}

// B first: A sends its messages to B. B needs no address of A: every message carries reply_to.
struct Systems {
  std::string order_url;
  std::string stock_url;
};

dtx::Result<Systems> StartSystems(Children& children, const DemoFlags& f, const std::string& dir) {
  Systems s;
  auto stock_port =
      children.SpawnListening({"serve", "--service", "stock", "--db", "sqlite:" + dir + "/stock.db",
                               "--dtx", f.dtx, "--retry-interval", "1"},
                              kReadyPrefix);
  if (!stock_port.ok()) return stock_port.status();
  s.stock_url = "http://127.0.0.1:" + std::to_string(*stock_port);
  auto order_port = children.SpawnListening(
      {"serve", "--service", "order", "--db", "sqlite:" + dir + "/orders.db", "--dtx", f.dtx,
       "--peer-url", s.stock_url, "--retry-interval", "1"},
      kReadyPrefix);
  if (!order_port.ok()) return order_port.status();
  s.order_url = "http://127.0.0.1:" + std::to_string(*order_port);
  std::printf("  system A (orders) %s, db %s/orders.db\n  system B (stock)  %s, db %s/stock.db\n",
              s.order_url.c_str(), dir.c_str(), s.stock_url.c_str(), dir.c_str());
  return s;
}

// An order placed at A (its row and its message in one local transaction), and the message's end.
struct Placed {
  dtx::Result<dtx_examples::HttpAnswer> answer = dtx::Status::Internal("not placed");
  std::string gid;
  dtx::Result<dtx::TransactionInfo> message = dtx::Status::Internal("no gid");
};

Placed PlaceOrder(dtx::Client& client, const Systems& sys, const Order& o, int wait_s) {
  Placed p;
  p.answer = dtx_examples::HttpCall("POST", sys.order_url + "/order", EncodeOrder(o), 30s);
  std::printf("  A: POST /order -> %s\n", Describe(p.answer).c_str());
  p.gid = GidOf(p.answer);
  if (!p.gid.empty()) p.message = client.WaitFinal(p.gid, std::chrono::seconds(wait_s));
  PrintTransaction("message A->B", p.message);
  return p;
}

// The compensation message B sent back to A for the rejected message `gid`.
dtx::Result<dtx::TransactionInfo> CompensationOf(dtx::Client& client, const Systems& sys,
                                                 const std::string& gid, int wait_s,
                                                 std::string* comp_gid) {
  if (auto b = dtx_examples::FetchJson(sys.stock_url + "/state"); b.ok()) {
    auto rows = dtx_examples::RowsWhere(*b, "message_applied", "msg_id", gid + "/01");
    if (!rows.empty()) *comp_gid = Text(rows[0], "compensation_gid");
  }
  auto mc = comp_gid->empty() || *comp_gid == "<none>"
                ? dtx::Result<dtx::TransactionInfo>(dtx::Status::Internal("no compensation"))
                : client.WaitFinal(*comp_gid, std::chrono::seconds(wait_s));
  PrintTransaction("compensation B->A", mc);
  return mc;
}

void CheckOutcome(Checker& k, const json::object& a, const json::object& b, const Placed& p1,
                  const Placed& p2, const Placed& p3, const dtx::Result<dtx::TransactionInfo>& mc,
                  const std::string& comp_gid) {
  auto order_row = [&](const std::string& id) {
    auto rows = dtx_examples::RowsWhere(a, "orders", "order_id", id);
    return rows.empty() ? json::object() : rows[0];
  };
  auto b_row = [&](const std::string& gid) {
    auto rows = dtx_examples::RowsWhere(b, "message_applied", "msg_id", gid + "/01");
    return rows.empty() ? json::object() : rows[0];
  };
  auto done = [](const Placed& p, int http, const char* status) {
    return p.answer.ok() && p.answer->status == http && p.message.ok() &&
           p.message->status == status;
  };
  auto widgets = dtx_examples::RowsWhere(b, "stock", "item", "widget");
  k.Expect(done(p1, 200, "succeed"), "1. A committed o1 with its message; delivered (succeed)");
  k.Expect(Text(order_row("o1"), "status") == "placed", "1. o1 is placed");
  k.Expect(!dtx_examples::RowsWhere(b, "reservations", "order_id", "o1").empty() &&
               Text(b_row(p1.gid), "outcome") == "reserved",
           "1. B took the message once and reserved 2 widgets");
  k.Expect(!widgets.empty() && Text(widgets[0], "available") == "3", "widget stock 5 -> 3");
  k.Expect(done(p2, 200, "succeed"), "2. A committed o2 with its message; delivered (B took it)");
  k.Expect(Text(b_row(p2.gid), "outcome") == "rejected" && mc.ok() && mc->status == "succeed",
           "2. B recorded the rejection and its compensation message was delivered");
  k.Expect(Text(order_row("o2"), "status") == "cancelled" &&
               Text(order_row("o2"), "reason").find("out of stock") != std::string::npos,
           "2. A cancelled o2: " + Text(order_row("o2"), "reason"));
  k.Expect(dtx_examples::RowsWhere(b, "reservations", "order_id", "o2").empty(),
           "2. nothing reserved for o2");
  k.Expect(!dtx_examples::RowsWhere(a, "message_applied", "msg_id", comp_gid + "/01").empty(),
           "2. A applied the compensation once (its message_applied)");
  k.Expect(done(p3, 409, "failed"), "3. A's local transaction failed: message aborted");
  k.Expect(order_row("o3").empty() && b_row(p3.gid).empty(), "3. no o3 in A, nothing reached B");
}

int RunDemo(const DemoFlags& f) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  auto dir = dtx_examples::DemoDataDir(f.data_dir, "local-message", {"orders.db", "stock.db"});
  if (dir.ok()) {
    std::printf("== local message table demo (seed 000 §1.1), coordinator %s, data in %s\n",
                f.dtx.c_str(), dir->c_str());
  }
  Children children;
  auto sys = dir.ok() ? StartSystems(children, f, *dir) : dir.status();
  if (!sys.ok()) {
    std::fprintf(stderr, "demo: %s\n", sys.status().ToString().c_str());
    return 1;
  }
  dtx::Client client(f.dtx);

  // 1. Enough stock: A commits the order and its message; B takes the message and reserves.
  std::printf("\n== 1. order o1: 2 widgets (5 in stock)\n");
  Placed p1 = PlaceOrder(client, *sys, {"o1", "widget", 2, ""}, f.wait_s);
  // 2. Not enough stock: B cannot apply the message (a business failure, not a temporary error),
  // records it as rejected and sends a compensation message back to A, which cancels the order.
  std::printf("\n== 2. order o2: 10 widgets (3 left): B rejects it and compensates A\n");
  Placed p2 = PlaceOrder(client, *sys, {"o2", "widget", 10, ""}, f.wait_s);
  std::string comp_gid;
  auto mc = CompensationOf(client, *sys, p2.gid, f.wait_s, &comp_gid);
  // 3. A's own local transaction fails (qty 0 violates a CHECK): no message at all.
  std::printf("\n== 3. order o3: 0 widgets: A's local transaction fails\n");
  Placed p3 = PlaceOrder(client, *sys, {"o3", "widget", 0, ""}, f.wait_s);

  std::printf("\n== databases\n");
  auto a = dtx_examples::FetchJson(sys->order_url + "/state");
  auto b = dtx_examples::FetchJson(sys->stock_url + "/state");
  if (!a.ok() || !b.ok()) {
    std::fprintf(stderr, "demo: cannot read the systems' state\n");
    return 1;
  }
  dtx_examples::PrintState("system A (orders)", *a);
  dtx_examples::PrintState("system B (stock)", *b);
  std::printf("\n== checks\n");
  Checker k;
  CheckOutcome(k, *a, *b, p1, p2, p3, mc, comp_gid);
  return dtx_examples::DemoVerdict(k.failures(),
                                   "the order and its message committed together; B's business "
                                   "failure came back to A as a compensation message.");
}

}  // namespace
}  // namespace local_message

int main(int argc, char** argv) {
  CLI::App app{"local-message-example: the local message table (seed 000 §1.1) on dtx"};
  app.require_subcommand(1);

  local_message::ServeFlags serve;
  CLI::App* serve_cmd = app.add_subcommand("serve", "run system A (order) or B (stock)");
  serve_cmd->add_option("--service", serve.service, "order (A) or stock (B)")
      ->required()
      ->check(CLI::IsMember({"order", "stock"}));
  serve_cmd->add_option("--db", serve.db, "sqlite:PATH or postgres://...")->required();
  serve_cmd->add_option("--dtx", serve.dtx, "coordinator API URL")->required();
  serve_cmd->add_option("--peer-url", serve.peer_url, "order: base URL of the stock service");
  serve_cmd->add_option("--retry-interval", serve.retry_interval_s,
                        "retry_interval of the messages sent, s (0 = coordinator default)");
  dtx_examples::AddListenFlags(serve_cmd, serve.host, serve.port, serve.workers);

  local_message::DemoFlags demo;
  CLI::App* demo_cmd = app.add_subcommand("demo", "start both systems and place three orders");
  demo_cmd
      ->add_option("--dtx", demo.dtx, "coordinator API URL, e.g. http://127.0.0.1:36789/api/dtmsvr")
      ->required();
  demo_cmd->add_option("--data-dir", demo.data_dir,
                       "directory of the SQLite databases (default: a new /tmp directory)");
  demo_cmd->add_option("--wait", demo.wait_s, "how long to wait for each message, s")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  if (serve_cmd->parsed()) {
    if (serve.service == "order" && serve.peer_url.empty()) {
      std::fprintf(stderr, "serve: the order service needs --peer-url\n");
      return 2;
    }
    return local_message::RunServe(serve);
  }
  return local_message::RunDemo(demo);
}
