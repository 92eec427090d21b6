// End-to-end tests of XA on PostgreSQL (include/dtx/xa.h, include/dtx/xa_pg.h) with the real
// `dtx server` binary: a transfer between two banks in two databases of the test cluster (bank A in
// DTX_TEST_PG_URL's database, bank B in dtx_xa_bank_b, created when missing): two resource
// managers, each with its own connection and prepared transactions, served by an in-process
// ParticipantServer. Commit, rollback (a refused credit), duplicate commit/rollback,
// null rollback with its fence against a late action, a participant crash between prepare and
// commit (its server stopped and its connections closed: the prepared transactions survive, the
// coordinator's retries commit them after the restart; in-doubt recovery with RecoverPreparedXa),
// and a coordinator killed (SIGKILL) between the two phases. After each: money is conserved and no
// prepared transaction is left. Needs DTX_TEST_PG_URL and max_prepared_transactions > 0
// (scripts/pg-cluster.sh sets it); skipped otherwise.
#include "dtx/xa_pg.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "dtx/client.h"
#include "dtx/participant.h"
#include "dtx/xa.h"
#include "tests/support/harness.h"

namespace dtx::testing {
namespace {

using namespace std::chrono_literals;

std::string PgUrl() {
  const char* url = std::getenv("DTX_TEST_PG_URL");
  return url != nullptr ? url : "";
}

// DTX_TEST_PG_URL with its database replaced by `db` (an empty `db` keeps it).
std::string DbUrl(const std::string& db) {
  std::string url = PgUrl();
  if (db.empty()) return url;
  const size_t query = url.find('?');
  const std::string tail = query == std::string::npos ? "" : url.substr(query);
  url = url.substr(0, query);
  return url.substr(0, url.rfind('/') + 1) + db + tail;
}

PGconn* Connect(const std::string& db = {}) {
  PGconn* c = PQconnectdb(DbUrl(db).c_str());
  EXPECT_EQ(PQstatus(c), CONNECTION_OK) << PQerrorMessage(c);
  return c;
}

std::string Scalar(PGconn* c, const std::string& sql) {
  PGresult* r = PQexec(c, sql.c_str());
  std::string out =
      PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "ERROR";
  if (out == "ERROR") ADD_FAILURE() << sql << ": " << PQresultErrorMessage(r);
  PQclear(r);
  return out;
}

void Exec(PGconn* c, const std::string& sql) {
  PGresult* r = PQexec(c, sql.c_str());
  EXPECT_EQ(PQresultStatus(r), PGRES_COMMAND_OK) << sql << ": " << PQresultErrorMessage(r);
  PQclear(r);
}

// One bank: a schema with one account and the barrier table, behind one connection.
class Bank {
 public:
  Bank(std::string schema, std::string db) : schema_(std::move(schema)), db_(std::move(db)) {
    Reopen();
  }
  ~Bank() { Close(); }
  void Reopen() {
    conn_ = Connect(db_);
    options_.barrier.table = schema_ + ".barrier";
    options_.barrier.lock_timeout = 2s;
  }
  void Close() {
    if (conn_ != nullptr) PQfinish(conn_);
    conn_ = nullptr;
  }
  void Create(int64_t balance) {
    Exec(conn_, "set client_min_messages = warning");  // no NOTICE per dropped table
    Exec(conn_, "drop schema if exists " + schema_ + " cascade");
    Exec(conn_, "create schema " + schema_);
    Exec(conn_,
         "create table " + schema_ + ".account(id int primary key, balance bigint not null)");
    Exec(conn_, "insert into " + schema_ + ".account values (1, " + std::to_string(balance) + ")");
    PgDb db(conn_, options_.barrier);
    ASSERT_TRUE(EnsureBarrierTable(db).ok());
  }
  // Adds `delta` inside the XA branch; refuses (kConflict) a balance that would go negative.
  BranchResult Handle(const BranchRequest& r, int64_t delta) {
    std::lock_guard lock(mu_);
    return HandleXaBranch(
        r, conn_,
        [&](PgTx& tx) {
          const std::string sql = "update " + schema_ + ".account set balance = balance + " +
                                  std::to_string(delta) + " where id = 1 and balance + " +
                                  std::to_string(delta) + " >= 0";
          PGresult* res = PQexec(tx.conn, sql.c_str());
          const bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
          const std::string rows = ok ? PQcmdTuples(res) : "";
          const std::string error = PQresultErrorMessage(res);
          PQclear(res);
          if (!ok) return Status::Unavailable(error);
          return rows == "1" ? Status::Ok() : Status::Conflict("insufficient balance");
        },
        options_);
  }
  int64_t Balance(PGconn* observer) const {
    return std::stoll(Scalar(observer, "select balance from " + schema_ + ".account where id = 1"));
  }
  PGconn* conn() { return conn_; }
  const PgXaOptions& options() const { return options_; }

