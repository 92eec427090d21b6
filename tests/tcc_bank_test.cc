// End-to-end tests of TCC with the real `dtx server` binary (tests/support/harness.h), the TCC SDK
// (include/dtx/tcc.h) and the sub-transaction barrier (include/dtx/barrier.h):
//
//  - TccSdkE2E: the scope against scriptable participants: normal confirm in reverse order, a
//  failed
//    Try rolls back (the failed branch is cancelled too), an exception aborts, a scope that
//    outlives timeout_to_fail is refused at its next registration, a nested TCC from a participant.
//  - TccBank: the bank-style invariant test of issue 3. A bank participant (in-process
//    ParticipantServer) keeps accounts in SQLite, or PostgreSQL when DTX_TEST_PG_URL is set, and
//    protects TransOut (Try freezes, Confirm debits the frozen amount, Cancel unfreezes) and
//    TransIn (Try records a pending credit, Confirm credits, Cancel drops it) with the barrier.
//    Many concurrent transfers run through the SDK while a fault-injecting wrapper around the
//    handlers answers FAILURE or 500 before running, 500 after committing, runs a request twice at
//    once or replays it later, and holds a Try until its Cancel has overtaken it. Some applications
//    also walk away after their Tries (the coordinator cancels them after timeout_to_fail). When
//    every transaction is final: the sum of balances is unchanged, no balance is negative, nothing
//    is left frozen or pending, every succeeded transfer moved exactly its amount and every failed
//    one moved nothing (against the coordinator's final states), and no late Try ever ran after its
//    Cancel. All waits are bounded.
//
// Environment: DTX_TEST_PG_URL enables the PostgreSQL variant (scripts/test.sh sets it);
// DTX_TCC_BANK_SEED fixes the fault dice; DTX_TCC_BANK_TRANSFERS changes the number of transfers.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "dtx/barrier.h"
#include "dtx/client.h"
#include "dtx/participant.h"
#include "dtx/tcc.h"
#include "examples/tcc_payment/sql_conn.h"
#include "tests/support/harness.h"

namespace dtx::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using tcc_payment::AsInt;
using tcc_payment::AsText;
using tcc_payment::ConnPool;
using tcc_payment::SqlConn;

const char* PgUrl() {
  const char* url = std::getenv("DTX_TEST_PG_URL");
  return url != nullptr && *url != '\0' ? url : nullptr;
}

std::vector<std::string> ServerArgs() {
  return {"--retry-interval",  "0.3", "--cron-interval", "0.1",
          "--request-timeout", "3",   "--log-level",     "warn"};
}

// ---------------------------------------------------------------------------------------------------
// TccSdkE2E

class TccSdkE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(TempDir("tcc-sdk"));
    server_ = new ServerProcess(*dir_ + "/dtx.db", ServerArgs());
    ASSERT_TRUE(server_->Start());
    busi_ = new Busi();
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(server_->Terminate(), 0);
    delete busi_;
    delete server_;
    if (!::testing::Test::HasFailure()) std::filesystem::remove_all(*dir_);
    delete dir_;
  }
  std::string Name() { return ::testing::UnitTest::GetInstance()->current_test_info()->name(); }
  std::string U(const std::string& path) { return busi_->Url("/" + Name() + path); }
  std::string P(const std::string& path) { return "/" + Name() + path; }
  std::string Api() const { return server_->Base() + "/api/dtmsvr"; }

  static std::string* dir_;
  static ServerProcess* server_;
  static Busi* busi_;
};
std::string* TccSdkE2E::dir_ = nullptr;
ServerProcess* TccSdkE2E::server_ = nullptr;
Busi* TccSdkE2E::busi_ = nullptr;

