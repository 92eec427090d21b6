// XA transfer between two PostgreSQL databases (seed 002's X/Open DTP model, docs/xa.md): bank A
// (debit) and bank B (credit) are separate processes, each with its own database and connection,
// serving one XA branch with dtx::HandleXaBranch; the application moves money with
// dtx::XaGlobalTransaction.
//
//   xa-transfer-example bank --name a|b --pg-url URL --dtx URL [--port N] [--fail-commits]
//   xa-transfer-example demo --dtx URL --pg-url URL
//
// `demo` starts both banks and checks three transfers: (a) one that commits in both databases,
// (b) one that bank A refuses (nothing moves), (c) bank B killed with SIGKILL after its branch was
// prepared and before its commit: the prepared transaction survives, the money is not visible, and
// after the restart (same port) the coordinator's retries or the bank's start-up recovery
// (dtx::RecoverPreparedXa) commit it. Exit code 0 when every check holds.
#include <libpq-fe.h>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "dtx/client.h"
#include "dtx/participant.h"
#include "dtx/xa.h"
#include "dtx/xa_pg.h"
#include "examples/common/demo_support.h"
#include "examples/common/sql_support.h"

namespace xa_transfer {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

constexpr const char* kReady = "bank ready: ";
constexpr const char* kDatabaseB = "dtx_xa_example_b";

struct BankFlags {
  std::string name;
  std::string pg_url;
  std::string dtx;
  uint16_t port = 0;
  bool fail_commits = false;
};

// DTX_TEST_PG_URL-style URL with its database replaced by `db`.
std::string WithDatabase(const std::string& url, const std::string& db) {
  const size_t query = url.find('?');
  const std::string base = url.substr(0, query);
  return base.substr(0, base.rfind('/') + 1) + db +
         (query == std::string::npos ? "" : url.substr(query));
}

dtx::Status Exec(PGconn* c, const std::string& sql) {
  PGresult* r = PQexec(c, sql.c_str());
  dtx::Status s = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK
                      ? dtx::Status::Ok()
                      : dtx_examples::PgError(c, r, sql, false);
  PQclear(r);
  return s;
}

std::string Scalar(PGconn* c, const std::string& sql) {
  PGresult* r = PQexec(c, sql.c_str());
  std::string out =
      PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "?";
  PQclear(r);
  return out;
}

// The bank's schema, account (A starts with 100, B with 0) and barrier table, if missing.
dtx::Status Setup(PGconn* c, const std::string& name, const dtx::PgXaOptions& options) {
  const std::string schema = "xa_bank_" + name;
  for (const std::string& sql :
       {std::string("set client_min_messages = warning"), "create schema if not exists " + schema,
        "create table if not exists " + schema +
            ".account(id int primary key, balance bigint not null)",
        "insert into " + schema + ".account values (1, " + (name == "a" ? "100" : "0") +
            ") on conflict do nothing"}) {
    if (dtx::Status s = Exec(c, sql); !s.ok()) return s;
  }
  dtx::PgDb db(c, options.barrier);
  return dtx::EnsureBarrierTable(db);
}

int64_t AmountOf(const std::string& body) {
  json::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object() || !v.as_object().contains("amount")) return -1;
  const json::value& a = v.as_object().at("amount");
  return a.is_int64() ? a.as_int64() : -1;
}

