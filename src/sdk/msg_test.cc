// Tests of the transactional message (include/dtx/msg.h): the wire bodies as pure units, then
// DoAndSubmit's call sequence against a fake coordinator (a ParticipantServer on 127.0.0.1:0 that
// records prepare/submit/abort) with a real local database: SQLite (WAL, temp file) and PostgreSQL
// when DTX_TEST_PG_URL is set (each test in a fresh schema, dropped at the end). PROTOCOL.md §1.9,
// §4.5 and MSG-11. The real coordinator and crashing producers are in tests/msg_crash_test.cc.
#include "dtx/msg.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "dtx/barrier_pg.h"
#include "dtx/participant.h"

namespace dtx {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using Paths = std::vector<std::string>;

json::object ParseObject(const std::string& s) { return json::parse(s).as_object(); }

const char* PgUrl() {
  const char* url = std::getenv("DTX_TEST_PG_URL");
  return url != nullptr && *url != '\0' ? url : nullptr;
}

// ---------------------------------------------------------------------------------------------------
// A fake coordinator: records every call; answers are scriptable per operation.

struct Call {
  std::string op;  // "prepare", "submit", "abort", "newGid", "query"
  std::string raw_body;
  json::object body;
};

class FakeCoordinator {
 public:
  FakeCoordinator() {
    ParticipantOptions options;
    options.worker_threads = 2;
    server_ = std::make_unique<ParticipantServer>(options);
    for (const char* op : {"prepare", "submit", "abort", "newGid", "query"}) {
      server_->Handle("*", std::string("/api/dtmsvr/") + op, [this, op](const BranchRequest& r) {
        Call c;
        c.op = op;
        c.raw_body = r.body;
        if (!r.body.empty()) c.body = ParseObject(r.body);
        std::lock_guard lock(mu_);
        calls_.push_back(c);
        if (std::string(op) == "newGid") {
          return BranchResult::Custom(200, R"({"gid":"fresh-gid","dtm_result":"SUCCESS"})");
        }
        if (auto q = scripts_.find(op); q != scripts_.end() && !q->second.empty()) {
          BranchResult next = q->second.front();
          q->second.erase(q->second.begin());
          return next;
        }
        if (auto it = answers_.find(op); it != answers_.end()) return it->second;
        return BranchResult::Success();
      });
    }
    Status s = server_->Start();
    EXPECT_TRUE(s.ok()) << s.ToString();
  }

