// notify-payment-example: best-effort notification (seed 000 §1.3, seed 002's last section) with
// the query pattern, as real processes with their own SQLite databases:
//
//   notify-payment-example serve --service gateway --db PATH --dtx URL --merchant URL --secret S
//       the payment gateway: POST /pay {"order","amount"} records the payment and, in the same
//       local transaction (dtx::Notification::DoAndSubmit, two-phase), the merchant's notification;
//       GET /queryPrepared is its check-back; GET /payment?order= is the query interface.
//   notify-payment-example serve --service merchant --db PATH --secret S [--port P]
//       the merchant: POST /notify verifies the Standard Webhooks signature (dtx::VerifyWebhook),
//       records the payment idempotently by notification id, and only then answers Alipay's
//       "success"; GET /state lists what it recorded.
//   notify-payment-example demo --dtx URL --data-dir DIR
//       starts both; the merchant is down for the first attempts and meanwhile pulls the payment
//       from the gateway's query interface; prints the attempt log; exits 0 on the expected
//       outcome.
// Each service prints "notify-payment-example ready: service NAME listening on HOST:PORT".
#include <signal.h>
#include <sqlite3.h>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dtx/client.h"
#include "dtx/notify.h"
#include "dtx/participant.h"
#include "examples/common/demo_support.h"

namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

constexpr const char* kReady = "notify-payment-example ready: ";

// One SQLite connection shared by a service's handlers (they run on worker threads).
class Db {
 public:
  explicit Db(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) std::abort();
    sqlite3_busy_timeout(db_, 5000);
  }
  ~Db() { sqlite3_close(db_); }
  sqlite3* handle() { return db_; }
  std::mutex& mu() { return mu_; }
  bool Exec(const std::string& sql) {
    return sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK;
  }
  // The first column of the first row, or "".
  std::string One(const std::string& sql, const std::string& arg) {
    sqlite3_stmt* st = nullptr;
    std::string out;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) == SQLITE_OK) {
      sqlite3_bind_text(st, 1, arg.c_str(), -1, SQLITE_TRANSIENT);
      if (sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char* t = sqlite3_column_text(st, 0);
        out = t ? reinterpret_cast<const char*>(t) : "";
      }
    }
    sqlite3_finalize(st);
    return out;
  }
  bool Insert(const std::string& sql, const std::vector<std::string>& args) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) return false;
    for (size_t i = 0; i < args.size(); ++i) {
      sqlite3_bind_text(st, static_cast<int>(i + 1), args[i].c_str(), -1, SQLITE_TRANSIENT);
    }
    const bool ok = sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    return ok;
  }

 private:
  sqlite3* db_ = nullptr;
  std::mutex mu_;
};

// Blocked before any thread starts (the threads inherit the mask), then waited for.
sigset_t TermSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

int WaitForSignal() {
  sigset_t set = TermSignals();
  int sig = 0;
  sigwait(&set, &sig);
  return 0;
}

int ServeGateway(const std::string& db_path, const std::string& dtx_url,
                 const std::string& merchant, const std::string& secret, uint16_t port) {
  Db db(db_path);
  dtx::SqliteDb barrier_db(db.handle());
  if (!dtx::EnsureBarrierTable(barrier_db).ok() ||
      !db.Exec("CREATE TABLE IF NOT EXISTS payment(order_id TEXT PRIMARY KEY, amount INTEGER, "
               "status TEXT)")) {
    return 1;
  }
  dtx::Client client(dtx_url);
  dtx::ParticipantOptions po;
  po.port = port;
  dtx::ParticipantServer server(po);
  std::string self;  // set after Start
  server.Handle("POST", "/pay", [&](const dtx::BranchRequest& r) {
    json::value v = json::parse(r.body);
    const std::string order(v.at("order").as_string());
    const int64_t amount = v.at("amount").as_int64();
    const std::string payload = json::serialize(
        json::object{{"order", order}, {"amount", amount}, {"trade_status", "TRADE_SUCCESS"}});
    dtx::Notification n(client, "pay-" + order, merchant + "/notify");
    // Alipay's ladder would be SetSchedule("alipay"); the demo compresses it to seconds.
    n.SetPayload(payload)
        .SetSchedule(std::vector<double>{0, 1, 1, 2, 2, 4})
        .SuccessOnBody("success");
    n.SetSecret(secret).SetTimeoutToFail(5);
    std::lock_guard lock(db.mu());
    dtx::Status s = n.DoAndSubmit(self + "/queryPrepared", barrier_db, [&](dtx::SqliteTx&) {
      if (amount <= 0) return dtx::Status::Conflict("the amount must be positive");
      return db.Insert("INSERT INTO payment VALUES(?1, ?2, 'paid')",
                       {order, std::to_string(amount)})
                 ? dtx::Status::Ok()
                 : dtx::Status::Internal(sqlite3_errmsg(db.handle()));
    });
    if (!s.ok()) return dtx::BranchResult::Failure(s.ToString());
    return dtx::BranchResult::Custom(
        200, json::serialize(json::object{{"order", order}, {"status", "paid"}}));
  });
  server.Handle("GET", "/queryPrepared", [&](const dtx::BranchRequest& r) {
    std::lock_guard lock(db.mu());
    return dtx::QueryPrepared(r, barrier_db);
  });
  server.Handle("GET", "/payment", [&](const dtx::BranchRequest& r) {
    const std::string order = r.QueryParam("order").value_or("");
    std::lock_guard lock(db.mu());
    std::string status = db.One("SELECT status FROM payment WHERE order_id = ?1", order);
    return dtx::BranchResult::Custom(
        200, json::serialize(
                 json::object{{"order", order}, {"status", status.empty() ? "unknown" : status}}));
  });
  if (!server.Start().ok()) return 1;
  self = "http://127.0.0.1:" + std::to_string(server.port());
  std::printf("%sservice gateway listening on 127.0.0.1:%u\n", kReady, server.port());
  std::fflush(stdout);
  return WaitForSignal();
}

