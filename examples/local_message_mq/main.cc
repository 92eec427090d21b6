// local-message-mq-example: seed 000 §1.1 (本地消息表) on a message broker, no coordinator.
//   local-message-mq-example demo [--broker redis|nats|kafka|amqp] [--dtx PATH] [--dir DIR]
//   [--keep] local-message-mq-example system --name a|b --db PATH --broker URL [--stock widget=5
//   ...]
// README.md beside this file walks through it.
#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>

#include "brokers/broker_process.h"
#include "examples/common/child_process.h"
#include "examples/local_message_mq/systems.h"

namespace {

using namespace std::chrono_literals;
namespace lm = local_message_mq;

std::atomic<bool> g_stop{false};
extern "C" void OnSignal(int) { g_stop = true; }

int Fail(const std::string& what, const dtx::Status& s) {
  std::fprintf(stderr, "local-message-mq: %s: %s\n", what.c_str(), s.ToString().c_str());
  return 1;
}

// One system: its inbox on its topic until SIGTERM (A: order-replies; B: stock-requests).
int RunSystem(const std::string& name, const std::string& path, const std::string& broker,
              const std::vector<std::string>& stock) {
  if (lm::TopicOf(name).empty()) {
    std::fprintf(stderr, "local-message-mq: --name must be a or b\n");
    return 2;
  }
  dtx::Result<sqlite3*> db = lm::OpenDb(path);
  if (!db.ok()) return Fail("open", db.status());
  if (dtx::Status s = lm::SetUp(db.value(), name, stock); !s.ok()) return Fail("set up", s);
  sqlite3* conn = db.value();
  auto inbox = dtx::Inbox::Open(
      conn, {.broker = broker, .consumer = name, .topics = {lm::TopicOf(name)}},
      [conn, name](const dtx::InboxMessage& m) { return lm::Handle(conn, name, m); });
  if (!inbox.ok()) return Fail("inbox", inbox.status());
  if (dtx::Status s = inbox.value()->EnsureTables(); !s.ok()) return Fail("inbox tables", s);
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  std::printf("system %s ready: consuming %s\n", name.c_str(), lm::TopicOf(name).c_str());
  std::fflush(stdout);
  // Inbox::Run would do; Poll in a loop here so that the counters are logged as they change (the
  // demo watches for the duplicate).
  const dtx::InboxCounters& c = inbox.value()->counters();
  while (!g_stop.load()) {
    dtx::Result<size_t> r = inbox.value()->Poll(200ms);
    if (!r.ok()) {
      std::fprintf(stderr, "system %s: %s; retrying\n", name.c_str(), r.status().message().c_str());
      std::this_thread::sleep_for(200ms);
    } else if (r.value() > 0) {
      std::fprintf(stderr, "system %s: %lld applied, %lld duplicates, %lld dead-lettered\n",
                   name.c_str(), static_cast<long long>(c.applied),
                   static_cast<long long>(c.duplicates), static_cast<long long>(c.dead_lettered));
    }
  }
  inbox.value().reset();
  sqlite3_close(conn);
  return 0;
}

struct DemoOptions {
  std::string broker = "redis", dtx, dir;
  bool keep = false;
};

struct Check {
  int failures = 0;
  void Expect(bool ok, const std::string& what) {
    std::printf("  [%s] %s\n", ok ? "ok" : "WRONG", what.c_str());
    if (!ok) ++failures;
  }
};

std::string FileText(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Waits (bounded) until the log has a line containing `text`.
bool WaitLog(const std::string& path, const std::string& text, std::chrono::seconds limit) {
  for (auto until = std::chrono::steady_clock::now() + limit;
       std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(50ms)) {
    if (FileText(path).find(text) != std::string::npos) return true;
  }
  return false;
}

// The last counters line a system logged.
std::string LastCounters(const std::string& path) {
  const std::string all = FileText(path);
  const size_t at = all.rfind(" applied, ");
  if (at == std::string::npos) return "";
  const size_t begin = all.rfind('\n', at);
  return all.substr(begin == std::string::npos ? 0 : begin + 1,
                    all.find('\n', at) - (begin == std::string::npos ? 0 : begin + 1));
}

class Demo {
 public:
  Demo(DemoOptions o, std::string dir) : o_(std::move(o)), dir_(std::move(dir)) {}

  int Run() {
    if (!StartBroker()) return o_.broker == "skip" ? 77 : 1;
    std::printf("== broker %s; systems A (orders) and B (stock), two dtx relays\n", url_.c_str());
    if (!Start(b_,
               {self_, "system", "--name", "b", "--db", Db("b"), "--broker", url_, "--stock",
                "widget=5"},
               "b", "system b ready") ||
        !Start(a_, {self_, "system", "--name", "a", "--db", Db("a"), "--broker", url_}, "a",
               "system a ready") ||
        !StartRelay(relay_a_, "a") || !StartRelay(relay_b_, "b")) {
      return 1;
    }
    dtx::Result<sqlite3*> a = lm::OpenDb(Db("a"));
    dtx::Result<sqlite3*> b = lm::OpenDb(Db("b"));
    if (!a.ok() || !b.ok()) return Fail("open", a.ok() ? b.status() : a.status());
    Place(a.value(), "o1", 2);
    std::printf("== A's relay killed -9; o2 committed while it is down; relay restarted\n");
    relay_a_.Kill9();
    Place(a.value(), "o2", 10);
    if (!StartRelay(relay_a_, "a")) return 1;
    Place(a.value(), "o3", 3);
    bool settled = WaitSettled(a.value(), b.value());
    // The seed's scanner re-sends what it cannot prove sent: here o1's message row is put back to
    // pending (as if a relay died between the broker's ack and its mark), so B gets it twice.
    std::printf("== o1's message row back to pending: the relay sends it again\n");
    lm::QueryText(a.value(),
                  "update dtx_outbox set state = 0, published_at = null "
                  "where msg_key = 'o1'");
    settled = settled && WaitSettled(a.value(), b.value());
    // NATS JetStream drops a re-publish of a message id within its duplicate window itself.
    const bool nats = o_.broker == "nats";
    const std::string expected = nats ? "3 applied, 0 duplicates" : "3 applied, 1 duplicates";
    if (nats) std::this_thread::sleep_for(1s);  // a duplicate would have come by now
    const bool dup_seen = WaitLog(dir_ + "/b.log", expected, 20s);
    a_.Stop();
    b_.Stop();
    Check c;
    c.Expect(settled, "every order reached its end within 60 s");
    CheckDatabases(a.value(), b.value(), c);
    c.Expect(dup_seen && LastCounters(dir_ + "/b.log").find(expected) != std::string::npos,
             nats ? "B: o1's request re-sent, dropped by JetStream (Nats-Msg-Id), applied once"
                  : "B: o1's request delivered twice, applied once (3 applied, 1 duplicate)");
    sqlite3_close(a.value());
    sqlite3_close(b.value());
    std::printf("== %s (%d wrong)\n", c.failures == 0 ? "all checks passed" : "CHECKS FAILED",
                c.failures);
    return c.failures == 0 ? 0 : 1;
  }

 private:
  std::string Db(const std::string& s) const { return dir_ + "/" + s + ".db"; }

  bool StartBroker() {
    if (!dtx::brokers::testing::BrokerAvailable(o_.broker)) {
      const bool ci = std::getenv("CI") != nullptr;
      std::fprintf(stderr, "local-message-mq: the %s broker is not installed%s\n",
                   o_.broker.c_str(), ci ? "" : " (skipped)");
      if (!ci) o_.broker = "skip";
      return false;
    }
    broker_ = std::make_unique<dtx::brokers::testing::BrokerProcess>(o_.broker, dir_ + "/broker");
    if (!broker_->Start()) {
      std::fprintf(stderr, "local-message-mq: %s did not start (log %s)\n", o_.broker.c_str(),
                   broker_->log_path().c_str());
      return false;
    }
    url_ = broker_->Url();
    return true;
  }
  bool Start(dtx_examples::Process& p, std::vector<std::string> args, const std::string& log,
             const std::string& ready) {
    if (p.Start(std::move(args), dir_ + "/" + log + ".log", ready)) return true;
    std::fprintf(stderr, "local-message-mq: %s did not start (log %s/%s.log)\n", log.c_str(),
                 dir_.c_str(), log.c_str());
    return false;
  }
  bool StartRelay(dtx_examples::Process& p, const std::string& system) {
    return Start(p,
                 {o_.dtx, "relay", "--source", "sqlite:" + Db(system), "--sink", url_,
                  "--poll-interval", "0.05", "--log-level", "warn"},
                 system + "-relay", "dtx relay ready");
  }
  void Place(sqlite3* a, const std::string& id, int64_t qty) {
    dtx::Status s = lm::PlaceOrder(a, id, "widget", qty);
    std::printf("== A places %s: %lld widget -> %s\n", id.c_str(), static_cast<long long>(qty),
                s.ok() ? "order row + message row committed" : s.ToString().c_str());
  }
  // Every order answered and both outboxes drained (bounded).
  static bool WaitSettled(sqlite3* a, sqlite3* b) {
    for (auto until = std::chrono::steady_clock::now() + 60s;
         std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(100ms)) {
      if (lm::QueryText(a, "select count(*) from orders where status = 'placed'") == "0" &&
          lm::QueryText(a, "select count(*) from dtx_outbox where state = 0") == "0" &&
          lm::QueryText(b, "select count(*) from dtx_outbox where state = 0") == "0") {
        return true;
      }
    }
    return false;
  }
  static void CheckDatabases(sqlite3* a, sqlite3* b, Check& c) {
    auto q = [](sqlite3* db, const std::string& sql) { return lm::QueryText(db, sql); };
    std::printf("== A's and B's databases\n");
    c.Expect(q(a, "select status from orders where order_id = 'o1'") == "confirmed",
             "A: o1 confirmed (B reserved 2)");
    // How many were left depends on whether B took o1 and o3 before o2: no order across keys (o2
    // was published late, after A's relay came back; Kafka keeps the keys on other partitions).
    const std::string o2 =
        q(a, "select status || ': ' || reason from orders where order_id = 'o2'");
    c.Expect(o2.starts_with("cancelled: out of stock: ") && o2.ends_with(" widget left, 10 asked"),
             "A: o2 cancelled by B's compensation message (" + o2 + ")");
    c.Expect(q(a, "select status from orders where order_id = 'o3'") == "confirmed",
             "A: o3 confirmed (B reserved 3)");
    c.Expect(q(b,
               "select group_concat(order_id || ' ' || status, ', ') from "
               "(select * from reservations order by order_id)") ==
                 "o1 reserved, o2 rejected, o3 reserved",
             "B: reservations o1 reserved, o2 rejected, o3 reserved");
    c.Expect(q(b, "select qty from stock where item = 'widget'") == "0",
             "B: widget stock 5 - 2 - 3 = 0 (o1's duplicate changed nothing)");
    for (auto [db, name] : {std::pair{a, "A"}, std::pair{b, "B"}}) {
      c.Expect(q(db, "select count(*) || '/' || sum(state = 1) from dtx_outbox") == "3/3",
               std::string(name) + ": 3 message rows, all published");
      c.Expect(q(db, "select count(*) from message_applied") == "3",
               std::string(name) + ": 3 messages applied once (message_applied)");
      c.Expect(q(db, "select count(*) from dtx_inbox_dead") == "0",
               std::string(name) + ": no dead letters");
    }
  }

  DemoOptions o_;
  std::string dir_, url_;
  std::string self_ = std::filesystem::read_symlink("/proc/self/exe");
  std::unique_ptr<dtx::brokers::testing::BrokerProcess> broker_;
  dtx_examples::Process b_, a_, relay_a_, relay_b_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"seed 000 §1.1: the local message table through a message broker"};
  app.require_subcommand(1);
  DemoOptions demo;
#ifdef DTX_BINARY_PATH
  demo.dtx = DTX_BINARY_PATH;
#endif
  CLI::App* d =
      app.add_subcommand("demo", "run A, B, two relays and a broker; check both databases");
  d->add_option("--broker", demo.broker, "redis, nats, kafka or amqp (started privately)")
      ->capture_default_str();
  d->add_option("--dtx", demo.dtx, "the dtx binary")->capture_default_str();
  d->add_option("--dir", demo.dir, "databases and logs (default: a fresh /tmp directory)");
  d->add_flag("--keep", demo.keep, "keep --dir afterwards");
  std::string name, db, broker;
  std::vector<std::string> stock;
  CLI::App* s = app.add_subcommand("system", "run system a (orders) or b (stock) until SIGTERM");
  s->add_option("--name", name, "a or b")->required();
  s->add_option("--db", db, "its SQLite database")->required();
  s->add_option("--broker", broker, "redis://, nats://, kafka:// or amqp://host:port")->required();
  s->add_option("--stock", stock, "b: item=qty to start with");
  CLI11_PARSE(app, argc, argv);
  if (s->parsed()) return RunSystem(name, db, broker, stock);
  const std::string dir =
      !demo.dir.empty() ? demo.dir : "/tmp/dtx-local-message-mq-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  int rc = Demo(demo, dir).Run();
  if (!demo.keep) std::filesystem::remove_all(dir);
  return rc;
}