  std::string api() const { return server_->base_url() + "/api/dtmsvr"; }
  void Answer(const std::string& op, BranchResult r) {
    std::lock_guard lock(mu_);
    answers_[op] = std::move(r);
  }
  // Answers consumed in order before the default of Answer().
  void Script(const std::string& op, std::vector<BranchResult> answers) {
    std::lock_guard lock(mu_);
    scripts_[op] = std::move(answers);
  }
  std::vector<Call> calls() const {
    std::lock_guard lock(mu_);
    return calls_;
  }
  Paths ops() const {
    Paths out;
    for (const Call& c : calls()) out.push_back(c.op);
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::vector<Call> calls_;
  std::map<std::string, BranchResult> answers_;
  std::map<std::string, std::vector<BranchResult>> scripts_;
  std::unique_ptr<ParticipantServer> server_;
};

// A check-back request as the coordinator sends it (PROTOCOL.md §1.9).
BranchRequest CheckBackRequest(const std::string& gid) {
  BranchRequest r;
  r.method = "GET";
  r.path = "/qp";
  r.gid = gid;
  r.trans_type = "msg";
  r.branch_id = "00";
  r.op = "msg";
  return r;
}

// ---------------------------------------------------------------------------------------------------
// Bodies and validation (no database)

TEST(MsgBodies, PlainSubmitCarriesStepsPayloadsDelayAndOptions) {
  Client client("http://127.0.0.1:1/api/dtmsvr");
  Msg msg(client, "g1");
  msg.Add("http://busi/a1", R"({"amount":30})")
      .Add("http://busi/a2", "")
      .SetConcurrent()
      .SetDelay(10)
      .SetWaitResult(true)
      .SetTimeoutToFail(60)
      .SetRetryInterval(15)
      .SetRequestTimeout(4)
      .SetBranchHeaders({{"X-Token", "t"}});
  EXPECT_EQ(ParseObject(msg.BuildBody(MsgPhase::kSubmit)),
            ParseObject(R"({"gid":"g1","trans_type":"msg",)"
                        R"("steps":[{"action":"http://busi/a1"},{"action":"http://busi/a2"}],)"
                        R"("payloads":["{\"amount\":30}",""],"custom_data":"{\"delay\":10}",)"
                        R"("concurrent":true,"wait_result":true,"timeout_to_fail":60,)"
                        R"("request_timeout":4,"retry_interval":15,)"
                        R"("branch_headers":{"X-Token":"t"}})"));
  // custom_data is a JSON string, not an object (PROTOCOL.md §1.3).
  EXPECT_TRUE(ParseObject(msg.BuildBody(MsgPhase::kSubmit)).at("custom_data").is_string());
}

TEST(MsgBodies, MinimalBodies) {
  Client client("http://127.0.0.1:1/api/dtmsvr");
  Msg msg(client, "g2");
  msg.Add("http://busi/a", "x");
  EXPECT_EQ(msg.BuildBody(MsgPhase::kSubmit),
            R"({"gid":"g2","trans_type":"msg","steps":[{"action":"http://busi/a"}],)"
            R"("payloads":["x"]})");
  EXPECT_EQ(msg.BuildBody(MsgPhase::kAbort), R"({"gid":"g2","trans_type":"msg"})");
}

TEST(MsgBodies, DelayGoesOnlyWithSubmitAndQueryPreparedWithBothPhases) {
  FakeCoordinator fake;
  Client client(fake.api());
  Msg msg(client, "g3");
  msg.Add("http://busi/a", "x").SetDelay(5).SetTimeoutToFail(7);
  ASSERT_TRUE(msg.Prepare("http://busi/qp").ok());
  ASSERT_TRUE(msg.Submit().ok());
  ASSERT_TRUE(msg.Abort().ok());  // the fake accepts it; the body shape is what matters
  auto calls = fake.calls();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0].body,
            ParseObject(R"({"gid":"g3","trans_type":"msg","steps":[{"action":"http://busi/a"}],)"
                        R"("payloads":["x"],"query_prepared":"http://busi/qp",)"
                        R"("timeout_to_fail":7})"));
  EXPECT_EQ(calls[1].body.at("custom_data"), R"({"delay":5})");
  EXPECT_EQ(calls[1].body.at("query_prepared"), "http://busi/qp");
  EXPECT_EQ(calls[2].body, ParseObject(R"({"gid":"g3","trans_type":"msg","timeout_to_fail":7})"));
}

TEST(MsgValidation, RefusedBeforeAnythingIsSent) {
  FakeCoordinator fake;
  Client client(fake.api());
  Msg empty(client, "g");
  EXPECT_EQ(empty.Submit().code(), Code::kInvalidArgument);
  Msg no_url(client, "g");
  no_url.Add("", "x");
  EXPECT_EQ(no_url.Submit().code(), Code::kInvalidArgument);
  Msg no_qp(client, "g");
  no_qp.Add("http://busi/a", "x");
  EXPECT_EQ(no_qp.Prepare("").code(), Code::kInvalidArgument);
  Msg negative(client, "g");
  negative.Add("http://busi/a", "x").SetDelay(-1);
  EXPECT_EQ(negative.Submit().code(), Code::kInvalidArgument);
  Msg no_gid(client, "");
  EXPECT_EQ(no_gid.Abort().code(), Code::kInvalidArgument);
  EXPECT_TRUE(fake.calls().empty());
}

TEST(MsgSubmit, PlainMessageFetchesAGidWhenNoneIsGiven) {
  FakeCoordinator fake;
  Client client(fake.api());
  Msg msg(client, "");
  msg.Add("http://busi/a", "x");
  ASSERT_TRUE(msg.Submit().ok());
  EXPECT_EQ(msg.gid(), "fresh-gid");
  EXPECT_EQ(fake.ops(), (Paths{"newGid", "submit"}));
  EXPECT_EQ(fake.calls()[1].body.at("gid"), "fresh-gid");
  EXPECT_FALSE(fake.calls()[1].body.contains("query_prepared"));
}

TEST(MsgSubmit, CoordinatorErrorsAreReturned) {
  FakeCoordinator fake;
  fake.Answer("submit", BranchResult::Custom(409, R"({"dtm_result":"FAILURE","message":"no"})"));
  Client client(fake.api());
  Msg msg(client, "g");
  msg.Add("http://busi/a", "x");
  EXPECT_EQ(msg.Submit().code(), Code::kConflict);
}