int ServeMerchant(const std::string& db_path, const std::string& secret, uint16_t port) {
  Db db(db_path);
  if (!db.Exec("CREATE TABLE IF NOT EXISTS received(notification_id TEXT PRIMARY KEY, "
               "body TEXT, times INTEGER)")) {
    return 1;
  }
  dtx::WebhookReplayGuard seen;
  dtx::ParticipantOptions po;
  po.port = port;
  dtx::ParticipantServer server(po);
  server.Handle("POST", "/notify", [&](const dtx::BranchRequest& r) {
    dtx::Status v = dtx::VerifyWebhook(secret, r.headers, r.body, 5min, &seen);
    // A replay of an id that passed is a retry of a delivery whose answer was lost: it is recorded
    // already, so it is answered "success" again (below, idempotently). Anything else is refused.
    if (!v.ok() && v.code() != dtx::Code::kAlreadyExists) {
      return dtx::BranchResult::Custom(401, v.ToString(), "text/plain");
    }
    const std::string id(r.Header("webhook-id"));
    std::lock_guard lock(db.mu());
    if (!db.Insert("INSERT INTO received VALUES(?1, ?2, 1) ON CONFLICT(notification_id) DO "
                   "UPDATE SET times = times + 1",
                   {id, r.body})) {
      return dtx::BranchResult::Custom(500, "database error", "text/plain");
    }
    return dtx::BranchResult::Custom(200, "success", "text/plain");  // Alipay's success mark
  });
  server.Handle("GET", "/state", [&](const dtx::BranchRequest& r) {
    const std::string id = r.QueryParam("id").value_or("");
    std::lock_guard lock(db.mu());
    const std::string times = db.One("SELECT times FROM received WHERE notification_id = ?1", id);
    return dtx::BranchResult::Custom(
        200, json::serialize(json::object{{"id", id}, {"received_times", times}}));
  });
  if (!server.Start().ok()) return 1;
  std::printf("%sservice merchant listening on 127.0.0.1:%u\n", kReady, server.port());
  std::fflush(stdout);
  return WaitForSignal();
}

std::string PrintLog(const std::string& dtx_base, const std::string& id) {
  auto o = dtx_examples::FetchJson(dtx_base + "/api/dtx/notify/" + id);
  if (!o.ok()) return "";
  std::printf("  notification %s: %s, %lld attempt(s)\n", id.c_str(),
              std::string((*o)["status"].as_string()).c_str(),
              static_cast<long long>((*o)["attempt_count"].as_int64()));
  for (const auto& a : (*o)["attempts"].as_array()) {
    std::printf("    #%lld %s http=%lld %lld ms %s%s\n",
                static_cast<long long>(a.at("n").as_int64()),
                std::string(a.at("time").as_string()).c_str(),
                static_cast<long long>(a.at("http_status").as_int64()),
                static_cast<long long>(a.at("latency_ms").as_int64()),
                std::string(a.at("error").as_string()).substr(0, 60).c_str(),
                a.at("http_status").as_int64() == 200
                    ? ("response '" + std::string(a.at("response").as_string()) + "'").c_str()
                    : "");
  }
  return std::string((*o)["status"].as_string());
}

