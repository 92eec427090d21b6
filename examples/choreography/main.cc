// choreography-example: seed 000 §2.1 (事件/编排) with real processes and no coordinator.
//   choreography-example demo [--broker redis|nats|kafka|amqp] [--broker-url URL] [--dtx PATH]
//                             [--dir DIR] [--keep]
//   choreography-example service --name order|payment|inventory|shipping --db PATH --broker URL
//                                [--stock widget=5 ...]
//   choreography-example place --db order.db --order o1 --item widget --qty 2 --amount 20
//   choreography-example timeline --dir DIR
// README.md beside this file walks through it.
#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <cstdio>

#include "dtx/inbox.h"
#include "examples/choreography/demo.h"
#include "examples/choreography/services.h"

namespace {

std::atomic<bool> g_stop{false};
extern "C" void OnSignal(int) { g_stop = true; }

struct ServiceFlags {
  std::string name, db, broker;
  std::vector<std::string> stock;
};

int Fail(const std::string& what, const dtx::Status& s) {
  std::fprintf(stderr, "choreography: %s: %s\n", what.c_str(), s.ToString().c_str());
  return 1;
}

int RunService(const ServiceFlags& f) {
  if (choreography::TopicsOf(f.name).empty()) {
    std::fprintf(stderr, "choreography: unknown service '%s'\n", f.name.c_str());
    return 2;
  }
  dtx::Result<sqlite3*> db = choreography::OpenDb(f.db);
  if (!db.ok()) return Fail("open", db.status());
  if (dtx::Status s = choreography::SetUp(db.value(), f.name, f.stock); !s.ok()) {
    return Fail("set up", s);
  }
  sqlite3* conn = db.value();
  auto inbox = dtx::Inbox::Open(
      conn, {.broker = f.broker, .consumer = f.name, .topics = choreography::TopicsOf(f.name)},
      [conn, name = f.name](const dtx::InboxMessage& m) {
        return choreography::Handle(conn, name, m);
      });
  if (!inbox.ok()) return Fail("inbox", inbox.status());
  if (dtx::Status s = inbox.value()->EnsureTables(); !s.ok()) return Fail("inbox tables", s);
  std::signal(SIGPIPE, SIG_IGN);  // a broker that dies mid-write is an error, not our death
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  std::printf("service %s ready: listening to", f.name.c_str());
  for (const std::string& t : choreography::TopicsOf(f.name)) std::printf(" %s", t.c_str());
  std::printf("\n");
  std::fflush(stdout);
  inbox.value()->Run(g_stop);
  const dtx::InboxCounters& c = inbox.value()->counters();
  std::fprintf(stderr, "service %s stopped: %lld applied, %lld duplicates, %lld dead-lettered\n",
               f.name.c_str(), static_cast<long long>(c.applied),
               static_cast<long long>(c.duplicates), static_cast<long long>(c.dead_lettered));
  inbox.value().reset();
  sqlite3_close(conn);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"seed 000 §2.1: order, payment, inventory and shipping choreographed by events"};
  app.require_subcommand(1);

  choreography::DemoOptions demo;
#ifdef DTX_BINARY_PATH
  demo.dtx = DTX_BINARY_PATH;
#endif
  CLI::App* d = app.add_subcommand("demo", "run everything and check every database");
  d->add_option("--broker", demo.broker, "redis, nats, kafka or amqp (started privately)")
      ->capture_default_str();
  d->add_option("--broker-url", demo.broker_url, "a running broker instead of a private one");
  d->add_option("--dtx", demo.dtx, "the dtx binary")->capture_default_str();
  d->add_option("--dir", demo.dir, "databases and logs (default: a fresh /tmp directory)");
  d->add_flag("--keep", demo.keep, "keep --dir afterwards");

  ServiceFlags svc;
  CLI::App* s = app.add_subcommand("service", "run one service until SIGTERM");
  s->add_option("--name", svc.name, "order, payment, inventory or shipping")->required();
  s->add_option("--db", svc.db, "its SQLite database")->required();
  s->add_option("--broker", svc.broker, "redis://, nats://, kafka:// or amqp://host:port")
      ->required();
  s->add_option("--stock", svc.stock, "inventory: item=qty to start with");

  std::string db, order, item;
  int64_t qty = 1, amount = 10;
  CLI::App* p =
      app.add_subcommand("place", "the order service's local transaction: place an order");
  p->add_option("--db", db, "order.db")->required();
  p->add_option("--order", order, "order id")->required();
  p->add_option("--item", item, "item")->required();
  p->add_option("--qty", qty, "quantity")->capture_default_str();
  p->add_option("--amount", amount, "amount to bill")->capture_default_str();

  std::string dir;
  CLI::App* t = app.add_subcommand("timeline", "print each order's timeline across the services");
  t->add_option("--dir", dir, "the directory with order.db, payment.db, ...")->required();

  CLI11_PARSE(app, argc, argv);
  if (d->parsed()) return choreography::RunDemo(demo);
  if (s->parsed()) return RunService(svc);
  if (t->parsed()) return choreography::PrintTimelines(dir);
  dtx::Result<sqlite3*> conn = choreography::OpenDb(db);
  if (!conn.ok()) return Fail("open", conn.status());
  dtx::Status placed = choreography::SetUp(conn.value(), "order", {});
  if (placed.ok()) placed = choreography::PlaceOrder(conn.value(), order, item, qty, amount);
  sqlite3_close(conn.value());
  if (!placed.ok()) return Fail("place", placed);
  std::printf("order %s placed: pending\n", order.c_str());
  return 0;
}