TEST(LocalOutcome, Names) {
  EXPECT_EQ(LocalOutcomeName(LocalOutcome::kNotRun), "not run");
  EXPECT_EQ(LocalOutcomeName(LocalOutcome::kCommitted), "committed");
  EXPECT_EQ(LocalOutcomeName(LocalOutcome::kRolledBack), "rolled back");
  EXPECT_EQ(LocalOutcomeName(LocalOutcome::kUnknown), "unknown");
}

// ---------------------------------------------------------------------------------------------------
// Databases: one connection + its barrier adapter, a business table `trades(xid)`.

class Db {
 public:
  virtual ~Db() = default;
  virtual BarrierDb& barrier() = 0;
  // Inserts a trade on this connection (inside the open transaction when there is one).
  virtual Status InsertTrade(const std::string& xid) = 0;
  virtual int64_t Count(const std::string& table_and_where) = 0;
  // The reason of the msg check-back row of `gid`, "" when there is none.
  virtual std::string BarrierReason(const std::string& gid) = 0;
};

class SqliteTestDb final : public Db {
 public:
  explicit SqliteTestDb(const std::string& path) {
    EXPECT_EQ(sqlite3_open(path.c_str(), &raw_), SQLITE_OK);
    Exec("pragma journal_mode=wal");
    db_ = std::make_unique<SqliteDb>(raw_);
    EXPECT_TRUE(db_->EnsureTable().ok());
    Exec("create table if not exists trades(xid text primary key)");
  }
  ~SqliteTestDb() override {
    db_.reset();
    sqlite3_close(raw_);
  }
  sqlite3* raw() const { return raw_; }
  SqliteDb& adapter() { return *db_; }
  BarrierDb& barrier() override { return *db_; }
  void Exec(const std::string& sql) {
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(raw_, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK)
        << (err ? err : "");
    sqlite3_free(err);
  }
  Status InsertTrade(const std::string& xid) override { return InsertTradeOn(raw_, xid); }
  static Status InsertTradeOn(sqlite3* db, const std::string& xid) {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "insert into trades(xid) values(?1)", -1, &st, nullptr);
    sqlite3_bind_text(st, 1, xid.c_str(), -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_CONSTRAINT) return Status::Conflict("trade " + xid + " exists");
    if (rc != SQLITE_DONE) return Status::Unavailable(sqlite3_errmsg(db));
    return Status::Ok();
  }
  int64_t Count(const std::string& what) override {
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(raw_, ("select count(*) from " + what).c_str(), -1, &st, nullptr),
              SQLITE_OK)
        << sqlite3_errmsg(raw_);
    int64_t n = -1;
    if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
  }
  std::string BarrierReason(const std::string& gid) override {
    auto r = db_->SelectReason(gid, "00", "msg", "01");
    return r.ok() ? *r : "";
  }

 private:
  sqlite3* raw_ = nullptr;
  std::unique_ptr<SqliteDb> db_;
};

class PgTestDb final : public Db {
 public:
  PgTestDb(const std::string& url, const std::string& schema) : schema_(schema) {
    raw_ = PQconnectdb(url.c_str());
    EXPECT_EQ(PQstatus(raw_), CONNECTION_OK) << PQerrorMessage(raw_);
    Exec("set client_min_messages = warning");
    Exec("create schema if not exists " + schema);
    PgBarrierOptions o;
    o.table = schema + ".barrier";
    db_ = std::make_unique<PgDb>(raw_, o);
    // Concurrent first EnsureTable calls may race; the fixture calls it once, first.
    (void)db_->EnsureTable();
    Exec("create table if not exists " + schema + ".trades(xid text primary key)");
  }
  ~PgTestDb() override {
    db_.reset();
    PQfinish(raw_);
  }
  PGconn* raw() const { return raw_; }
  PgDb& adapter() { return *db_; }
  BarrierDb& barrier() override { return *db_; }
  void Exec(const std::string& sql) {
    PGresult* res = PQexec(raw_, sql.c_str());
    EXPECT_EQ(PQresultStatus(res), PGRES_COMMAND_OK) << sql << ": " << PQresultErrorMessage(res);
    PQclear(res);
  }
  Status InsertTrade(const std::string& xid) override { return InsertTradeOn(raw_, schema_, xid); }
  static Status InsertTradeOn(PGconn* conn, const std::string& schema, const std::string& xid) {
    const std::string sql = "insert into " + schema + ".trades(xid) values($1)";
    const char* params[] = {xid.c_str()};
    PGresult* res = PQexecParams(conn, sql.c_str(), 1, nullptr, params, nullptr, nullptr, 0);
    Status s;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
      const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
      s = state != nullptr && std::string(state) == "23505"
              ? Status::Conflict("trade " + xid + " exists")
              : Status::Unavailable(PQresultErrorMessage(res));
    }
    PQclear(res);
    return s;
  }
  int64_t Count(const std::string& what) override {
    PGresult* res = PQexec(raw_, ("select count(*) from " + schema_ + "." + what).c_str());
    int64_t n = -1;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
      n = std::atoll(PQgetvalue(res, 0, 0));
    }
    PQclear(res);
    return n;
  }
  std::string BarrierReason(const std::string& gid) override {
    auto r = db_->SelectReason(gid, "00", "msg", "01");
    return r.ok() ? *r : "";
  }

 private:
  std::string schema_;
  PGconn* raw_ = nullptr;
  std::unique_ptr<PgDb> db_;
};