int RunBank(const BankFlags& f) {
  auto conn =
      dtx_examples::ConnectPg(f.name == "a" ? f.pg_url : WithDatabase(f.pg_url, kDatabaseB));
  if (!conn.ok()) {
    std::fprintf(stderr, "bank %s: %s\n", f.name.c_str(), conn.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<PGconn, void (*)(PGconn*)> owner(*conn, PQfinish);
  std::mutex mu;  // one connection: one branch call at a time
  dtx::PgXaOptions options;
  options.barrier.table = "xa_bank_" + f.name + ".barrier";
  // In-doubt recovery at start-up, before anything else touches the tables: branches prepared
  // before a crash are finished the way the coordinator decided (its own retries would do it too,
  // later). A prepared transaction holds its row locks, so Setup's insert would wait for it.
  dtx::Client coordinator(f.dtx);
  auto recovered = dtx::RecoverPreparedXa(*conn, coordinator, 0s, options);
  if (recovered.ok() && (recovered->committed + recovered->rolled_back) > 0) {
    std::fprintf(stderr, "bank %s: recovered %d committed, %d rolled back\n", f.name.c_str(),
                 recovered->committed, recovered->rolled_back);
  }
  if (dtx::Status s = Setup(*conn, f.name, options); !s.ok()) {
    std::fprintf(stderr, "bank %s: %s\n", f.name.c_str(), s.ToString().c_str());
    return 1;
  }
  const int64_t sign = f.name == "a" ? -1 : 1;
  const std::string account = "xa_bank_" + f.name + ".account";
  dtx::ParticipantServer server({.port = f.port});
  server.Handle("POST", "/xa", [&](const dtx::BranchRequest& r) {
    if (f.fail_commits && r.op == "commit") return dtx::BranchResult::Error("commits disabled");
    std::lock_guard lock(mu);
    return dtx::HandleXaBranch(
        r, *conn,
        [&](dtx::PgTx& tx) {
          const int64_t amount = AmountOf(r.body);
          if (amount <= 0) return dtx::Status::InvalidArgument("body needs a positive amount");
          const std::string delta = std::to_string(sign * amount);
          PGresult* res = PQexec(tx.conn, ("update " + account + " set balance = balance + " +
                                           delta + " where id = 1 and balance + " + delta + " >= 0")
                                              .c_str());
          const bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
          const std::string rows = ok ? PQcmdTuples(res) : "";
          dtx::Status s =
              ok ? dtx::Status::Ok() : dtx_examples::PgError(tx.conn, res, "update", false);
          PQclear(res);
          if (s.ok() && rows != "1")
            s = dtx::Status::Conflict("bank " + f.name + ": insufficient funds");
          return s;
        },
        options);
  });
  if (dtx::Status s = server.Start(); !s.ok()) {
    std::fprintf(stderr, "bank %s: %s\n", f.name.c_str(), s.ToString().c_str());
    return 1;
  }
  std::printf("%slistening on 127.0.0.1:%u\n", kReady, server.port());
  std::fflush(stdout);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  int sig = 0;
  sigwait(&set, &sig);
  server.Stop();
  return 0;
}

struct DemoFlags {
  std::string dtx;
  std::string pg_url;
};

class Demo {
 public:
  explicit Demo(const DemoFlags& f) : f_(f), client_(f.dtx) {}

  int Run() {
    a_ = PQconnectdb(f_.pg_url.c_str());
    if (PQstatus(a_) != CONNECTION_OK) return Fail("connect: " + std::string(PQerrorMessage(a_)));
    if (Scalar(a_, "show max_prepared_transactions") == "0") {
      return Fail("PostgreSQL has max_prepared_transactions = 0; XA needs it > 0 (docs/xa.md)");
    }
    if (Scalar(a_, std::string("select count(*) from pg_database where datname = '") + kDatabaseB +
                       "'") == "0") {
      (void)Exec(a_, std::string("create database ") + kDatabaseB);
    }
    b_ = PQconnectdb(WithDatabase(f_.pg_url, kDatabaseB).c_str());
    for (PGconn* c : {a_, b_}) {
      (void)Exec(c, "set client_min_messages = warning");
      RollBackLeftovers(c);
      for (const char* s : {"xa_bank_a", "xa_bank_b"}) {
        (void)Exec(c, std::string("drop schema if exists ") + s + " cascade");
      }
    }
    auto port_a = Spawn("a", 0, false);
    auto port_b = Spawn("b", 0, false);
    if (!port_a.ok() || !port_b.ok()) return Fail("cannot start the banks");
    port_a_ = *port_a;
    pid_b_ = children_.last_pid();

    Transfer("(a)", 30, *port_b, true);
    check_.Expect(Balances() == "70/30", "(a) committed in both databases: A/B = " + Balances());
    Transfer("(b)", 1000, *port_b, false);
    check_.Expect(Balances() == "70/30", "(b) refused by bank A, nothing moved: " + Balances());
    Crash(*port_b);
    check_.Expect(Scalar(a_, "select count(*) from pg_prepared_xacts") == "0",
                  "no prepared transaction left");
    children_.StopAll();
    PQfinish(a_);
    PQfinish(b_);
    std::printf("%s\n", check_.failures() == 0 ? "DEMO OK" : "DEMO FAILED");
    return check_.failures() == 0 ? 0 : 1;
  }

 private:
  dtx::Result<uint16_t> Spawn(const std::string& name, uint16_t port, bool fail_commits) {
    std::vector<std::string> args = {"bank",  "--name", name,     "--pg-url",          f_.pg_url,
                                     "--dtx", f_.dtx,   "--port", std::to_string(port)};
    if (fail_commits) args.push_back("--fail-commits");
    return children_.SpawnListening(args, kReady);
  }

  // Branches an earlier, interrupted run left prepared would hold locks on the tables we drop.
  static void RollBackLeftovers(PGconn* c) {
    PGresult* r = PQexec(c,
                         "select gid from pg_prepared_xacts where database = current_database() "
                         "and gid like 'xa-transfer-%'");
    for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r); ++i) {
      (void)Exec(c, std::string("rollback prepared '") + PQgetvalue(r, i, 0) + "'");
    }
    PQclear(r);
  }

  std::string Balances() {
    return Scalar(a_, "select balance from xa_bank_a.account") + "/" +
           Scalar(b_, "select balance from xa_bank_b.account");
  }

  dtx::Status Xa(const std::string& gid, int64_t amount, uint16_t port_b, bool wait_result) {
    dtx::XaOptions options;
    options.wait_result = wait_result;
    const std::string body = "{\"amount\":" + std::to_string(amount) + "}";
    return dtx::XaGlobalTransaction(client_, gid, options, [&](dtx::Xa& xa) {
      auto r = xa.CallBranch(body, "http://127.0.0.1:" + std::to_string(port_a_) + "/xa");
      if (!r.ok()) return r.status();
      return xa.CallBranch(body, "http://127.0.0.1:" + std::to_string(port_b) + "/xa").status();
    });
  }

  void Transfer(const std::string& what, int64_t amount, uint16_t port_b, bool expect_ok) {
    const std::string gid =
        "xa-transfer-" + what.substr(1, 1) + "-" +
        std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
    dtx::Status s = Xa(gid, amount, port_b, true);
    check_.Expect(s.ok() == expect_ok, what + " XaGlobalTransaction: " + s.ToString());
    auto info = client_.WaitFinal(gid, 20s);
    const std::string status = info.ok() ? info->status : info.status().ToString();
    check_.Expect(status == (expect_ok ? "succeed" : "failed"), what + " transaction " + status);
  }

  // (c): B's commit fails until B is killed; it restarts on the same port without the fault.
  void Crash(uint16_t port_b) {
    children_.Kill9(pid_b_);
    auto restarted = Spawn("b", port_b, true);
    check_.Expect(restarted.ok(), "(c) bank B restarted with commits failing");
    if (!restarted.ok()) return;
    const std::string gid =
        "xa-transfer-c-" +
        std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
    dtx::Status s = Xa(gid, 20, port_b, false);
    check_.Expect(s.ok(), "(c) both branches prepared, submitted: " + s.ToString());
    std::string prepared;
    for (int i = 0; i < 100 && prepared != "1"; ++i, std::this_thread::sleep_for(50ms)) {
      prepared = Scalar(a_, "select count(*) from pg_prepared_xacts");
    }
    check_.Expect(prepared == "1", "(c) A committed, B's branch is prepared (in doubt)");
    children_.Kill9(children_.last_pid());
    check_.Expect(Balances() == "50/30",
                  "(c) B killed -9: its credit is prepared, not visible: " + Balances());
    check_.Expect(Spawn("b", port_b, false).ok(), "(c) bank B restarted");
    auto info = client_.WaitFinal(gid, 20s);
    const std::string status = info.ok() ? info->status : info.status().ToString();
    check_.Expect(status == "succeed", "(c) transaction " + status);
    check_.Expect(Balances() == "50/50", "(c) money consistent after the restart: " + Balances());
  }

  int Fail(const std::string& why) {
    std::fprintf(stderr, "demo: %s\n", why.c_str());
    return 1;
  }

  DemoFlags f_;
  dtx::Client client_;
  dtx_examples::Children children_;
  dtx_examples::Checker check_;
  PGconn* a_ = nullptr;
  PGconn* b_ = nullptr;
  uint16_t port_a_ = 0;
  pid_t pid_b_ = -1;
};

}  // namespace
}  // namespace xa_transfer

