// The demo and the timeline printer: see demo.h.
#include "examples/choreography/demo.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "brokers/broker_process.h"
#include "examples/choreography/services.h"
#include "examples/common/child_process.h"

namespace choreography {
namespace {

using namespace std::chrono_literals;
using dtx_examples::Process;

struct Check {
  int failures = 0;
  void Expect(bool ok, const std::string& what) {
    std::printf("  [%s] %s\n", ok ? "ok" : "WRONG", what.c_str());
    if (!ok) ++failures;
  }
};

// Every service's database, opened for the checks.
struct Dbs {
  std::map<std::string, sqlite3*> db;
  explicit Dbs(const std::string& dir) {
    for (const std::string& s : kServices) {
      dtx::Result<sqlite3*> d = OpenDb(dir + "/" + s + ".db");
      db[s] = d.ok() ? d.value() : nullptr;
    }
  }
  ~Dbs() {
    for (auto& [name, d] : db) sqlite3_close(d);
  }
  std::string Q(const std::string& service, const std::string& sql) {
    return db[service] != nullptr ? QueryText(db[service], sql) : "";
  }
};

struct PlannedOrder {
  const char* id;
  const char* item;
  int64_t qty;
  int64_t amount;
  const char* outcome;  // concluded | failed
};
constexpr PlannedOrder kOrders[] = {{"o1", "widget", 2, 20, "concluded"},
                                    {"o2", "widget", 10, 100, "failed"},
                                    {"o3", "widget", 3, 30, "concluded"}};

// Events each service emitted / applied: order 3 / 5, payment 3 / 6, inventory 3 / 3,
// shipping 2 / 3 (a service applies, and may ignore, every event of the topics it listens to).
const std::map<std::string, std::pair<int, int>> kEventCounts = {
    {"order", {3, 5}}, {"payment", {3, 6}}, {"inventory", {3, 3}}, {"shipping", {2, 3}}};

// True when every order reached its end in every service that takes part, and every service
// applied every event it listens to (an event a service ignores, e.g. payment's ORDER_PREPARED, may
// come after the order's end).
bool Settled(Dbs& dbs) {
  for (const PlannedOrder& o : kOrders) {
    const std::string id = o.id;
    if (dbs.Q("order", "select status from orders where order_id = '" + id + "'") != o.outcome) {
      return false;
    }
    const std::string pay = o.outcome == std::string("failed") ? "refunded" : "billed";
    if (dbs.Q("payment", "select status from payments where order_id = '" + id + "'") != pay) {
      return false;
    }
  }
  for (const std::string& s : kServices) {
    if (dbs.Q(s, "select count(*) from dtx_outbox where state = 0") != "0") return false;
    if (dbs.Q(s, "select count(*) from message_applied") !=
        std::to_string(kEventCounts.at(s).second)) {
      return false;
    }
  }
  return true;
}

void CheckDatabases(Dbs& dbs, Check& c) {
  std::printf("== every service's database\n");
  for (const PlannedOrder& o : kOrders) {
    const std::string id = o.id;
    const bool ok = o.outcome == std::string("concluded");
    c.Expect(dbs.Q("order", "select status from orders where order_id='" + id + "'") == o.outcome,
             "order: " + id + " " + o.outcome);
    c.Expect(dbs.Q("payment",
                   "select status || ' ' || amount from payments where order_id='" + id + "'") ==
                 std::string(ok ? "billed " : "refunded ") + std::to_string(o.amount),
             "payment: " + id + (ok ? " billed " : " billed, then refunded ") +
                 std::to_string(o.amount));
    c.Expect(dbs.Q("inventory", "select status from reservations where order_id='" + id + "'") ==
                 (ok ? "reserved" : "out_of_stock"),
             "inventory: " + id + (ok ? " reserved" : " out of stock"));
    c.Expect(dbs.Q("shipping", "select count(*) from shipments where order_id='" + id + "'") ==
                 (ok ? "1" : "0"),
             "shipping: " + id + (ok ? " delivered" : " never shipped"));
  }
  c.Expect(dbs.Q("inventory", "select qty from stock where item='widget'") == "0",
           "inventory: widget stock 5 - 2 - 3 = 0");
  for (const auto& [s, n] : kEventCounts) {
    c.Expect(dbs.Q(s, "select count(*) || '/' || sum(state = 1) from dtx_outbox") ==
                 std::to_string(n.first) + "/" + std::to_string(n.first),
             s + ": " + std::to_string(n.first) + " events in its outbox, all published");
    c.Expect(dbs.Q(s, "select count(*) from message_applied where consumer='" + s + "'") ==
                 std::to_string(n.second),
             s + ": " + std::to_string(n.second) + " events applied once (message_applied)");
    c.Expect(dbs.Q(s, "select count(*) from dtx_inbox_dead") == "0", s + ": no dead letters");
  }
}

}  // namespace

int PrintTimelines(const std::string& dir) {
  std::vector<TimelineEntry> all;
  for (const std::string& s : kServices) {
    dtx::Result<sqlite3*> db = OpenDb(dir + "/" + s + ".db");
    if (!db.ok()) continue;
    dtx::Result<std::vector<TimelineEntry>> t = ReadTimeline(db.value());
    if (t.ok()) all.insert(all.end(), t.value().begin(), t.value().end());
    sqlite3_close(db.value());
  }
  std::stable_sort(all.begin(), all.end(), [](const TimelineEntry& a, const TimelineEntry& b) {
    return std::tie(a.correlation_id, a.at_ms) < std::tie(b.correlation_id, b.at_ms);
  });
  std::string current;
  int64_t start = 0;
  for (const TimelineEntry& e : all) {
    if (e.correlation_id != current) {
      current = e.correlation_id;
      start = e.at_ms;
      std::printf("== timeline of correlation id %s\n", current.c_str());
    }
    std::printf("  %+6lld ms  %-10s %s\n", static_cast<long long>(e.at_ms - start),
                e.service.c_str(), e.what.c_str());
  }
  return all.empty() ? 1 : 0;
}

int RunDemo(const DemoOptions& o) {
  const std::string dir =
      !o.dir.empty() ? o.dir : "/tmp/dtx-choreography-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::unique_ptr<dtx::brokers::testing::BrokerProcess> broker;
  std::string url = o.broker_url;
  if (url.empty()) {
    if (o.broker != "redis" && o.broker != "nats" && o.broker != "kafka" && o.broker != "amqp") {
      std::fprintf(stderr, "choreography: --broker must be redis, nats, kafka or amqp\n");
      return 2;
    }
    if (!dtx::brokers::testing::BrokerAvailable(o.broker)) {  // a developer's box without it
      std::fprintf(stderr, "choreography: the %s broker is not installed%s\n", o.broker.c_str(),
                   std::getenv("CI") != nullptr ? "" : " (skipped)");
      return std::getenv("CI") != nullptr ? 1 : 77;  // CI installs every broker
    }
    broker = std::make_unique<dtx::brokers::testing::BrokerProcess>(o.broker, dir + "/broker");
    if (!broker->Start()) {
      std::fprintf(stderr, "choreography: %s did not start (log %s)\n", o.broker.c_str(),
                   broker->log_path().c_str());
      return 1;
    }
    url = broker->Url();
  }
  std::printf("== broker %s; four services, four dtx relays, no coordinator\n", url.c_str());
  const std::string self = std::filesystem::read_symlink("/proc/self/exe");
  std::vector<std::unique_ptr<Process>> procs;
  for (const std::string& s : kServices) {
    const std::string db = dir + "/" + s + ".db";
    std::vector<std::string> args = {self, "service", "--name", s, "--db", db, "--broker", url};
    if (s == "inventory") args.insert(args.end(), {"--stock", "widget=5"});
    procs.push_back(std::make_unique<Process>());
    if (!procs.back()->Start(args, dir + "/" + s + ".log", "service " + s + " ready")) {
      std::fprintf(stderr, "choreography: service %s did not start (log %s/%s.log)\n", s.c_str(),
                   dir.c_str(), s.c_str());
      return 1;
    }
    procs.push_back(std::make_unique<Process>());
    if (!procs.back()->Start({o.dtx, "relay", "--source", "sqlite:" + db, "--sink", url,
                              "--poll-interval", "0.05", "--log-level", "warn"},
                             dir + "/" + s + "-relay.log", "dtx relay ready")) {
      std::fprintf(stderr, "choreography: dtx relay for %s did not start (log %s/%s-relay.log)\n",
                   s.c_str(), dir.c_str(), s.c_str());
      return 1;
    }
    std::printf("  %-9s service + dtx relay running (%s)\n", s.c_str(), db.c_str());
  }
  {
    dtx::Result<sqlite3*> db = OpenDb(dir + "/order.db");
    for (const PlannedOrder& p : kOrders) {
      dtx::Status s = db.ok() ? PlaceOrder(db.value(), p.id, p.item, p.qty, p.amount) : db.status();
      std::printf("== place %s: %lld %s for %lld -> %s\n", p.id, static_cast<long long>(p.qty),
                  p.item, static_cast<long long>(p.amount),
                  s.ok() ? "pending" : s.ToString().c_str());
    }
    if (db.ok()) sqlite3_close(db.value());
  }
  Dbs dbs(dir);
  bool settled = false;
  for (auto until = std::chrono::steady_clock::now() + 60s;
       !settled && std::chrono::steady_clock::now() < until;) {
    std::this_thread::sleep_for(100ms);
    settled = Settled(dbs);
  }
  PrintTimelines(dir);
  Check c;
  c.Expect(settled, "every order reached its end within 60 s");
  CheckDatabases(dbs, c);
  procs.clear();  // SIGTERM: services and relays stop cleanly
  std::printf("== %s (%d wrong)\n", c.failures == 0 ? "all checks passed" : "CHECKS FAILED",
              c.failures);
  if (!o.keep) std::filesystem::remove_all(dir);
  return c.failures == 0 ? 0 : 1;
}

}  // namespace choreography