// Delegates to a real adapter, with injectable failures.
class FaultyDb final : public BarrierDb {
 public:
  explicit FaultyDb(BarrierDb& inner) : inner_(inner) {}
  // Commit commits, then reports a lost connection: the outcome looks unknown to the caller.
  bool commit_then_fail = false;
  // Commit rolls back and fails.
  bool commit_fails = false;
  // Inserts outside a transaction (the check-back) fail.
  bool autocommit_insert_fails = false;

  Status Begin() override { return inner_.Begin(); }
  Result<int> InsertIgnore(const BarrierRow& row) override {
    if (autocommit_insert_fails && !inner_.InTransaction()) {
      return Status::Unavailable("connection lost");
    }
    return inner_.InsertIgnore(row);
  }
  Result<std::string> SelectReason(std::string_view gid, std::string_view branch_id,
                                   std::string_view op, std::string_view barrier_id) override {
    return inner_.SelectReason(gid, branch_id, op, barrier_id);
  }
  Status Commit() override {
    if (commit_fails) {
      inner_.Rollback();
      return Status::Unavailable("commit failed: connection lost");
    }
    Status s = inner_.Commit();
    if (s.ok() && commit_then_fail) return Status::Unavailable("connection lost during COMMIT");
    return s;
  }
  void Rollback() override { inner_.Rollback(); }
  bool InTransaction() const override { return inner_.InTransaction(); }

 private:
  BarrierDb& inner_;
};

class DoAndSubmitTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "Postgres") {
      const char* url = PgUrl();
      if (url == nullptr) {
        GTEST_SKIP() << "DTX_TEST_PG_URL is not set: PostgreSQL msg tests skipped "
                        "(scripts/test.sh starts a private cluster and sets it)";
      }
      static std::atomic<int> counter{0};
      url_ = url;
      schema_ = "dtx_mt_" + std::to_string(getpid()) + "_" + std::to_string(counter++);
      db_ = std::make_unique<PgTestDb>(url_, schema_);
    } else {
      std::string tmpl = (std::filesystem::temp_directory_path() / "dtx_msg_XXXXXX").string();
      ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
      dir_ = tmpl;
      db_ = std::make_unique<SqliteTestDb>(dir_ + "/producer.db");
    }
    client_ = std::make_unique<Client>(fake_.api());
  }
  void TearDown() override {
    db_.reset();
    if (!schema_.empty()) {
      PGconn* c = PQconnectdb(url_.c_str());
      PQclear(PQexec(c, "set client_min_messages = warning"));
      PQclear(PQexec(c, ("drop schema if exists " + schema_ + " cascade").c_str()));
      PQfinish(c);
    }
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  // A second connection to the same database (a check-back served by another worker or process).
  std::unique_ptr<Db> OtherConnection() {
    if (!schema_.empty()) return std::make_unique<PgTestDb>(url_, schema_);
    return std::make_unique<SqliteTestDb>(dir_ + "/producer.db");
  }

  Msg NewMsg(const std::string& gid) {
    Msg msg(*client_, gid);
    msg.Add("http://user/apply", R"({"xid":"x"})");
    return msg;
  }

  FakeCoordinator fake_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<Db> db_;
  std::string dir_;
  std::string url_;
  std::string schema_;
};

INSTANTIATE_TEST_SUITE_P(Databases, DoAndSubmitTest, ::testing::Values("Sqlite", "Postgres"),
                         [](const auto& info) { return info.param; });

