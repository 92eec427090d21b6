// order-saga-example: the orchestrated order saga of seed 000 §2.2 (命令/协调) on dtx.
//
//   order-saga-example serve --service order|payment|inventory|shipping --port P --db PATH
//       runs one participant service (its own process and SQLite database) until SIGTERM/SIGINT;
//       prints "order-saga-example ready: service NAME listening on HOST:PORT" when it serves.
//   order-saga-example demo --dtx http://127.0.0.1:36789/api/dtmsvr [--data-dir DIR]
//       starts the four services as child processes, submits an order that succeeds and one that
//       runs out of stock (and is rolled back), prints every database, checks the outcome and exits
//       0 if it is the expected one, 1 if not. The children are stopped at exit.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "dtx/client.h"
#include "dtx/participant.h"
#include "dtx/saga.h"
#include "examples/common/demo_support.h"
#include "examples/common/serve_support.h"
#include "examples/order_saga/services.h"

namespace order_saga {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using dtx_examples::Checker;
using dtx_examples::Children;
using dtx_examples::FindRow;
using dtx_examples::IntOf;
using dtx_examples::PrintState;
using dtx_examples::PrintTransaction;
using dtx_examples::TextOf;

constexpr const char* kReadyPrefix = "order-saga-example ready: ";

// ---------------------------------------------------------------------------------------------------
// serve

struct ServeFlags {
  std::string service;
  std::string host = "127.0.0.1";
  int port = 0;
  std::string db;
  size_t workers = 4;
};

int RunServe(const ServeFlags& f) {
  const sigset_t signals = dtx_examples::BlockStopSignals();  // before any thread starts
  auto service = Service::Open(f.service, f.db);
  if (!service.ok()) {
    std::fprintf(stderr, "serve: %s\n", service.status().ToString().c_str());
    return 1;
  }
  dtx::ParticipantOptions options;
  options.host = f.host;
  options.port = static_cast<uint16_t>(f.port);
  options.worker_threads = f.workers;
  dtx::ParticipantServer server(options);
  (*service)->Register(server);
  return dtx_examples::ServeUntilStopped(server, signals, kReadyPrefix, f.service, f.host, f.port);
}

// ---------------------------------------------------------------------------------------------------
// demo: child processes and their state (GET /state), see examples/common/demo_support.h

// ---------------------------------------------------------------------------------------------------
// demo: the scenario

struct DemoFlags {
  std::string dtx;
  std::string data_dir;
  int64_t request_timeout_s = 3;
  int64_t retry_interval_s = 1;
  int wait_s = 60;
};

constexpr int64_t kPriceCents = 1500;  // of one widget

using Ports = std::map<std::string, uint16_t>;
using States = std::map<std::string, json::object>;

// The four services as child processes, each with its SQLite database in `data_dir`.
dtx::Result<Ports> StartServices(Children& children, const std::string& data_dir) {
  Ports ports;
  for (const std::string& name : ServiceNames()) {
    auto port = children.SpawnListening(
        {"serve", "--service", name, "--port", "0", "--db", data_dir + "/" + name + ".db"},
        kReadyPrefix, 10s);
    if (!port.ok()) return port.status();
    ports[name] = *port;
    std::printf("  service %-9s on 127.0.0.1:%u, db %s/%s.db\n", name.c_str(),
                static_cast<unsigned>(*port), data_dir.c_str(), name.c_str());
  }
  return ports;
}

// One order as a saga: order -> payment -> inventory -> shipping, each with its undo; submitted
// with wait_result, then its final state (printed).
struct OrderRun {
  std::string gid;
  dtx::Status submit;
  dtx::Result<dtx::TransactionInfo> final_state = dtx::Status::Internal("no gid");
};

OrderRun PlaceOrder(dtx::Client& client, const Ports& ports, const DemoFlags& f,
                    const OrderRequest& order) {
  dtx::Saga saga(client, "");
  const std::string payload = EncodeOrder(order);
  for (const std::string& name : ServiceNames()) {
    const std::string base = "http://127.0.0.1:" + std::to_string(ports.at(name));
    const Endpoints e = EndpointsOf(name);
    saga.Add(base + e.action, base + e.compensate, payload);
  }
  saga.SetWaitResult(true)
      .SetRequestTimeout(f.request_timeout_s)
      .SetRetryInterval(f.retry_interval_s);
  OrderRun run;
  run.submit = saga.Submit();
  run.gid = saga.gid();
  std::printf("  submit (wait_result): %s\n", run.submit.ToString().c_str());
  if (!run.gid.empty()) run.final_state = client.WaitFinal(run.gid, std::chrono::seconds(f.wait_s));
  if (run.final_state.ok()) PrintTransaction("transaction", *run.final_state);
  return run;
}

void CheckOutcome(Checker& c, const States& before, const States& state, const OrderRun& a,
                  const OrderRun& b, const OrderRequest& good) {
  const auto& fa = a.final_state;
  const auto& fb = b.final_state;
  c.Expect(a.submit.ok(), "(a) submit with wait_result answered SUCCESS");
  c.Expect(fa.ok() && fa->status == "succeed", "(a) the saga succeeded");
  c.Expect(!b.submit.ok(), "(b) submit with wait_result did not answer SUCCESS");
  c.Expect(fb.ok() && fb->status == "failed", "(b) the saga failed (rolled back)");
  c.Expect(fb.ok() && fb->rollback_reason.find("out of stock") != std::string::npos,
           "(b) rollback_reason names the inventory failure");
  if (fb.ok()) {
    std::string statuses;
    for (const auto& br : fb->branches) statuses += br.status + " ";
    c.Expect(statuses == "succeed succeed succeed succeed succeed failed prepared prepared ",
             "(b) branches [c01 a01 c02 a02 c03 a03 c04 a04] = " + statuses);
  }
  const json::object& order = state.at("order");
  const json::object& payment = state.at("payment");
  const json::object& inventory = state.at("inventory");
  const json::object& shipping = state.at("shipping");
  c.Expect(TextOf(FindRow(order, "orders", "order_id", a.gid), "status") == "pending",
           "(a) order row created 'pending'; completion is read from the coordinator (succeed)");
  c.Expect(TextOf(FindRow(order, "orders", "order_id", b.gid), "status") == "failed",
           "(b) order marked 'failed' by its compensation");
  const int64_t balance0 =
      IntOf(FindRow(before.at("payment"), "accounts", "user", "alice"), "balance");
  const int64_t balance = IntOf(FindRow(payment, "accounts", "user", "alice"), "balance");
  c.Expect(balance == balance0 - good.amount, "alice's balance " + std::to_string(balance0) +
                                                  " -> " + std::to_string(balance) +
                                                  " (only order (a) charged)");
  c.Expect(TextOf(FindRow(payment, "payments", "gid", b.gid), "status") == "refunded",
           "(b) payment refunded");
  const int64_t stock0 =
      IntOf(FindRow(before.at("inventory"), "stock", "item", "widget"), "available");
  const int64_t stock = IntOf(FindRow(inventory, "stock", "item", "widget"), "available");
  c.Expect(stock == stock0 - good.quantity, "widget stock " + std::to_string(stock0) + " -> " +
                                                std::to_string(stock) +
                                                " (only order (a) reserved)");
  c.Expect(FindRow(inventory, "reservations", "gid", b.gid) == nullptr,
           "(b) nothing reserved (out of stock; its compensation was a null compensation)");
  c.Expect(TextOf(FindRow(shipping, "shipments", "gid", a.gid), "status") == "created",
           "(a) shipment created");
  c.Expect(FindRow(shipping, "shipments", "gid", b.gid) == nullptr, "(b) shipping never called");
}

int RunDemo(const DemoFlags& f) {
  auto dir = dtx_examples::DemoDataDir(f.data_dir, "order-saga");
  if (dir.ok()) {
    std::printf("== order saga demo (seed 000 §2.2), coordinator %s, data in %s\n", f.dtx.c_str(),
                dir->c_str());
  }
  Children children;
  auto ports = dir.ok() ? StartServices(children, *dir) : dir.status();
  auto before = ports.ok() ? dtx_examples::FetchStates(*ports) : ports.status();
  if (!before.ok()) {
    std::fprintf(stderr, "demo: %s\n", before.status().ToString().c_str());
    return 1;
  }
  dtx::Client client(f.dtx);

  // (a) 2 widgets: every step succeeds.
  const OrderRequest good{"alice", "widget", 2, 2 * kPriceCents, "1 Harbour Road"};
  std::printf("\n== (a) alice orders 2 widgets: %s\n", EncodeOrder(good).c_str());
  OrderRun a = PlaceOrder(client, *ports, f, good);
  if (a.gid.empty()) {
    std::fprintf(stderr, "demo: no gid (is the coordinator at %s running?)\n", f.dtx.c_str());
    return 1;
  }
  // (b) more widgets than in stock: inventory answers FAILURE, the saga compensates payment and
  // order.
  const int64_t stock0 =
      IntOf(FindRow(before->at("inventory"), "stock", "item", "widget"), "available");
  const int64_t too_many = (stock0 < 0 ? 10 : stock0) + 40;
  const OrderRequest bad{"alice", "widget", too_many, too_many * kPriceCents, "1 Harbour Road"};
  std::printf("\n== (b) alice orders %lld widgets (more than in stock): %s\n",
              static_cast<long long>(too_many), EncodeOrder(bad).c_str());
  OrderRun b = PlaceOrder(client, *ports, f, bad);

  std::printf("\n== databases\n");
  auto state = dtx_examples::FetchStates(*ports);
  if (!state.ok()) {
    std::fprintf(stderr, "demo: %s\n", state.status().ToString().c_str());
    return 1;
  }
  for (const std::string& name : ServiceNames()) PrintState(name, state->at(name));
  std::printf("\n== checks\n");
  Checker c;
  CheckOutcome(c, *before, *state, a, b, good);
  return dtx_examples::DemoVerdict(c.failures(),
                                   "the first order went through, the second was rolled back.");
}

}  // namespace
}  // namespace order_saga

