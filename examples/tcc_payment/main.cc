// tcc-payment-example: the TCC payment of seed 002 (Alipay DTS: member, merchant, points) on dtx.
//
//   tcc-payment-example serve --service member|merchant|points --db URL [--reset] [--port P]
//       runs one participant service (its own process and database: sqlite:/path/file.db or
//       postgres://...) until SIGTERM/SIGINT; prints
//       "tcc-payment-example ready: service NAME listening on HOST:PORT" when it serves.
//   tcc-payment-example demo --dtx http://127.0.0.1:36789/api/dtmsvr [--pg-url URL]
//       [--data-dir DIR]
//       starts the three services as child processes (member on PostgreSQL when a URL is given by
//       --pg-url or DTX_TEST_PG_URL, else on SQLite; merchant and points on SQLite), runs three
//       payments through the TCC SDK (one that goes through, one the member cannot afford, one the
//       merchant refuses), prints every database, checks the outcome and exits 0 if it is the
//       expected one, 1 if not. The children are stopped at exit.
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
#include "dtx/tcc.h"
#include "examples/common/demo_support.h"
#include "examples/common/serve_support.h"
#include "examples/tcc_payment/services.h"

namespace tcc_payment {
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

constexpr const char* kReadyPrefix = "tcc-payment-example ready: ";

// ---------------------------------------------------------------------------------------------------
// serve

struct ServeFlags {
  std::string service;
  std::string host = "127.0.0.1";
  int port = 0;
  std::string db;
  bool reset = false;
  size_t workers = 8;
};

int RunServe(const ServeFlags& f) {
  const sigset_t signals = dtx_examples::BlockStopSignals();  // before any thread starts
  auto service = Service::Open(f.service, f.db, f.reset);
  if (!service.ok()) {
    std::fprintf(stderr, "serve %s: %s\n", f.service.c_str(), service.status().ToString().c_str());
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

std::string BranchStatuses(const dtx::TransactionInfo& t) {
  std::string out;
  for (const auto& b : t.branches) out += b.op + b.branch_id + "=" + b.status + " ";
  if (!out.empty()) out.pop_back();
  return out;
}

// ---------------------------------------------------------------------------------------------------
// demo: the scenario

struct DemoFlags {
  std::string dtx;
  std::string data_dir;
  std::string pg_url;
  int wait_s = 60;
};

struct PaymentRun {
  std::string gid;
  dtx::Status outcome;
  std::optional<dtx::TransactionInfo> final_state;
};

using Ports = std::map<std::string, uint16_t>;
using States = std::map<std::string, json::object>;

// The three services as child processes: member on PostgreSQL when a URL is given (a fresh schema
// tcc_payment_member), the others on SQLite in `data_dir`.
dtx::Result<Ports> StartServices(Children& children, const std::string& pg_url,
                                 const std::string& data_dir) {
  std::map<std::string, std::string> dbs = {
      {"member", pg_url.empty() ? "sqlite:" + data_dir + "/member.db" : pg_url},
      {"merchant", "sqlite:" + data_dir + "/merchant.db"},
      {"points", "sqlite:" + data_dir + "/points.db"}};
  if (pg_url.empty()) {
    std::printf("  (no --pg-url and no DTX_TEST_PG_URL: member runs on SQLite too)\n");
  }
  Ports ports;
  for (const std::string& name : ServiceNames()) {
    auto port = children.SpawnListening(
        {"serve", "--service", name, "--port", "0", "--db", dbs[name], "--reset"}, kReadyPrefix,
        20s);
    if (!port.ok()) return port.status();
    ports[name] = *port;
    std::string where = dbs[name];
    if (IsPostgresUrl(where)) where += " (schema tcc_payment_member)";
    std::printf("  service %-8s on 127.0.0.1:%u, db %s\n", name.c_str(),
                static_cast<unsigned>(*port), where.c_str());
  }
  return ports;
}

// One payment through the TCC SDK: Try on member (freeze), merchant (pending credit), points
// (pending points); the coordinator confirms them all, or cancels every registered branch when a
// Try fails. Waits for the final state and prints it.
PaymentRun Pay(dtx::Client& client, const Ports& ports, int wait_s, const char* title,
               const Payment& p) {
  dtx::TccOptions options;
  options.wait_result = true;  // submit/abort return after the confirm/cancel round
  options.request_timeout_s = 3;
  options.retry_interval_s = 1;
  options.timeout_to_fail_s = 30;
  auto url = [&](const std::string& service, const std::string& op) {
    return "http://127.0.0.1:" + std::to_string(ports.at(service)) + "/" + service + "/" + op;
  };
  PaymentRun run;
  std::printf("\n== %s: %s\n", title, EncodePayment(p).c_str());
  auto gid = client.NewGid();
  if (!gid.ok()) {
    run.outcome = gid.status();
    std::printf("  newGid: %s\n", gid.status().ToString().c_str());
    return run;
  }
  run.gid = *gid;
  const std::string payload = EncodePayment(p);
  run.outcome = dtx::TccGlobalTransaction(client, run.gid, options, [&](dtx::Tcc& tcc) {
    for (const std::string& service : ServiceNames()) {
      auto r = tcc.CallBranch(payload, url(service, "try"), url(service, "confirm"),
                              url(service, "cancel"));
      std::printf("  try %-8s -> %s\n", service.c_str(),
                  r.ok() ? "ok" : r.status().ToString().c_str());
      if (!r.ok()) return r.status();  // abort: the coordinator cancels every registered branch
    }
    return dtx::Status::Ok();  // submit: the coordinator confirms every branch
  });
  std::printf("  TccGlobalTransaction: %s\n", run.outcome.ToString().c_str());
  auto final_state = client.WaitFinal(run.gid, std::chrono::seconds(wait_s));
  if (final_state.ok()) {
    run.final_state = *final_state;
    PrintTransaction("transaction", *final_state);
  } else {
    std::printf("  query: %s\n", final_state.status().ToString().c_str());
  }
  return run;
}

std::string StatusOf(const PaymentRun& r) {
  return r.final_state ? r.final_state->status : std::string("<unknown>");
}
std::string BranchesOf(const PaymentRun& r) {
  return r.final_state ? BranchStatuses(*r.final_state) : std::string("<unknown>");
}
bool ReasonHas(const PaymentRun& r, const char* text) {
  return r.final_state && r.final_state->rollback_reason.find(text) != std::string::npos;
}
int64_t MemberCol(const json::object& member_state, const char* who, const char* col) {
  return IntOf(FindRow(member_state, "accounts", "member", who), col);
}

// (a) went through: every branch confirmed, the merchant credited, the points added.
void CheckConfirmed(Checker& k, const States& before, const States& state, const PaymentRun& a,
                    const Payment& pa) {
  const json::object& m = state.at("member");
  const json::object& merchant = state.at("merchant");
  k.Expect(a.outcome.ok(), "(a) TccGlobalTransaction returned ok (submit with wait_result)");
  k.Expect(StatusOf(a) == "succeed", "(a) the transaction succeeded");
  k.Expect(BranchesOf(a) ==
               "cancel01=prepared confirm01=succeed cancel02=prepared confirm02=succeed "
               "cancel03=prepared confirm03=succeed",
           "(a) every branch confirmed, none cancelled: " + BranchesOf(a));
  k.Expect(TextOf(FindRow(m, "freezes", "gid", a.gid), "status") == "debited",
           "(a) member: the freeze was debited");
  k.Expect(TextOf(FindRow(merchant, "credits", "gid", a.gid), "status") == "credited",
           "(a) merchant: the credit was confirmed");
  const int64_t shop0 =
      IntOf(FindRow(before.at("merchant"), "merchants", "merchant", "coffee-shop"), "balance");
  const int64_t shop = IntOf(FindRow(merchant, "merchants", "merchant", "coffee-shop"), "balance");
  k.Expect(shop == shop0 + pa.amount,
           "(a) coffee-shop balance " + std::to_string(shop0) + " -> " + std::to_string(shop));
  const int64_t points0 =
      IntOf(FindRow(before.at("points"), "member_points", "member", "alice"), "points");
  const int64_t points =
      IntOf(FindRow(state.at("points"), "member_points", "member", "alice"), "points");
  k.Expect(points == points0 + pa.points,
           "(a) alice's points " + std::to_string(points0) + " -> " + std::to_string(points));
}

// (b) the member could not afford it: only the member branch registered, cancelled as a null
// compensation.
void CheckMemberRefused(Checker& k, const States& before, const States& state,
                        const PaymentRun& b) {
  const json::object& m = state.at("member");
  const int64_t bob0 = MemberCol(before.at("member"), "bob", "balance");
  k.Expect(b.outcome.code() == dtx::Code::kConflict,
           "(b) TccGlobalTransaction returned the member's FAILURE: " + b.outcome.ToString());
  k.Expect(StatusOf(b) == "failed", "(b) the transaction failed (rolled back)");
  k.Expect(ReasonHas(b, "insufficient balance"), "(b) rollback_reason names the member's refusal");
  k.Expect(BranchesOf(b) == "cancel01=succeed confirm01=prepared",
           "(b) only the member branch was registered, and it was cancelled: " + BranchesOf(b));
  k.Expect(FindRow(m, "freezes", "gid", b.gid) == nullptr, "(b) member: nothing was frozen");
  k.Expect(TextOf(FindRow(m, "barrier", "gid", b.gid, "op", "try"), "reason") == "cancel",
           "(b) member: the Cancel was a null compensation (barrier row try/reason=cancel)");
  k.Expect(MemberCol(m, "bob", "balance") == bob0 && MemberCol(m, "bob", "frozen") == 0,
           "(b) bob's balance unchanged (" + std::to_string(bob0) + "), nothing frozen");
  k.Expect(FindRow(state.at("merchant"), "credits", "gid", b.gid) == nullptr,
           "(b) merchant never called");
}

// (c) the merchant refused: member and merchant registered, both cancelled, points never called.
void CheckMerchantRefused(Checker& k, const States& state, const PaymentRun& c) {
  const json::object& m = state.at("member");
  const json::object& merchant = state.at("merchant");
  k.Expect(c.outcome.code() == dtx::Code::kConflict,
           "(c) TccGlobalTransaction returned the merchant's FAILURE: " + c.outcome.ToString());
  k.Expect(StatusOf(c) == "failed", "(c) the transaction failed (rolled back)");
  k.Expect(ReasonHas(c, "does not accept payments"),
           "(c) rollback_reason names the merchant's refusal");
  k.Expect(
      BranchesOf(c) == "cancel01=succeed confirm01=prepared cancel02=succeed confirm02=prepared",
      "(c) member and merchant registered, both cancelled: " + BranchesOf(c));
  k.Expect(TextOf(FindRow(m, "freezes", "gid", c.gid), "status") == "released",
           "(c) member: the freeze was released by the Cancel");
  k.Expect(TextOf(FindRow(merchant, "barrier", "gid", c.gid, "op", "try"), "reason") == "cancel",
           "(c) merchant: the Cancel was a null compensation (its Try had failed)");
  k.Expect(FindRow(merchant, "credits", "gid", c.gid) == nullptr,
           "(c) merchant: no credit recorded");
  k.Expect(FindRow(state.at("points"), "pending_points", "gid", c.gid) == nullptr,
           "(c) points never called");
}

int RunDemo(DemoFlags f) {
  if (f.pg_url.empty()) {
    const char* env = std::getenv("DTX_TEST_PG_URL");
    if (env != nullptr) f.pg_url = env;
  }
  auto dir = dtx_examples::DemoDataDir(f.data_dir, "tcc-payment");
  if (!dir.ok()) {
    std::fprintf(stderr, "demo: %s\n", dir.status().ToString().c_str());
    return 1;
  }
  std::printf("== TCC payment demo (seed 002), coordinator %s, data in %s\n", f.dtx.c_str(),
              dir->c_str());
  Children children;
  auto ports = StartServices(children, f.pg_url, *dir);
  auto before = ports.ok() ? dtx_examples::FetchStates(*ports) : ports.status();
  if (!before.ok()) {
    std::fprintf(stderr, "demo: %s\n", before.status().ToString().c_str());
    return 1;
  }

  dtx::Client client(f.dtx);
  const Payment pa{"alice", "coffee-shop", 3000, 30};
  const Payment pb{"bob", "coffee-shop", 8000, 80};
  const Payment pc{"alice", "closed-shop", 2000, 20};
  PaymentRun a = Pay(client, *ports, f.wait_s, "(a) alice pays coffee-shop 30.00", pa);
  PaymentRun b = Pay(client, *ports, f.wait_s, "(b) bob pays coffee-shop 80.00 (he has 5.00)", pb);
  PaymentRun c =
      Pay(client, *ports, f.wait_s, "(c) alice pays closed-shop 20.00 (the merchant refuses)", pc);

  std::printf("\n== databases\n");
  auto state = dtx_examples::FetchStates(*ports);
  if (!state.ok()) {
    std::fprintf(stderr, "demo: %s\n", state.status().ToString().c_str());
    return 1;
  }
  for (const auto& [name, s] : *state) PrintState(name, s);

  std::printf("\n== checks\n");
  Checker k;
  CheckConfirmed(k, *before, *state, a, pa);
  CheckMemberRefused(k, *before, *state, b);
  CheckMerchantRefused(k, *state, c);
  // Balances overall: only (a) was charged.
  const json::object& m = state->at("member");
  const int64_t alice0 = MemberCol(before->at("member"), "alice", "balance");
  const int64_t alice = MemberCol(m, "alice", "balance");
  k.Expect(alice == alice0 - pa.amount, "alice's balance " + std::to_string(alice0) + " -> " +
                                            std::to_string(alice) + " (only (a) charged)");
  k.Expect(MemberCol(m, "alice", "frozen") == 0, "alice has nothing frozen");
  return dtx_examples::DemoVerdict(
      k.failures(),
      "payment (a) went through; (b) and (c) were rolled back and nothing is left frozen.");
}

}  // namespace
}  // namespace tcc_payment

int main(int argc, char** argv) {
  CLI::App app{
      "tcc-payment-example: the TCC payment of seed 002 (member, merchant, points) on dtx"};
  app.require_subcommand(1);

  tcc_payment::ServeFlags serve;
  CLI::App* serve_cmd = app.add_subcommand("serve", "run one participant service");
  serve_cmd->add_option("--service", serve.service, "member, merchant or points")
      ->required()
      ->check(CLI::IsMember(tcc_payment::ServiceNames()));
  serve_cmd
      ->add_option("--db", serve.db,
                   "database: sqlite:/path/file.db or postgres://... (tables in schema "
                   "tcc_payment_<service>)")
      ->required();
  serve_cmd->add_flag("--reset", serve.reset, "drop the service's tables and start afresh");
  dtx_examples::AddListenFlags(serve_cmd, serve.host, serve.port, serve.workers);

  tcc_payment::DemoFlags demo;
  CLI::App* demo_cmd = app.add_subcommand("demo", "start the three services and run 3 payments");
  dtx_examples::AddDemoFlags(demo_cmd, demo.dtx, demo.data_dir, demo.wait_s,
                             "how long to wait for each payment to finish, s");
  demo_cmd->add_option("--pg-url", demo.pg_url,
                       "PostgreSQL URL for the member service (default: $DTX_TEST_PG_URL; "
                       "without either, SQLite)");

  CLI11_PARSE(app, argc, argv);
  if (serve_cmd->parsed()) return tcc_payment::RunServe(serve);
  return tcc_payment::RunDemo(demo);
}