int Demo(const std::string& dtx_url, const std::string& dir) {
  std::filesystem::create_directories(dir);
  const std::string dtx_base = dtx_url.substr(0, dtx_url.rfind("/api/dtmsvr"));
  const std::string secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  dtx_examples::Checker check;
  dtx_examples::Children merchant_proc;
  dtx_examples::Children gateway_proc;
  const std::vector<std::string> merchant_args = {
      "serve", "--service", "merchant", "--db", dir + "/merchant.db", "--secret", secret};
  // Start the merchant once to learn a free port, then take it down: it is down at first.
  auto mport = merchant_proc.SpawnListening(merchant_args, kReady);
  if (!mport.ok()) return 2;
  merchant_proc.StopAll();
  const std::string merchant = "http://127.0.0.1:" + std::to_string(*mport);
  auto gport =
      gateway_proc.SpawnListening({"serve", "--service", "gateway", "--db", dir + "/gateway.db",
                                   "--dtx", dtx_url, "--merchant", merchant, "--secret", secret},
                                  kReady);
  if (!gport.ok()) return 2;
  const std::string gateway = "http://127.0.0.1:" + std::to_string(*gport);

  std::printf("1. order A1 is paid at the gateway; the merchant is down\n");
  auto paid = dtx_examples::HttpCall("POST", gateway + "/pay", R"({"order":"A1","amount":30})");
  check.Expect(paid.ok() && paid->status == 200, "the payment and its notification commit");
  std::this_thread::sleep_for(1500ms);
  PrintLog(dtx_base, "pay-A1");

  std::printf("2. the merchant does not wait: it pulls the status (the query pattern)\n");
  auto pulled = dtx_examples::FetchJson(gateway + "/payment?order=A1");
  check.Expect(pulled.ok() && (*pulled)["status"] == "paid", "the gateway's query says paid");

  std::printf("3. the merchant comes back; the next scheduled attempt delivers\n");
  std::vector<std::string> again = merchant_args;
  again.insert(again.end(), {"--port", std::to_string(*mport)});
  if (!merchant_proc.SpawnListening(again, kReady).ok()) return 2;
  std::string status;
  for (int i = 0; i < 100 && status != "delivered"; ++i) {
    std::this_thread::sleep_for(100ms);
    auto o = dtx_examples::FetchJson(dtx_base + "/api/dtx/notify/pay-A1");
    if (o.ok()) status = std::string((*o)["status"].as_string());
  }
  status = PrintLog(dtx_base, "pay-A1");
  check.Expect(status == "delivered", "delivered after the merchant came back");
  auto o = dtx_examples::FetchJson(dtx_base + "/api/dtx/notify/pay-A1");
  check.Expect(o.ok() && (*o)["attempt_count"].as_int64() >= 2 &&
                   (*o)["attempts"].as_array()[0].at("http_status").as_int64() == 0,
               "the first attempt(s) found the merchant down, and are in the log");
  auto got = dtx_examples::FetchJson(merchant + "/state?id=pay-A1");
  check.Expect(got.ok() && (*got)["received_times"] == "1", "the merchant recorded it once");

  std::printf("4. a payment that fails in the gateway's local transaction is never notified\n");
  auto refused = dtx_examples::HttpCall("POST", gateway + "/pay", R"({"order":"A2","amount":0})");
  check.Expect(refused.ok() && refused->status == 409, "the gateway refuses the payment");
  status = PrintLog(dtx_base, "pay-A2");
  check.Expect(status == "aborted", "its notification is aborted");
  std::printf("%s\n", check.failures() == 0 ? "demo: expected outcome" : "demo: WRONG outcome");
  return check.failures() == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"notify-payment-example: best-effort notification with the query pattern"};
  app.require_subcommand(1);
  std::string service, db, dtx_url, merchant, secret, dir;
  uint16_t port = 0;
  auto* serve = app.add_subcommand("serve", "run one service until SIGTERM");
  serve->add_option("--service", service)->required();
  serve->add_option("--db", db)->required();
  serve->add_option("--dtx", dtx_url);
  serve->add_option("--merchant", merchant);
  serve->add_option("--secret", secret)->required();
  serve->add_option("--port", port);
  auto* demo = app.add_subcommand("demo", "run the whole scenario");
  demo->add_option("--dtx", dtx_url)->required();
  demo->add_option("--data-dir", dir)->required();
  CLI11_PARSE(app, argc, argv);
  if (*demo) return Demo(dtx_url, dir);
  sigset_t set = TermSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  if (service == "gateway") return ServeGateway(db, dtx_url, merchant, secret, port);
  if (service == "merchant") return ServeMerchant(db, secret, port);
  std::fprintf(stderr, "unknown --service %s\n", service.c_str());
  return 2;
}