int main(int argc, char** argv) {
  CLI::App app{"order-saga-example: the orchestrated order saga (seed 000 §2.2) on dtx"};
  app.require_subcommand(1);

  order_saga::ServeFlags serve;
  CLI::App* serve_cmd = app.add_subcommand("serve", "run one participant service");
  serve_cmd->add_option("--service", serve.service, "order, payment, inventory or shipping")
      ->required()
      ->check(CLI::IsMember(order_saga::ServiceNames()));
  serve_cmd->add_option("--db", serve.db, "SQLite database file of this service")->required();
  dtx_examples::AddListenFlags(serve_cmd, serve.host, serve.port, serve.workers);

  order_saga::DemoFlags demo;
  CLI::App* demo_cmd = app.add_subcommand("demo", "start the four services and run two orders");
  dtx_examples::AddDemoFlags(demo_cmd, demo.dtx, demo.data_dir, demo.wait_s,
                             "how long to wait for each saga to finish, seconds");
  demo_cmd
      ->add_option("--request-timeout", demo.request_timeout_s,
                   "request_timeout of the sagas, seconds")
      ->check(CLI::Range(1, 60))
      ->capture_default_str();
  demo_cmd
      ->add_option("--retry-interval", demo.retry_interval_s,
                   "retry_interval of the sagas, seconds")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  if (serve_cmd->parsed()) return order_saga::RunServe(serve);
  return order_saga::RunDemo(demo);
}