TEST_P(DoAndSubmitTest, BusinessOkCommitsAndSubmits) {
  Msg msg = NewMsg("ok-1");
  int runs = 0;
  Status s = msg.DoAndSubmit("http://producer/qp", db_->barrier(), [&] {
    ++runs;
    return db_->InsertTrade("t1");
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(msg.local_outcome(), LocalOutcome::kCommitted);
  EXPECT_EQ(fake_.ops(), (Paths{"prepare", "submit"}));
  auto calls = fake_.calls();
  EXPECT_EQ(calls[0].body.at("query_prepared"), "http://producer/qp");
  EXPECT_EQ(calls[0].body.at("steps"), json::parse(R"([{"action":"http://user/apply"}])"));
  EXPECT_EQ(db_->Count("trades where xid = 't1'"), 1);
  EXPECT_EQ(db_->BarrierReason("ok-1"), "msg");
  // The check-back now answers SUCCESS, exactly.
  auto other = OtherConnection();
  BranchResult r = QueryPrepared(CheckBackRequest("ok-1"), other->barrier());
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"dtm_result":"SUCCESS"})");
}

TEST_P(DoAndSubmitTest, BusinessFailureAbortsAndCommitsNothing) {
  Msg msg = NewMsg("fail-1");
  Status s = msg.DoAndSubmit("http://producer/qp", db_->barrier(), [&] {
    Status ins = db_->InsertTrade("t2");  // written, then rolled back with the barrier row
    EXPECT_TRUE(ins.ok()) << ins.ToString();
    return Status::Conflict("seller cannot buy from himself");
  });
  EXPECT_EQ(s.code(), Code::kConflict);
  EXPECT_EQ(s.message(), "seller cannot buy from himself");
  EXPECT_EQ(msg.local_outcome(), LocalOutcome::kRolledBack);
  EXPECT_EQ(fake_.ops(), (Paths{"prepare", "abort"}));
  EXPECT_EQ(fake_.calls()[1].body, ParseObject(R"({"gid":"fail-1","trans_type":"msg"})"));
  EXPECT_EQ(db_->Count("trades"), 0);
  EXPECT_EQ(db_->BarrierReason("fail-1"), "");
  // A late check-back answers FAILURE (and fences the gid).
  BranchResult r = QueryPrepared(CheckBackRequest("fail-1"), db_->barrier());
  EXPECT_EQ(r.status, 409);
  EXPECT_NE(r.body.find("FAILURE"), std::string::npos);
}

TEST_P(DoAndSubmitTest, Msg11CheckBackBeforeTheLocalTransactionGivesDuplicated) {
  // The coordinator checked back first (the producer was slow): the rollback marker wins.
  auto other = OtherConnection();
  BranchResult r = QueryPrepared(CheckBackRequest("dup-1"), other->barrier());
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(db_->BarrierReason("dup-1"), "rollback");

  Msg msg = NewMsg("dup-1");
  bool ran = false;
  Status s = msg.DoAndSubmit("http://producer/qp", db_->barrier(), [&] {
    ran = true;
    return db_->InsertTrade("t3");
  });
  EXPECT_EQ(s.code(), Code::kAlreadyExists);
  EXPECT_EQ(s.message(), kDuplicatedMessage);
  EXPECT_FALSE(ran) << "business code must be skipped";
  EXPECT_EQ(msg.local_outcome(), LocalOutcome::kRolledBack);
  EXPECT_EQ(fake_.ops(), (Paths{"prepare", "abort"}));
  EXPECT_EQ(db_->Count("trades"), 0);
}

TEST_P(DoAndSubmitTest, OtherBusinessErrorChecksBackItselfAndAborts) {
  Msg msg = NewMsg("err-1");
  Status s = msg.DoAndSubmit("http://producer/qp", db_->barrier(),
                             [&] { return Status::Unavailable("inventory db down"); });
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_EQ(s.message(), "inventory db down");
  EXPECT_EQ(msg.local_outcome(), LocalOutcome::kRolledBack);
  EXPECT_EQ(fake_.ops(), (Paths{"prepare", "abort"}));
  // The SDK's own check-back planted the rollback marker: a later attempt cannot commit.
  EXPECT_EQ(db_->BarrierReason("err-1"), "rollback");
}

TEST_P(DoAndSubmitTest, CommitOutcomeUnknownButCommittedIsSubmitted) {
  FaultyDb faulty(db_->barrier());
  faulty.commit_then_fail = true;
  Msg msg = NewMsg("lost-commit-1");
  Status s = msg.DoAndSubmit("http://producer/qp", faulty, [&] { return db_->InsertTrade("t4"); });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(msg.local_outcome(), LocalOutcome::kCommitted);
  EXPECT_EQ(fake_.ops(), (Paths{"prepare", "submit"}));
  EXPECT_EQ(db_->Count("trades"), 1);
}

TEST_P(DoAndSubmitTest, CommitFailedIsCheckedBackAndAborted) {
  FaultyDb faulty(db_->barrier());
  faulty.commit_fails = true;
  Msg msg = NewMsg("failed-commit-1");
  Status s = msg.DoAndSubmit("http://producer/qp", faulty, [&] { return db_->InsertTrade("t5"); });
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_EQ(msg.local_outcome(), LocalOutcome::kRolledBack);
  EXPECT_EQ(fake_.ops(), (Paths{"prepare", "abort"}));
  EXPECT_EQ(db_->Count("trades"), 0);
}

TEST_P(DoAndSubmitTest, UnanswerableCheckBackLeavesTheDecisionToTheCoordinator) {
  FaultyDb faulty(db_->barrier());
  faulty.commit_fails = true;
  faulty.autocommit_insert_fails = true;
  Msg msg = NewMsg("unknown-1");
  Status s = msg.DoAndSubmit("http://producer/qp", faulty, [&] { return db_->InsertTrade("t6"); });
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_NE(s.message().find("the coordinator decides later"), std::string::npos) << s.message();
  EXPECT_EQ(msg.local_outcome(), LocalOutcome::kUnknown);
  EXPECT_EQ(fake_.ops(), (Paths{"prepare"})) << "neither submit nor abort";
  // The coordinator's check-back, once the database answers again, decides FAILURE.
  EXPECT_EQ(QueryPrepared(CheckBackRequest("unknown-1"), db_->barrier()).status, 409);
}

TEST_P(DoAndSubmitTest, PrepareRefusedMeansTheBusinessCodeNeverRuns) {
  fake_.Answer("prepare",
               BranchResult::Custom(409, R"({"dtm_result":"FAILURE","message":"current status"})"));
  Msg msg = NewMsg("refused-1");
  bool ran = false;
  Status s = msg.DoAndSubmit("http://producer/qp", db_->barrier(), [&] {
    ran = true;
    return Status::Ok();
  });
  EXPECT_EQ(s.code(), Code::kConflict);
  EXPECT_FALSE(ran);
  EXPECT_EQ(msg.local_outcome(), LocalOutcome::kNotRun);
  EXPECT_EQ(fake_.ops(), (Paths{"prepare"}));
  EXPECT_EQ(db_->BarrierReason("refused-1"), "");
}

TEST_P(DoAndSubmitTest, SubmitFailureAfterCommitKeepsTheMessageForTheCheckBack) {
  fake_.Answer("submit", BranchResult::Error("coordinator restarting"));
  Msg msg = NewMsg("nosubmit-1");
  Status s =
      msg.DoAndSubmit("http://producer/qp", db_->barrier(), [&] { return db_->InsertTrade("t7"); });
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(msg.local_outcome(), LocalOutcome::kCommitted) << "the message is not lost";
  EXPECT_EQ(fake_.ops(), (Paths{"prepare", "submit"}));
  EXPECT_EQ(QueryPrepared(CheckBackRequest("nosubmit-1"), db_->barrier()).status, 200);
}

TEST_P(DoAndSubmitTest, SubmitLosingTheRaceWithTheCheckBackIsOk) {
  // The local transaction outlasted timeout_to_fail: the coordinator checked back, found the
  // commit and submitted; our own submit then gets 409. The message is delivered: ok.
  fake_.Answer("submit", BranchResult::Custom(409, R"({"dtm_result":"FAILURE","message":"x"})"));
  fake_.Answer("query",
               BranchResult::Custom(200, R"({"transaction":{"gid":"race-1","status":"succeed"},)"
                                         R"("branches":[]})"));
  Msg msg = NewMsg("race-1");
  Status s =
      msg.DoAndSubmit("http://producer/qp", db_->barrier(), [&] { return db_->InsertTrade("t8"); });
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(fake_.ops(), (Paths{"prepare", "submit", "query"}));
}

TEST_P(DoAndSubmitTest, SubmitRefusedWhileTheCheckBackRoundRunsIsRetried) {
  // The coordinator's check-back round holds the prepared message (it waits for our commit) and
  // refuses the submit meanwhile; once the round submitted it, the re-submit is accepted.
  const BranchResult refused = BranchResult::Custom(
      409, R"({"dtm_result":"FAILURE","message":"current status 'prepared', cannot sumbmit"})");
  fake_.Script("submit", {refused, refused});
  fake_.Script("query",
               {BranchResult::Custom(200, R"({"transaction":{"gid":"busy-1","status":"prepared"},)"
                                          R"("branches":[]})"),
                BranchResult::Custom(200, R"({"transaction":{"gid":"busy-1","status":"prepared"},)"
                                          R"("branches":[]})")});
  Msg msg = NewMsg("busy-1");
  Status s = msg.DoAndSubmit("http://producer/qp", db_->barrier(),
                             [&] { return db_->InsertTrade("t10"); });
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(fake_.ops(), (Paths{"prepare", "submit", "query", "submit", "query", "submit"}));
}

TEST_P(DoAndSubmitTest, AbortRefusedBecauseTheCheckBackDroppedTheMessageIsOk) {
  fake_.Answer(
      "abort",
      BranchResult::Custom(409, R"({"dtm_result":"FAILURE","message":"current status 'failed'"})"));
  fake_.Answer("query",
               BranchResult::Custom(200, R"({"transaction":{"gid":"late-1","status":"failed"},)"
                                         R"("branches":[]})"));
  Msg msg = NewMsg("late-1");
  Status s = msg.DoAndSubmit("http://producer/qp", db_->barrier(),
                             [&] { return Status::Conflict("refused"); });
  EXPECT_EQ(s.code(), Code::kConflict);
  EXPECT_EQ(s.message(), "refused") << "no 'abort failed' note";
  EXPECT_EQ(fake_.ops(), (Paths{"prepare", "abort", "query"}));
}

TEST_P(DoAndSubmitTest, ExceptionRollsBackAbortsAndIsRethrown) {
  Msg msg = NewMsg("throw-1");
  EXPECT_THROW((void)msg.DoAndSubmit("http://producer/qp", db_->barrier(),
                                     [&]() -> Status {
                                       EXPECT_TRUE(db_->InsertTrade("t9").ok());
                                       throw std::runtime_error("bug");
                                     }),
               std::runtime_error);
  EXPECT_EQ(fake_.ops(), (Paths{"prepare", "abort"}));
  EXPECT_EQ(db_->Count("trades"), 0);
  EXPECT_EQ(db_->BarrierReason("throw-1"), "rollback");
}

TEST_P(DoAndSubmitTest, RetryOfACommittedGidSkipsTheBusinessAndSubmits) {
  Msg first = NewMsg("again-1");
  ASSERT_TRUE(
      first
          .DoAndSubmit("http://producer/qp", db_->barrier(), [&] { return db_->InsertTrade("ta"); })
          .ok());
  Msg second = NewMsg("again-1");
  bool ran = false;
  Status s = second.DoAndSubmit("http://producer/qp", db_->barrier(), [&] {
    ran = true;
    return db_->InsertTrade("tb");
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_FALSE(ran);
  EXPECT_EQ(second.local_outcome(), LocalOutcome::kCommitted);
  EXPECT_EQ(db_->Count("trades"), 1);
}

TEST_P(DoAndSubmitTest, HooksRunAtTheirPoints) {
  std::vector<std::string> seen;
  Msg msg = NewMsg("hooks-1");
  msg.SetHooks({
      .after_prepare =
          [&] { seen.push_back("after_prepare:" + std::to_string(fake_.ops().size())); },
      .before_commit = [&] { seen.push_back("before_commit"); },
      .after_commit =
          [&] {
            seen.push_back("after_commit:" + db_->BarrierReason("hooks-1") + ":" +
                           std::to_string(fake_.ops().size()));
          },
  });
  ASSERT_TRUE(msg.DoAndSubmit("http://producer/qp", db_->barrier(),
                              [&] {
                                seen.push_back("business");
                                return Status::Ok();
                              })
                  .ok());
  EXPECT_EQ(seen, (std::vector<std::string>{"after_prepare:1", "business", "before_commit",
                                            "after_commit:msg:1"}));
}

// BAR-05 for messages: a check-back that arrives while the local transaction is open waits for it
// and answers by its outcome, committed or rolled back. Never a guess.
TEST_P(DoAndSubmitTest, CheckBackWaitsForTheOpenLocalTransaction) {
  for (bool commit : {true, false}) {
    SCOPED_TRACE(commit ? "commit" : "rollback");
    const std::string gid = commit ? "wait-commit" : "wait-rollback";
    auto other = OtherConnection();
    std::future<BranchResult> check_back;
    Msg msg = NewMsg(gid);
    msg.SetHooks({.before_commit = [&] {
      check_back = std::async(std::launch::async, [&] {
        return QueryPrepared(CheckBackRequest(gid), other->barrier());
      });
      EXPECT_EQ(check_back.wait_for(300ms), std::future_status::timeout)
          << "the check-back must wait for the open local transaction";
    }});
    Status s = msg.DoAndSubmit("http://producer/qp", db_->barrier(), [&]() -> Status {
      Status ins = db_->InsertTrade(gid);
      if (!ins.ok()) return ins;
      // The hook runs only when the business code succeeds, so for the rollback case run it here
      // and then fail.
      if (!commit) {
        check_back = std::async(std::launch::async, [&] {
          return QueryPrepared(CheckBackRequest(gid), other->barrier());
        });
        EXPECT_EQ(check_back.wait_for(300ms), std::future_status::timeout);
        return Status::Conflict("refused");
      }
      return Status::Ok();
    });
    ASSERT_TRUE(check_back.valid());
    BranchResult answer = check_back.get();
    if (commit) {
      EXPECT_TRUE(s.ok()) << s.ToString();
      EXPECT_EQ(answer.status, 200);
    } else {
      EXPECT_EQ(s.code(), Code::kConflict);
      EXPECT_EQ(answer.status, 409);
    }
  }
}

// The typed overloads hand the business code the open transaction on the caller's connection.
TEST_P(DoAndSubmitTest, TypedOverloads) {
  Msg msg = NewMsg("typed-1");
  Status s;
  if (auto* sqlite = dynamic_cast<SqliteTestDb*>(db_.get())) {
    s = msg.DoAndSubmit("http://producer/qp", sqlite->adapter(), [&](SqliteTx& tx) {
      EXPECT_EQ(tx.db, sqlite->raw());
      EXPECT_EQ(sqlite3_get_autocommit(tx.db), 0) << "inside the local transaction";
      return SqliteTestDb::InsertTradeOn(tx.db, "typed");
    });
    Msg raw = NewMsg("typed-2");
    EXPECT_TRUE(raw.DoAndSubmit("http://producer/qp", sqlite->raw(),
                                [&](SqliteTx& tx) {
                                  return SqliteTestDb::InsertTradeOn(tx.db, "typed-raw");
                                })
                    .ok());
  } else {
    auto* pg = dynamic_cast<PgTestDb*>(db_.get());
    ASSERT_NE(pg, nullptr);
    s = msg.DoAndSubmit("http://producer/qp", pg->adapter(), [&](PgTx& tx) {
      EXPECT_EQ(tx.conn, pg->raw());
      EXPECT_EQ(PQtransactionStatus(tx.conn), PQTRANS_INTRANS);
      return PgTestDb::InsertTradeOn(tx.conn, schema_, "typed");
    });
  }
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(db_->Count("trades where xid = 'typed'"), 1);
}

TEST_P(DoAndSubmitTest, InvalidGidIsRefusedBeforePrepare) {
  Msg msg = NewMsg(std::string(129, 'g'));  // the barrier's gid column holds 128 characters
  Status s = msg.DoAndSubmit("http://producer/qp", db_->barrier(), [] { return Status::Ok(); });
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_TRUE(fake_.calls().empty());
}

TEST(QueryPreparedHandler, AnswersOfTheCheckBackEndpoint) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "dtx_msgqp_XXXXXX").string();
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  {
    SqliteTestDb db(tmpl + "/p.db");
    // Unknown gid: the rollback marker is planted, FAILURE.
    BranchResult r = QueryPrepared(CheckBackRequest("nobody"), db.barrier());
    EXPECT_EQ(r.status, 409);
    EXPECT_EQ(json::parse(r.body).at("dtm_result"), "FAILURE");
    // A request without the msg identity: 500, which never commits a message.
    BranchRequest bare;
    bare.method = "GET";
    EXPECT_EQ(QueryPrepared(bare, db.barrier()).status, 500);
    // A database error: 500.
    FaultyDb faulty(db.barrier());
    faulty.autocommit_insert_fails = true;
    EXPECT_EQ(QueryPrepared(CheckBackRequest("x"), faulty).status, 500);
  }
  std::error_code ec;
  std::filesystem::remove_all(tmpl, ec);
}

}  // namespace
}  // namespace dtx