 private:
  std::string schema_;
  std::string db_;
  std::mutex mu_;
  PGconn* conn_ = nullptr;
  PgXaOptions options_;
};

class XaPg : public ::testing::Test {
 protected:
  void SetUp() override {
    if (PgUrl().empty()) GTEST_SKIP() << "DTX_TEST_PG_URL not set";
    observer_ = Connect();
    if (std::stoi(Scalar(observer_, "show max_prepared_transactions")) == 0) {
      GTEST_SKIP() << "max_prepared_transactions = 0 on the test PostgreSQL";
    }
    if (Scalar(observer_, "select count(*) from pg_database where datname = 'dtx_xa_bank_b'") ==
        "0") {
      Exec(observer_, "create database dtx_xa_bank_b");
    }
    observer_b_ = Connect("dtx_xa_bank_b");
    a_ = std::make_unique<Bank>("xa_bank_a", "");
    b_ = std::make_unique<Bank>("xa_bank_b", "dtx_xa_bank_b");
    a_->Create(100);
    b_->Create(0);
    server_ = std::make_unique<ServerProcess>(TempDir("xa") + "/dtx.db",
                                              std::vector<std::string>{"--retry-interval", "0.2"});
    ASSERT_TRUE(server_->Start());
    client_ = std::make_unique<Client>(server_->Base() + "/api/dtmsvr");
    StartParticipant(0);
  }
  void TearDown() override {
    if (participant_) participant_->Stop();
    if (observer_ != nullptr) {
      // No branch of these tests may stay prepared.
      EXPECT_EQ(Scalar(observer_, "select count(*) from pg_prepared_xacts where gid like 'xa-%'"),
                "0");
      PQfinish(observer_);
    }
    if (observer_b_ != nullptr) PQfinish(observer_b_);
  }
  void StartParticipant(uint16_t port) {
    participant_ = std::make_unique<ParticipantServer>(ParticipantOptions{.port = port});
    participant_->Handle("POST", "/xa/debit",
                         [this](const BranchRequest& r) { return a_->Handle(r, -amount_.load()); });
    participant_->Handle("POST", "/xa/credit", [this](const BranchRequest& r) {
      if (fail_commits_.load() && r.op == "commit") return BranchResult::Error("injected");
      return b_->Handle(r, credit_.load());
    });
    ASSERT_TRUE(participant_->Start().ok());
  }
  Status Transfer(const std::string& gid, bool wait_result = true) {
    XaOptions options;
    options.wait_result = wait_result;
    const std::string base = participant_->base_url();
    return XaGlobalTransaction(*client_, gid, options, [&](Xa& xa) {
      auto r = xa.CallBranch("{}", base + "/xa/debit");
      if (!r.ok()) return r.status();
      return xa.CallBranch("{}", base + "/xa/credit").status();
    });
  }
  void ExpectBalances(int64_t a, int64_t b) {
    EXPECT_EQ(a_->Balance(observer_), a);
    EXPECT_EQ(b_->Balance(observer_b_), b);
  }
  // Polls (bounded) until `count` branches of these tests are prepared; the last count seen.
  std::string WaitPrepared(const std::string& count) {
    std::string seen;
    for (int i = 0; i < 100 && (seen = Prepared()) != count; ++i) std::this_thread::sleep_for(50ms);
    return seen;
  }
  std::string Prepared() {
    return Scalar(observer_, "select count(*) from pg_prepared_xacts where gid like 'xa-%'");
  }