TEST_F(TccSdkE2E, ConfirmsInReverseOrderAfterAllTriesSucceed) {
  Client client(Api());
  const std::string gid = "sdk-confirm";
  TccOptions options;
  options.wait_result = true;
  options.branch_headers = {{"authorization", "Bearer t0ken"}};
  Status s = TccGlobalTransaction(client, gid, options, [&](Tcc& tcc) {
    for (const char* b : {"/a", "/b"}) {
      auto r = tcc.CallBranch(R"({"amount":30})", U(std::string(b) + "/try"),
                              U(std::string(b) + "/confirm"), U(std::string(b) + "/cancel"));
      if (!r.ok()) return r.status();
    }
    return Status::Ok();
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  TransView v = QueryTrans(*server_, gid);
  EXPECT_EQ(v.status, "succeed");
  EXPECT_EQ(v.branch_ops, (std::vector<std::string>{"cancel", "confirm", "cancel", "confirm"}));
  EXPECT_EQ(v.branch_status,
            (std::vector<std::string>{"prepared", "succeed", "prepared", "succeed"}));
  auto calls = busi_->CallsFor(gid);
  std::vector<std::string> order;
  for (const auto& c : calls) order.push_back(c.path);
  EXPECT_EQ(order,
            (std::vector<std::string>{P("/a/try"), P("/b/try"), P("/b/confirm"), P("/a/confirm")}));
  ASSERT_EQ(calls.size(), 4u);
  EXPECT_EQ(calls[0].query.at("op"), "try");
  EXPECT_EQ(calls[0].query.at("branch_id"), "01");
  EXPECT_EQ(calls[0].query.at("trans_type"), "tcc");
  EXPECT_EQ(calls[0].body, R"({"amount":30})");
  EXPECT_EQ(calls[0].headers.at("authorization"), "Bearer t0ken");
  EXPECT_EQ(calls[2].query.at("op"), "confirm");
  EXPECT_EQ(calls[2].body, R"({"amount":30})");  // the registered data goes to confirm
  EXPECT_EQ(calls[2].headers.at("authorization"), "Bearer t0ken");
}

TEST_F(TccSdkE2E, FailedTryRollsBackAndItsBranchIsCancelledToo) {
  busi_->Script(P("/b/try"), {BusiAnswer::Failure()});
  Client client(Api());
  const std::string gid = "sdk-rollback";
  TccOptions options;
  options.wait_result = true;
  Status s = TccGlobalTransaction(client, gid, options, [&](Tcc& tcc) {
    for (const char* b : {"/a", "/b", "/c"}) {
      auto r = tcc.CallBranch("{}", U(std::string(b) + "/try"), U(std::string(b) + "/confirm"),
                              U(std::string(b) + "/cancel"));
      if (!r.ok()) return r.status();
    }
    return Status::Ok();
  });
  EXPECT_EQ(s.code(), Code::kConflict) << s.ToString();
  TransView v = WaitStatus(*server_, gid, {"failed"});
  EXPECT_EQ(v.status, "failed");
  EXPECT_EQ(v.branch_status,
            (std::vector<std::string>{"succeed", "prepared", "succeed", "prepared"}));
  EXPECT_NE(v.rollback_reason.find("busi failure"), std::string::npos) << v.rollback_reason;
  EXPECT_EQ(busi_->CallCount(P("/c/try")), 0u);
  std::vector<std::string> order;
  for (const auto& c : busi_->CallsFor(gid)) order.push_back(c.path);
  EXPECT_EQ(order,
            (std::vector<std::string>{P("/a/try"), P("/b/try"), P("/b/cancel"), P("/a/cancel")}));
}

TEST_F(TccSdkE2E, ExceptionInTheBodyAbortsAndIsRethrown) {
  Client client(Api());
  const std::string gid = "sdk-throw";
  EXPECT_THROW(
      {
        (void)TccGlobalTransaction(client, gid, {}, [&](Tcc& tcc) -> Status {
          EXPECT_TRUE(tcc.CallBranch("{}", U("/try"), U("/confirm"), U("/cancel")).ok());
          throw std::runtime_error("lost the order");
        });
      },
      std::runtime_error);
  TransView v = WaitStatus(*server_, gid, {"failed"});
  EXPECT_EQ(v.status, "failed");
  EXPECT_EQ(v.rollback_reason, "exception: lost the order");
  EXPECT_EQ(v.branch_status, (std::vector<std::string>{"succeed", "prepared"}));
}

TEST_F(TccSdkE2E, ScopeThatOutlivesTimeoutToFailIsRefusedAndCancelled) {
  Client client(Api());
  const std::string gid = "sdk-timeout";
  TccOptions options;
  options.timeout_to_fail_s = 1;
  Status second;
  Status s = TccGlobalTransaction(client, gid, options, [&](Tcc& tcc) {
    auto r = tcc.CallBranch("{}", U("/a/try"), U("/a/confirm"), U("/a/cancel"));
    if (!r.ok()) return r.status();
    // The application hangs; the coordinator aborts after timeout_to_fail and cancels branch 01.
    EXPECT_TRUE(WaitFor([&] { return QueryTrans(*server_, gid).status == "failed"; }, 15s));
    second = tcc.CallBranch("{}", U("/b/try"), U("/b/confirm"), U("/b/cancel")).status();
    return second;
  });
  EXPECT_EQ(second.code(), Code::kConflict) << second.ToString();
  EXPECT_EQ(s.code(), Code::kConflict) << s.ToString();
  TransView v = QueryTrans(*server_, gid);
  EXPECT_EQ(v.status, "failed");
  EXPECT_NE(v.rollback_reason.find("Timeout"), std::string::npos) << v.rollback_reason;
  EXPECT_EQ(v.branch_status, (std::vector<std::string>{"succeed", "prepared"}));
  EXPECT_EQ(busi_->CallCount(P("/a/cancel")), 1u);
  EXPECT_EQ(busi_->CallCount(P("/b/try")), 0u);
}

TEST_F(TccSdkE2E, NestedTccFromAParticipantConfirmsTheInnerBranchFirst) {
  // A participant whose Try opens a nested TCC (DTM's TccFromQuery) for one sub-branch.
  ParticipantServer middle;
  middle.Handle("POST", "/mid/try", [&](const BranchRequest& r) {
    auto tcc = Tcc::FromRequest(r);
    if (!tcc.ok()) return BranchResult::Error(tcc.status().ToString());
    auto sub = tcc->CallBranch(r.body, U("/sub/try"), U("/sub/confirm"), U("/sub/cancel"));
    return sub.ok() ? BranchResult::Success() : BranchResult::Failure(sub.status().message());
  });
  ASSERT_TRUE(middle.Start().ok());
  Client client(Api());
  const std::string gid = "sdk-nested";
  TccOptions options;
  options.wait_result = true;
  Status s = TccGlobalTransaction(client, gid, options, [&](Tcc& tcc) {
    return tcc.CallBranch("{}", middle.base_url() + "/mid/try", U("/mid/confirm"), U("/mid/cancel"))
        .status();
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  TransView v = QueryTrans(*server_, gid);
  EXPECT_EQ(v.status, "succeed");
  std::vector<std::string> ids;
  for (const auto& b : v.raw.at("branches").as_array()) {
    ids.emplace_back(b.at("branch_id").as_string());
  }
  EXPECT_EQ(ids, (std::vector<std::string>{"01", "01", "0101", "0101"}));
  std::vector<std::string> order;
  for (const auto& c : busi_->CallsFor(gid))
    order.push_back(c.path + "#" + c.query.at("branch_id"));
  // Confirms in reverse registration order: the nested branch registered last, confirms first.
  EXPECT_EQ(order, (std::vector<std::string>{P("/sub/try#0101"), P("/sub/confirm#0101"),
                                             P("/mid/confirm#01")}));
  middle.Stop();
}

// ---------------------------------------------------------------------------------------------------
// TccBank: the bank participant with fault injection

struct TransferPayload {
  int64_t from = 0;
  int64_t to = 0;
  int64_t amount = 0;
};

std::string EncodeTransfer(const TransferPayload& t) {
  return json::serialize(json::object{{"from", t.from}, {"to", t.to}, {"amount", t.amount}});
}

Result<TransferPayload> DecodeTransfer(const std::string& body) {
  json::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) return Status::InvalidArgument("payload is not an object");
  const json::object& o = v.as_object();
  for (const char* k : {"from", "to", "amount"}) {
    if (!o.contains(k) || !o.at(k).is_int64()) {
      return Status::InvalidArgument(std::string("payload: '") + k + "' missing");
    }
  }
  return TransferPayload{o.at("from").as_int64(), o.at("to").as_int64(), o.at("amount").as_int64()};
}

// Probabilities of each fault, per delivery. Checked in this order; at most one of the "instead"
// faults applies to one delivery, the others can combine.
struct FaultPlan {
  double try_failure = 0.04;         // Try answers 409 FAILURE without running (instead)
  double error_before = 0.06;        // 500 without running (instead); any op
  double hold_until_cancel = 0.04;   // Try held until its Cancel ran (instead)
  double duplicate_at_once = 0.08;   // the request runs twice concurrently
  double replay_later = 0.06;        // the request runs again 20-400 ms after the answer
  double error_after_commit = 0.08;  // 500 although the local transaction committed
};

struct FaultCounters {
  std::atomic<int> deliveries{0};
  std::atomic<int> try_failure{0};
  std::atomic<int> error_before{0};
  std::atomic<int> held{0};
  std::atomic<int> held_overtaken{0};   // the held Try's Cancel came first; the Try did nothing
  std::atomic<int> held_unresolved{0};  // no Cancel within the bound (not an error by itself)
  std::atomic<int> duplicate_at_once{0};
  std::atomic<int> replay_later{0};
  std::atomic<int> error_after_commit{0};
  std::atomic<int> business_refusals{0};   // TransOut Try: insufficient balance
  std::atomic<int> null_compensations{0};  // a Cancel whose business code the barrier skipped
  std::atomic<int> skipped_duplicates{0};  // a Try/Confirm whose business code the barrier skipped
  std::atomic<int> db_errors{0};
  // Must stay 0: a held Try that ran after its Cancel (hanging), or business code that found the
  // state inconsistent with what the barrier promised.
  std::atomic<int> hanging{0};
  std::atomic<int> anomalies{0};
};

class Bank {
 public:
  Bank(std::string db_url, std::string schema, FaultPlan plan, uint64_t seed)
      : pool_(std::make_unique<ConnPool>(std::move(db_url), std::move(schema), 64)),
        plan_(plan),
        rng_(seed) {}

  ~Bank() { JoinBackground(); }

  Status Init(int accounts, int64_t initial_balance) {
    if (Status s =
            tcc_payment::CreatePgSchema(pool_->url(), pool_->pg_schema(), /*drop_first=*/true);
        !s.ok()) {
      return s;
    }
    auto conn = pool_->Acquire();
    if (!conn.ok()) return conn.status();
    if (Status s = (*conn)->ExecScript(
            "CREATE TABLE accounts (id BIGINT PRIMARY KEY,"
            " balance BIGINT NOT NULL CHECK (balance >= 0),"
            " frozen BIGINT NOT NULL CHECK (frozen >= 0));"
            "CREATE TABLE pending_in (gid VARCHAR(128) PRIMARY KEY, account BIGINT NOT NULL,"
            " amount BIGINT NOT NULL, status VARCHAR(16) NOT NULL);");
        !s.ok()) {
      return s;
    }
    if (Status s = (*conn)->EnsureBarrierTable(); !s.ok()) return s;
    for (int id = 1; id <= accounts; ++id) {
      auto r = (*conn)->Exec("INSERT INTO accounts (id, balance, frozen) VALUES (?, ?, 0)",
                             {int64_t{id}, initial_balance});
      if (!r.ok()) return r.status();
    }
    return Status::Ok();
  }

  void Register(ParticipantServer& server) {
    for (const std::string service : {"TransOut", "TransIn"}) {
      for (const std::string op : {"try", "confirm", "cancel"}) {
        server.Handle(
            "POST", "/" + service + "/" + op,
            [this, service, op](const BranchRequest& r) { return Serve(service, op, r); });
      }
    }
  }

  // Waits for the delayed replays (bounded by their own delays and the database).
  void JoinBackground() {
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mu_);
      threads.swap(background_);
    }
    for (auto& t : threads) t.join();
  }

  struct Account {
    int64_t balance = 0;
    int64_t frozen = 0;
  };
  Result<std::map<int64_t, Account>> Accounts() {
    auto conn = pool_->Acquire();
    if (!conn.ok()) return conn.status();
    auto rows = (*conn)->Query("SELECT id, balance, frozen FROM accounts ORDER BY id");
    if (!rows.ok()) return rows.status();
    std::map<int64_t, Account> out;
    for (const auto& row : *rows) out[AsInt(row[0])] = {AsInt(row[1]), AsInt(row[2])};
    return out;
  }
  // gid -> status of its TransIn row.
  Result<std::map<std::string, std::string>> PendingIn() {
    auto conn = pool_->Acquire();
    if (!conn.ok()) return conn.status();
    auto rows = (*conn)->Query("SELECT gid, status FROM pending_in");
    if (!rows.ok()) return rows.status();
    std::map<std::string, std::string> out;
    for (const auto& row : *rows) out[AsText(row[0])] = AsText(row[1]);
    return out;
  }
  Result<int64_t> BarrierRows() {
    auto conn = pool_->Acquire();
    if (!conn.ok()) return conn.status();
    auto rows = (*conn)->Query("SELECT COUNT(*) FROM " + (*conn)->barrier_table());
    if (!rows.ok()) return rows.status();
    return AsInt((*rows)[0][0]);
  }
  Status DropSchema() {
    if (!tcc_payment::IsPostgresUrl(pool_->url())) return Status::Ok();
    auto conn = pool_->Acquire();
    if (!conn.ok()) return conn.status();
    return (*conn)->ExecScript("DROP SCHEMA IF EXISTS " + pool_->pg_schema() + " CASCADE");
  }

  FaultCounters counters;

 private:
  double Dice() {
    std::lock_guard lock(mu_);
    return std::uniform_real_distribution<double>(0, 1)(rng_);
  }
  int RandomMs(int lo, int hi) {
    std::lock_guard lock(mu_);
    return std::uniform_int_distribution<int>(lo, hi)(rng_);
  }

  BranchResult Serve(const std::string& service, const std::string& op, const BranchRequest& r) {
    ++counters.deliveries;
    auto transfer = DecodeTransfer(r.body);
    if (!transfer.ok()) return BranchResult::Error(transfer.status().ToString());
    const bool is_try = op == "try";
    if (is_try && Dice() < plan_.try_failure) {
      ++counters.try_failure;
      return BranchResult::Failure("injected FAILURE");
    }
    if (Dice() < plan_.error_before) {
      ++counters.error_before;
      return BranchResult::Error("injected error before running");
    }
    if (is_try && Dice() < plan_.hold_until_cancel)
      return HoldUntilCancelled(service, r, *transfer);

    Status s;
    if (Dice() < plan_.duplicate_at_once) {
      ++counters.duplicate_at_once;
      Status twin;
      std::thread other([&] { twin = Run(service, r, *transfer, nullptr); });
      s = Run(service, r, *transfer, nullptr);
      other.join();
    } else {
      s = Run(service, r, *transfer, nullptr);
    }
    if (Dice() < plan_.replay_later) {
      ++counters.replay_later;
      const int delay_ms = RandomMs(20, 400);
      std::lock_guard lock(mu_);
      background_.emplace_back([this, service, r, t = *transfer, delay_ms] {
        std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
        (void)Run(service, r, t, nullptr);
      });
    }
    if (s.ok() && Dice() < plan_.error_after_commit) {
      ++counters.error_after_commit;
      return BranchResult::Error("injected error after commit");
    }
    return BarrierBranchResult(s);
  }

  // A Try delivered late: it waits until the Cancel of its branch has run (the application timed
  // out meanwhile and aborted), then runs; the barrier must make it a no-op.
  BranchResult HoldUntilCancelled(const std::string& service, const BranchRequest& r,
                                  const TransferPayload& t) {
    ++counters.held;
    const std::string key = r.gid + "/" + r.branch_id;
    bool cancelled = false;
    {
      std::unique_lock lock(mu_);
      cancelled = cancelled_cv_.wait_for(lock, 20s, [&] { return cancelled_.count(key) > 0; });
    }
    bool ran = false;
    Status s = Run(service, r, t, &ran);
    if (!cancelled) {
      ++counters.held_unresolved;
    } else if (ran) {
      ++counters.hanging;
      std::fprintf(stderr, "HANGING: %s Try of %s ran after its Cancel\n", service.c_str(),
                   key.c_str());
    } else {
      ++counters.held_overtaken;
    }
    return BarrierBranchResult(s);  // the application stopped waiting long ago
  }

  // One delivery through the barrier. `ran` reports whether the business code ran.
  Status Run(const std::string& service, const BranchRequest& r, const TransferPayload& t,
             bool* ran) {
    auto barrier = BranchBarrier::FromRequest(r);
    if (!barrier.ok()) return barrier.status();
    auto conn = pool_->Acquire(30s);
    if (!conn.ok()) {
      ++counters.db_errors;
      return conn.status();
    }
    bool business_ran = false;
    Status s = (*conn)->CallBarrier(*barrier, [&](SqlConn& tx) {
      business_ran = true;
      return service == "TransOut" ? TransOut(tx, r.op, r.gid, t) : TransIn(tx, r.op, r.gid, t);
    });
    if (ran != nullptr) *ran = business_ran;
    if (s.ok() && !business_ran) {
      if (r.op == "cancel") {
        ++counters.null_compensations;
      } else {
        ++counters.skipped_duplicates;
      }
    }
    if (!s.ok() && s.code() != Code::kConflict) ++counters.db_errors;
    if (s.ok() && r.op == "cancel") {
      std::lock_guard lock(mu_);
      cancelled_.insert(r.gid + "/" + r.branch_id);
      cancelled_cv_.notify_all();
    }
    return s;
  }

  Status Anomaly(const std::string& what) {
    ++counters.anomalies;
    std::fprintf(stderr, "ANOMALY: %s\n", what.c_str());
    return Status::Ok();  // let the transaction finish; the test fails on the counter
  }

  Status TransOut(SqlConn& tx, const std::string& op, const std::string& gid,
                  const TransferPayload& t) {
    if (op == "try") {
      auto r = tx.Exec(
          "UPDATE accounts SET balance = balance - ?, frozen = frozen + ? "
          "WHERE id = ? AND balance >= ?",
          {t.amount, t.amount, t.from, t.amount});
      if (!r.ok()) return r.status();
      if (*r == 0) {
        ++counters.business_refusals;
        return Status::Conflict("insufficient balance in account " + std::to_string(t.from));
      }
      return Status::Ok();
    }
    if (op == "confirm") {
      auto r = tx.Exec("UPDATE accounts SET frozen = frozen - ? WHERE id = ? AND frozen >= ?",
                       {t.amount, t.from, t.amount});
      if (!r.ok()) return r.status();
      return *r == 1 ? Status::Ok() : Anomaly("TransOut confirm of " + gid + ": nothing frozen");
    }
    auto r = tx.Exec(
        "UPDATE accounts SET balance = balance + ?, frozen = frozen - ? "
        "WHERE id = ? AND frozen >= ?",
        {t.amount, t.amount, t.from, t.amount});
    if (!r.ok()) return r.status();
    return *r == 1 ? Status::Ok() : Anomaly("TransOut cancel of " + gid + ": nothing frozen");
  }

  Status TransIn(SqlConn& tx, const std::string& op, const std::string& gid,
                 const TransferPayload& t) {
    if (op == "try") {
      return tx
          .Exec("INSERT INTO pending_in (gid, account, amount, status) VALUES (?, ?, ?, 'pending')",
                {gid, t.to, t.amount})
          .status();
    }
    if (op == "confirm") {
      auto r = tx.Exec(
          "UPDATE pending_in SET status = 'confirmed' WHERE gid = ? AND status = 'pending'", {gid});
      if (!r.ok()) return r.status();
      if (*r != 1) return Anomaly("TransIn confirm of " + gid + ": nothing pending");
      return tx.Exec("UPDATE accounts SET balance = balance + ? WHERE id = ?", {t.amount, t.to})
          .status();
    }
    auto r = tx.Exec(
        "UPDATE pending_in SET status = 'cancelled' WHERE gid = ? AND status = 'pending'", {gid});
    if (!r.ok()) return r.status();
    return *r == 1 ? Status::Ok() : Anomaly("TransIn cancel of " + gid + ": nothing pending");
  }

  std::unique_ptr<ConnPool> pool_;
  FaultPlan plan_;
  std::mutex mu_;  // guards rng_, background_, cancelled_
  std::mt19937_64 rng_;
  std::vector<std::thread> background_;
  std::set<std::string> cancelled_;
  std::condition_variable cancelled_cv_;
};

// What the application saw for one transfer.
enum class Outcome { kSubmitted, kSubmitError, kBodyFailed, kThrew, kAbandoned };

struct TransferRun {
  std::string gid;
  TransferPayload t;
  Outcome outcome = Outcome::kSubmitted;
  Status status;
  std::string final_status;
  TransactionInfo info;
};

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

// A silent application (PROTOCOL.md §1.7 item 5): prepare, register and try both branches with raw
// calls, then never submit. The coordinator aborts it after timeout_to_fail.
Status Abandon(const ServerProcess& server, const std::string& base, const std::string& gid,
               const std::string& payload) {
  HttpResult r =
      HttpFetch("POST", server.Api("prepare"), BuildTccTransBody(TccPhase::kPrepare, gid, [] {
                  TccOptions o;
                  o.timeout_to_fail_s = 2;
                  return o;
                }()));
  if (r.status != 200) return Status::Internal("prepare: " + r.body);
  const std::string dtm = server.Base() + "/api/dtmsvr";
  int branch = 0;
  for (const char* service : {"/TransOut", "/TransIn"}) {
    const std::string id = "0" + std::to_string(++branch);
    r = HttpFetch("POST", server.Api("registerBranch"),
                  BuildTccRegisterBody(gid, id, payload, base + service + "/confirm",
                                       base + service + "/cancel"));
    if (r.status != 200) return Status::Internal("registerBranch: " + r.body);
    r = HttpFetch("POST", BuildTccTryUrl(base + service + "/try", dtm, gid, id), payload, 2s);
    if (r.status != 200) break;  // a failed Try: the application gives up silently all the same
  }
  return Status::Ok();
}

void RunBank(const std::string& db_url, const std::string& label) {
  const uint64_t seed = static_cast<uint64_t>(EnvInt(
      "DTX_TCC_BANK_SEED", static_cast<int>(Clock::now().time_since_epoch().count() & 0xFFFFFFF)));
  const int kTransfers = EnvInt("DTX_TCC_BANK_TRANSFERS", 300);
  constexpr int kThreads = 16;
  constexpr int kAccounts = 20;
  constexpr int64_t kInitialBalance = 10'000;
  std::printf("[%s] seed %llu (DTX_TCC_BANK_SEED to repeat), %d transfers over %d threads\n",
              label.c_str(), static_cast<unsigned long long>(seed), kTransfers, kThreads);

  const std::string dir = TempDir("tcc-bank-" + label);
  ServerProcess server(dir + "/dtx.db", ServerArgs());
  ASSERT_TRUE(server.Start());

  const std::string schema = "tcc_bank_" + std::to_string(::getpid());
  Bank bank(db_url.empty() ? "sqlite:" + dir + "/bank.db" : db_url, schema, FaultPlan{}, seed);
  ASSERT_TRUE(bank.Init(kAccounts, kInitialBalance).ok());
  ParticipantOptions popts;
  popts.worker_threads = 48;
  ParticipantServer participant(popts);
  bank.Register(participant);
  ASSERT_TRUE(participant.Start().ok());
  const std::string base = participant.base_url();
  const std::string api = server.Base() + "/api/dtmsvr";

  // The transfers, decided up front from the seed.
  std::vector<TransferRun> runs(static_cast<size_t>(kTransfers));
  {
    std::mt19937_64 rng(seed ^ 0x5eed);
    std::uniform_int_distribution<int64_t> account(1, kAccounts);
    std::uniform_int_distribution<int64_t> amount(1, 3'000);
    for (int i = 0; i < kTransfers; ++i) {
      TransferRun& run = runs[static_cast<size_t>(i)];
      run.gid = "bank-" + label + "-" + std::to_string(seed) + "-" + std::to_string(i);
      run.t.from = account(rng);
      do {
        run.t.to = account(rng);
      } while (run.t.to == run.t.from);
      run.t.amount = amount(rng);
      const int kind = static_cast<int>(rng() % 100);
      if (kind < 3) {
        run.outcome = Outcome::kAbandoned;
      } else if (kind < 6) {
        run.outcome = Outcome::kThrew;
      }
    }
  }

  const auto start = Clock::now();
  std::atomic<size_t> next{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kThreads; ++w) {
    threads.emplace_back([&, w] {
      Client client(api);
      for (size_t i = next++; i < runs.size(); i = next++) {
        TransferRun& run = runs[i];
        const std::string payload = EncodeTransfer(run.t);
        if (run.outcome == Outcome::kAbandoned) {
          run.status = Abandon(server, base, run.gid, payload);
          continue;
        }
        TccOptions options;
        options.wait_result = (i + static_cast<size_t>(w)) % 2 == 0;
        options.timeout_to_fail_s = 8;
        options.request_timeout_s = 3;
        options.try_timeout = 1500ms;
        const bool throws = run.outcome == Outcome::kThrew;
        bool body_failed = false;
        try {
          run.status = TccGlobalTransaction(client, run.gid, options, [&](Tcc& tcc) {
            auto r = tcc.CallBranch(payload, base + "/TransOut/try", base + "/TransOut/confirm",
                                    base + "/TransOut/cancel");
            if (r.ok()) {
              r = tcc.CallBranch(payload, base + "/TransIn/try", base + "/TransIn/confirm",
                                 base + "/TransIn/cancel");
            }
            if (!r.ok()) {
              body_failed = true;  // the scope aborts
              return r.status();
            }
            if (throws) throw std::runtime_error("application crashed after its tries");
            return Status::Ok();
          });
          run.outcome = run.status.ok() ? Outcome::kSubmitted
                        : body_failed   ? Outcome::kBodyFailed
                                        : Outcome::kSubmitError;
        } catch (const std::runtime_error&) {
          run.outcome = Outcome::kThrew;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  const auto applications_done = Clock::now();

  // Every transaction final (bounded), then the late replays, then the participant's handlers.
  Client client(api);
  const auto deadline = Clock::now() + 120s;
  int not_final = 0;
  for (TransferRun& run : runs) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    auto info = client.WaitFinal(run.gid, std::max(left, std::chrono::milliseconds(1)), 50ms);
    if (!info.ok()) {
      ++not_final;
      ADD_FAILURE() << run.gid << " not final: " << info.status().ToString();
      continue;
    }
    run.final_status = info->status;
    run.info = *info;
  }
  const auto all_final = Clock::now();
  bank.JoinBackground();
  participant.Stop();

  // --- The invariants ---
  auto accounts = bank.Accounts();
  ASSERT_TRUE(accounts.ok()) << accounts.status().ToString();
  auto pending = bank.PendingIn();
  ASSERT_TRUE(pending.ok()) << pending.status().ToString();

  std::map<int64_t, int64_t> expected;
  for (int id = 1; id <= kAccounts; ++id) expected[id] = kInitialBalance;
  std::map<std::string, int> by_final;
  int sdk_ok_but_failed = 0, body_failed_but_succeeded = 0, wrong_branch_rows = 0;
  for (const TransferRun& run : runs) {
    ++by_final[run.final_status.empty() ? "not final" : run.final_status];
    if (run.final_status == "succeed") {
      expected[run.t.from] -= run.t.amount;
      expected[run.t.to] += run.t.amount;
      auto it = pending->find(run.gid);
      EXPECT_TRUE(it != pending->end() && it->second == "confirmed")
          << run.gid << " succeeded but its TransIn row is "
          << (it == pending->end() ? "missing" : it->second);
      for (const auto& b : run.info.branches) {
        if (b.op == "confirm" && b.status != "succeed") ++wrong_branch_rows;
      }
    } else if (run.final_status == "failed") {
      auto it = pending->find(run.gid);
      EXPECT_TRUE(it == pending->end() || it->second == "cancelled")
          << run.gid << " failed but its TransIn row is " << it->second;
      for (const auto& b : run.info.branches) {
        if (b.op == "cancel" && b.status != "succeed") ++wrong_branch_rows;
      }
    }
    // What the application was told agrees with the coordinator.
    if (run.outcome == Outcome::kSubmitted && run.final_status == "failed") ++sdk_ok_but_failed;
    if ((run.outcome == Outcome::kBodyFailed || run.outcome == Outcome::kThrew ||
         run.outcome == Outcome::kAbandoned) &&
        run.final_status == "succeed") {
      ++body_failed_but_succeeded;
    }
  }
  int64_t total = 0, frozen = 0, negative = 0, mismatched = 0;
  for (const auto& [id, a] : *accounts) {
    total += a.balance;
    frozen += a.frozen;
    if (a.balance < 0 || a.frozen < 0) ++negative;
    if (a.balance != expected[id]) {
      ++mismatched;
      ADD_FAILURE() << "account " << id << ": balance " << a.balance << ", expected "
                    << expected[id] << " from the coordinator's succeeded transfers";
    }
  }
  int left_pending = 0;
  for (const auto& [gid, status] : *pending) left_pending += status == "pending";

  const FaultCounters& c = bank.counters;
  int outcome_counts[5] = {0, 0, 0, 0, 0};
  for (const TransferRun& run : runs) ++outcome_counts[static_cast<int>(run.outcome)];
  std::printf(
      "[%s] transfers: %d succeeded, %d failed, %d not final | application saw: %d submitted ok, "
      "%d submit errors, %d try failures, %d exceptions, %d abandoned\n",
      label.c_str(), by_final["succeed"], by_final["failed"], not_final, outcome_counts[0],
      outcome_counts[1], outcome_counts[2], outcome_counts[3], outcome_counts[4]);
  std::printf(
      "[%s] deliveries %d | injected: try FAILURE %d, 500 before running %d, 500 after commit %d, "
      "duplicated at once %d, replayed later %d, reordered (Try held until its Cancel) %d "
      "(overtaken %d, unresolved %d)\n",
      label.c_str(), c.deliveries.load(), c.try_failure.load(), c.error_before.load(),
      c.error_after_commit.load(), c.duplicate_at_once.load(), c.replay_later.load(), c.held.load(),
      c.held_overtaken.load(), c.held_unresolved.load());
  std::printf(
      "[%s] barrier: %d null compensations, %d duplicate/late forward calls skipped, %lld rows | "
      "insufficient balance %d | db errors %d | hanging %d, anomalies %d\n",
      label.c_str(), c.null_compensations.load(), c.skipped_duplicates.load(),
      static_cast<long long>(bank.BarrierRows().ok() ? *bank.BarrierRows() : -1),
      c.business_refusals.load(), c.db_errors.load(), c.hanging.load(), c.anomalies.load());
  std::printf(
      "[%s] sum of balances %lld (initial %lld), frozen %lld, pending TransIn %d | "
      "applications %.1f s, until all final %.1f s\n",
      label.c_str(), static_cast<long long>(total),
      static_cast<long long>(kAccounts * kInitialBalance), static_cast<long long>(frozen),
      left_pending, std::chrono::duration<double>(applications_done - start).count(),
      std::chrono::duration<double>(all_final - start).count());

  EXPECT_EQ(not_final, 0);
  EXPECT_EQ(total, kAccounts * kInitialBalance) << "money was created or destroyed";
  EXPECT_EQ(frozen, 0) << "frozen amounts left behind";
  EXPECT_EQ(negative, 0);
  EXPECT_EQ(mismatched, 0);
  EXPECT_EQ(left_pending, 0) << "TransIn rows left pending";
  EXPECT_EQ(wrong_branch_rows, 0) << "final transactions with unfinished confirm/cancel rows";
  EXPECT_EQ(sdk_ok_but_failed, 0) << "the SDK reported success for a transaction that failed";
  EXPECT_EQ(body_failed_but_succeeded, 0) << "an aborted transaction succeeded";
  EXPECT_EQ(c.hanging.load(), 0) << "a Try ran after its Cancel";
  EXPECT_EQ(c.anomalies.load(), 0);
  // The faults really happened (with 300 transfers each kind occurs many times).
  if (kTransfers >= 200) {
    EXPECT_GT(by_final["succeed"], 0);
    EXPECT_GT(by_final["failed"], 0);
    EXPECT_GT(c.duplicate_at_once.load() + c.replay_later.load(), 0);
    EXPECT_GT(c.held_overtaken.load(), 0);
    EXPECT_GT(c.error_after_commit.load(), 0);
    EXPECT_GT(c.null_compensations.load(), 0);
  }

  EXPECT_TRUE(bank.DropSchema().ok());
  EXPECT_EQ(server.Terminate(), 0);
  if (!::testing::Test::HasFailure()) std::filesystem::remove_all(dir);  // kept for a post-mortem
}

TEST(TccBank, InvariantsHoldUnderFaultsSqlite) { RunBank("", "sqlite"); }

TEST(TccBank, InvariantsHoldUnderFaultsPostgres) {
  const char* url = PgUrl();
  if (url == nullptr) {
    GTEST_SKIP() << "DTX_TEST_PG_URL is not set: the PostgreSQL bank test is skipped "
                    "(scripts/test.sh starts a private cluster and sets it)";
  }
  RunBank(url, "postgres");
}

}  // namespace
}  // namespace dtx::testing