int main(int argc, char** argv) {
  CLI::App app{"xa-transfer-example: an XA transfer between two PostgreSQL databases on dtx"};
  app.require_subcommand(1);
  xa_transfer::BankFlags bank;
  CLI::App* bank_cmd = app.add_subcommand("bank", "run bank a (debit) or b (credit)");
  bank_cmd->add_option("--name", bank.name, "a or b")->required()->check(CLI::IsMember({"a", "b"}));
  bank_cmd
      ->add_option("--pg-url", bank.pg_url,
                   "PostgreSQL URL (bank b uses database "
                   "dtx_xa_example_b on the same server)")
      ->required();
  bank_cmd->add_option("--dtx", bank.dtx, "coordinator API URL (start-up recovery)")->required();
  bank_cmd->add_option("--port", bank.port, "port (0 = any free port)");
  bank_cmd->add_flag("--fail-commits", bank.fail_commits, "answer 500 to commits (a fault)");
  xa_transfer::DemoFlags demo;
  CLI::App* demo_cmd = app.add_subcommand("demo", "start both banks and run three transfers");
  demo_cmd->add_option("--dtx", demo.dtx, "coordinator API URL")->required();
  demo_cmd->add_option("--pg-url", demo.pg_url, "PostgreSQL URL")->required();
  CLI11_PARSE(app, argc, argv);
  if (bank_cmd->parsed()) return xa_transfer::RunBank(bank);
  return xa_transfer::Demo(demo).Run();
}