  PGconn* observer_ = nullptr;    // bank A's database; pg_prepared_xacts covers the cluster
  PGconn* observer_b_ = nullptr;  // bank B's database
  std::unique_ptr<Bank> a_, b_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<ParticipantServer> participant_;
  std::atomic<int64_t> amount_{30};
  std::atomic<int64_t> credit_{30};
  std::atomic<bool> fail_commits_{false};
};

TEST_F(XaPg, CommitMovesTheMoneyInBothDatabases) {
  ASSERT_TRUE(Transfer("xa-commit").ok());
  EXPECT_EQ(client_->WaitFinal("xa-commit", 10s)->status, "succeed");
  ExpectBalances(70, 30);
}

TEST_F(XaPg, RefusedBranchRollsEverythingBack) {
  amount_ = 130;  // more than account A holds: the debit refuses, nothing moves
  Status s = Transfer("xa-refused");
  EXPECT_EQ(s.code(), Code::kConflict) << s.ToString();
  EXPECT_EQ(client_->WaitFinal("xa-refused", 10s)->status, "failed");
  ExpectBalances(100, 0);

  amount_ = 30;
  credit_ = -1000;  // the second branch refuses after the first one prepared: it is rolled back
  s = Transfer("xa-refused-2");
  EXPECT_EQ(s.code(), Code::kConflict) << s.ToString();
  EXPECT_EQ(client_->WaitFinal("xa-refused-2", 10s)->status, "failed");
  ExpectBalances(100, 0);
}

BranchRequest Call(const std::string& gid, const std::string& op) {
  BranchRequest r;
  r.gid = gid;
  r.branch_id = "01";
  r.trans_type = "xa";
  r.op = op;
  return r;
}

TEST_F(XaPg, DuplicateCommitAndRollbackAndNullRollback) {
  ASSERT_TRUE(Transfer("xa-dup").ok());
  EXPECT_EQ(a_->Handle(Call("xa-dup", "commit"), 0).status, 200);  // a second commit: success
  ExpectBalances(70, 30);
  // A rollback of a branch that never ran (null rollback) succeeds and fences the branch: the
  // late action refuses and changes nothing.
  EXPECT_EQ(a_->Handle(Call("xa-null", "rollback"), 0).status, 200);
  EXPECT_EQ(a_->Handle(Call("xa-null", "rollback"), 0).status, 200);
  BranchRequest late = Call("xa-null", "action");
  late.query = "dtm=" + server_->Base() + "/api/dtmsvr&phase2_url=http://127.0.0.1:1/x";
  EXPECT_EQ(a_->Handle(late, -30).status, 409);
  ExpectBalances(70, 30);
}

TEST_F(XaPg, ParticipantCrashBetweenPrepareAndCommit) {
  // Both branches prepare; the participant then dies before the coordinator's commits arrive.
  XaOptions options;
  const std::string base = participant_->base_url();
  const uint16_t port = participant_->port();
  Status s = XaGlobalTransaction(*client_, "xa-crash", options, [&](Xa& xa) {
    auto r = xa.CallBranch("{}", base + "/xa/debit");
    if (!r.ok()) return r.status();
    r = xa.CallBranch("{}", base + "/xa/credit");
    if (!r.ok()) return r.status();
    participant_->Stop();  // the "crash": no server, connections gone
    a_->Close();
    b_->Close();
    return Status::Ok();
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::this_thread::sleep_for(600ms);  // a few failed commit rounds
  EXPECT_EQ(Prepared(), "2");          // the prepared transactions survived the crash
  ExpectBalances(100, 0);              // and are not visible yet (they hold their row locks)
  a_->Reopen();
  b_->Reopen();
  StartParticipant(port);  // restart: the coordinator's retries commit
  EXPECT_EQ(client_->WaitFinal("xa-crash", 15s)->status, "succeed");
  ExpectBalances(70, 30);
}

TEST_F(XaPg, InDoubtRecoveryAsksTheCoordinator) {
  fail_commits_ = true;  // bank B's commits fail: its branch stays prepared (in doubt)
  ASSERT_TRUE(Transfer("xa-doubt", /*wait_result=*/false).ok());
  EXPECT_EQ(WaitPrepared("1"), "1");  // bank A committed, bank B's commit keeps failing
  auto report = RecoverPreparedXa(b_->conn(), *client_, 0s, b_->options());
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->committed, 1);
  EXPECT_EQ(Prepared(), "0");
  ExpectBalances(70, 30);
  fail_commits_ = false;  // the coordinator's next commit finds the xid gone: success
  EXPECT_EQ(client_->WaitFinal("xa-doubt", 15s)->status, "succeed");
}

TEST_F(XaPg, CoordinatorKilledBetweenThePhases) {
  fail_commits_ = true;  // submit is stored, the commit round cannot finish
  ASSERT_TRUE(Transfer("xa-coord", /*wait_result=*/false).ok());
  std::this_thread::sleep_for(300ms);
  server_->Kill();  // SIGKILL between phase one and phase two
  fail_commits_ = false;
  ASSERT_TRUE(server_->Start());  // same store: recovery resumes the commit round
  client_ = std::make_unique<Client>(server_->Base() + "/api/dtmsvr");
  EXPECT_EQ(client_->WaitFinal("xa-coord", 15s)->status, "succeed");
  ExpectBalances(70, 30);
}

}  // namespace
}  // namespace dtx::testing
