// Business keys end to end (issue 15 item 2): sagas that list the same business key run one after
// the other on the coordinator (the participant records every call and the test asserts that no
// two sagas sharing a key overlap), in FIFO order, all keys or none; on_busy reject; a waiting
// saga's timeout; wait_result on a waiting saga; a coordinator SIGKILLed while sagas wait; three
// coordinators on one PostgreSQL. SQLite, and PostgreSQL with DTX_E2E_STORE=postgres.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <thread>

#include "tests/support/harness.h"
#include "tests/support/key_overlap.h"

namespace dtx::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

const std::vector<std::string> kArgs = {"--retry-interval",  "0.3", "--cron-interval", "0.1",
                                        "--request-timeout", "3",   "--log-level",     "warn"};

class BusinessKeysE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir("bkeys");
    store_ = E2EStore(dir_);
    if (store_.empty()) GTEST_SKIP() << "DTX_E2E_STORE=postgres needs DTX_TEST_PG_URL";
    server_ = std::make_unique<ServerProcess>(store_, kArgs);
    ASSERT_TRUE(server_->Start());
    busi_.SetDefault("/k/act", BusiAnswer{200, R"({"dtm_result":"SUCCESS"})", 150});
  }
  // A 2-step saga on `keys` (both steps at the participant, each taking 150 ms).
  HttpResult Submit(const std::string& gid, const std::vector<std::string>& keys,
                    json::object extra = {}, const ServerProcess* server = nullptr) {
    extra["business_keys"] = Keys(keys);
    const ServerProcess& s = server != nullptr ? *server : *server_;
    return HttpFetch("POST", s.Api("submit"),
                     SagaBody(gid,
                              {{busi_.Url("/k/act"), busi_.Url("/k/undo")},
                               {busi_.Url("/k/act"), busi_.Url("/k/undo")}},
                              {"a", "b"}, extra));
  }
  json::value Query(const std::string& gid) { return QueryTrans(*server_, gid).raw; }

  std::string dir_;
  std::string store_;
  std::unique_ptr<ServerProcess> server_;
  Busi busi_;
};

TEST_F(BusinessKeysE2E, TwoSagasOnOneKeyRunOneAfterTheOther) {
  busi_.Script("/k/act", {BusiAnswer{200, R"({"dtm_result":"SUCCESS"})", 800}});
  ASSERT_EQ(Submit("first", {"account:42"}).status, 200);
  ASSERT_TRUE(WaitFor([&] { return busi_.CallCount("/k/act") >= 1; }, milliseconds(5000)));
  ASSERT_EQ(Submit("second", {"account:42"}).status, 200);
  // Visible while it waits: still submitted, its keys not held, and the gid ahead of it.
  json::value q = Query("second");
  EXPECT_EQ(q.at("transaction").at("status").as_string(), "submitted");
  const json::value& bk = q.at("business_keys");
  EXPECT_FALSE(bk.at("held").as_bool()) << q;
  EXPECT_EQ(bk.at("waiting_for").as_string(), "first");
  EXPECT_EQ(bk.at("waiting_key").as_string(), "account:42");
  EXPECT_TRUE(Query("first").at("business_keys").at("held").as_bool());
  EXPECT_EQ(WaitStatus(*server_, "first", {"succeed"}).status, "succeed");
  EXPECT_EQ(WaitStatus(*server_, "second", {"succeed"}).status, "succeed");
  // The second's first action came after the first's last call.
  std::map<std::string, KeySpan> spans = Spans(busi_);
  EXPECT_GE(spans.at("second").first, spans.at("first").last);
  EXPECT_EQ(ExpectNoOverlap(busi_, {{"first", {"account:42"}}, {"second", {"account:42"}}}), 1u);
  // A final one has no lock any more: the query shows no business_keys member.
  EXPECT_FALSE(Query("second").as_object().contains("business_keys"));
}

TEST_F(BusinessKeysE2E, ManySagasOnFewKeysInBothOrdersNeverDeadlockNorOverlap) {
  // 24 sagas on two or one of three keys, multi-key ones in opposite orders, submitted at once.
  std::map<std::string, std::vector<std::string>> keys;
  const std::vector<std::vector<std::string>> choices = {{"a", "b"}, {"b", "a"}, {"b", "c"},
                                                         {"c", "a"}, {"a"},      {"c"}};
  for (int i = 0; i < 24; ++i) keys["multi-" + std::to_string(i)] = choices[i % choices.size()];
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (const auto& [gid, k] : keys) {
    threads.emplace_back([&, gid = gid, k = k] { ok += Submit(gid, k).status == 200; });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(ok.load(), 24);
  for (const auto& [gid, k] : keys) {
    EXPECT_EQ(WaitStatus(*server_, gid, {"succeed"}, std::chrono::seconds(60)).status, "succeed")
        << gid;
  }
  EXPECT_GT(ExpectNoOverlap(busi_, keys), 100u);
}

TEST_F(BusinessKeysE2E, FifoPerKey) {
  busi_.Script("/k/act", {BusiAnswer{200, R"({"dtm_result":"SUCCESS"})", 600}});
  ASSERT_EQ(Submit("fifo-0", {"acct"}).status, 200);
  ASSERT_TRUE(WaitFor([&] { return busi_.CallCount("/k/act") >= 1; }, milliseconds(5000)));
  for (int i = 1; i <= 5; ++i) {
    ASSERT_EQ(Submit("fifo-" + std::to_string(i), {"acct"}).status, 200);
    // Every waiter names the holder (the key's first row).
    EXPECT_EQ(Query("fifo-" + std::to_string(i)).at("business_keys").at("waiting_for").as_string(),
              "fifo-0");
  }
  for (int i = 0; i <= 5; ++i) {
    EXPECT_EQ(WaitStatus(*server_, "fifo-" + std::to_string(i), {"succeed"}).status, "succeed");
  }
  std::map<std::string, KeySpan> spans = Spans(busi_);
  for (int i = 1; i <= 5; ++i) {
    EXPECT_GE(spans.at("fifo-" + std::to_string(i)).first,
              spans.at("fifo-" + std::to_string(i - 1)).last)
        << "fifo-" << i << " ran before fifo-" << i - 1 << " ended";
  }
}

TEST_F(BusinessKeysE2E, OnBusyRejectAnswers409AtOnce) {
  busi_.Script("/k/act", {BusiAnswer{200, R"({"dtm_result":"SUCCESS"})", 1000}});
  ASSERT_EQ(Submit("holder", {"x", "y"}).status, 200);
  ASSERT_TRUE(WaitFor([&] { return busi_.CallCount("/k/act") >= 1; }, milliseconds(5000)));
  const auto t0 = Clock::now();
  HttpResult r = Submit("rejected", {"y"}, {{"on_busy", "reject"}, {"wait_result", true}});
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_LT(Clock::now() - t0, milliseconds(700)) << "answered without waiting for the holder";
  EXPECT_NE(r.body.find("busy"), std::string::npos) << r.body;
  TransView v = QueryTrans(*server_, "rejected");
  EXPECT_EQ(v.status, "failed");
  EXPECT_TRUE(busi_.CallsFor("rejected").empty());
  // Without wait_result the submit is acknowledged and the saga fails at once all the same.
  ASSERT_EQ(Submit("rejected-nowait", {"x"}, {{"on_busy", "reject"}}).status, 200);
  EXPECT_EQ(WaitStatus(*server_, "rejected-nowait", {"failed"}).status, "failed");
  EXPECT_EQ(WaitStatus(*server_, "holder", {"succeed"}).status, "succeed");
  EXPECT_TRUE(busi_.CallsFor("rejected-nowait").empty());
  // A free key: on_busy reject runs normally.
  EXPECT_EQ(Submit("free", {"x"}, {{"on_busy", "reject"}, {"wait_result", true}}).status, 200);
}

TEST_F(BusinessKeysE2E, AWaitingSagaHonoursTimeoutToFail) {
  // The holder takes ~3 s (three ONGOING answers spaced by the retry interval, then slow).
  busi_.Script("/k/act", {BusiAnswer{200, R"({"dtm_result":"SUCCESS"})", 2500}});
  ASSERT_EQ(Submit("slow-holder", {"t"}).status, 200);
  ASSERT_TRUE(WaitFor([&] { return busi_.CallCount("/k/act") >= 1; }, milliseconds(5000)));
  ASSERT_EQ(Submit("impatient", {"t"}, {{"timeout_to_fail", 1}}).status, 200);
  TransView v = WaitStatus(*server_, "impatient", {"failed"}, std::chrono::seconds(5));
  EXPECT_EQ(v.status, "failed");
  EXPECT_NE(v.rollback_reason.find("waiting for business key 't'"), std::string::npos)
      << v.rollback_reason;
  EXPECT_EQ(QueryTrans(*server_, "slow-holder").status, "submitted") << "failed while it waited";
  EXPECT_EQ(WaitStatus(*server_, "slow-holder", {"succeed"}).status, "succeed");
  EXPECT_TRUE(busi_.CallsFor("impatient").empty()) << "no branch call, not even a compensation";
}

TEST_F(BusinessKeysE2E, WaitResultOnAWaitingSagaAnswersWhenItHasRun) {
  busi_.Script("/k/act", {BusiAnswer{200, R"({"dtm_result":"SUCCESS"})", 1200}});
  ASSERT_EQ(Submit("w-holder", {"w"}).status, 200);
  ASSERT_TRUE(WaitFor([&] { return busi_.CallCount("/k/act") >= 1; }, milliseconds(5000)));
  HttpResult r = Submit("w-waiter", {"w"}, {{"wait_result", true}});
  EXPECT_EQ(r.status, 200) << r.body;
  // Answered after it ran: it is final, and its calls came after the holder's.
  EXPECT_EQ(QueryTrans(*server_, "w-waiter").status, "succeed");
  std::map<std::string, KeySpan> spans = Spans(busi_);
  ASSERT_EQ(spans.count("w-waiter"), 1u);
  EXPECT_GE(spans.at("w-waiter").first, spans.at("w-holder").last);
  // A rollback after the wait is reported like any other.
  busi_.Script("/k/act", {BusiAnswer{200, R"({"dtm_result":"SUCCESS"})", 800}});
  ASSERT_EQ(Submit("w-holder2", {"w"}).status, 200);
  ASSERT_TRUE(WaitFor([&] { return !busi_.CallsFor("w-holder2").empty(); }, milliseconds(5000)));
  busi_.Script("/k/act", {BusiAnswer::Success(), BusiAnswer::Failure()});
  r = Submit("w-fails", {"w"}, {{"wait_result", true}});
  EXPECT_EQ(r.status, 409) << r.body;
}

TEST_F(BusinessKeysE2E, SigkillWithWaitersAllRunAfterRestartInOrder) {
  // The holder's second step answers ONGOING for a while: it is unfinished when the coordinator
  // dies, and four sagas wait behind it.
  busi_.Script("/k/act", {BusiAnswer::Success(), BusiAnswer::Ongoing(), BusiAnswer::Ongoing()});
  ASSERT_EQ(Submit("crash-0", {"c"}).status, 200);
  ASSERT_TRUE(WaitFor([&] { return busi_.CallCount("/k/act") >= 2; }, milliseconds(5000)));
  for (int i = 1; i <= 4; ++i) {
    ASSERT_EQ(Submit("crash-" + std::to_string(i), {"c"}).status, 200);
  }
  EXPECT_FALSE(Query("crash-4").at("business_keys").at("held").as_bool());
  server_->Kill();
  server_ = std::make_unique<ServerProcess>(store_, kArgs);
  ASSERT_TRUE(server_->Start());
  for (int i = 0; i <= 4; ++i) {
    EXPECT_EQ(WaitStatus(*server_, "crash-" + std::to_string(i), {"succeed"}).status, "succeed");
  }
  std::map<std::string, KeySpan> spans = Spans(busi_);
  for (int i = 1; i <= 4; ++i) {
    EXPECT_GE(spans.at("crash-" + std::to_string(i)).first,
              spans.at("crash-" + std::to_string(i - 1)).last)
        << "crash-" << i;
  }
}

TEST_F(BusinessKeysE2E, LimitsAndShapesAre400) {
  auto bad = [&](json::object extra, const std::string& needle) {
    extra["gid"] = "bad";
    HttpResult r = HttpFetch(
        "POST", server_->Api("submit"),
        SagaBody("bad", {{busi_.Url("/k/act"), busi_.Url("/k/undo")}}, {"a"}, std::move(extra)));
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_NE(r.body.find(needle), std::string::npos) << r.body;
  };
  json::array seventeen;
  for (int i = 0; i < 17; ++i) seventeen.emplace_back("k" + std::to_string(i));
  bad({{"business_keys", seventeen}}, "over the limit of 16");
  bad({{"business_keys", json::array{std::string(129, 'k')}}}, "over the limit of 128");
  bad({{"business_keys", json::array{}}}, "business_keys is empty");
  bad({{"business_keys", "k"}}, "business_keys");
  bad({{"business_keys", json::array{1}}}, "business_keys");
  bad({{"business_keys", json::array{"k"}}, {"on_busy", "later"}}, "on_busy");
  bad({{"custom_data", R"({"business_keys":["k"],"on_busy":"never"})"}}, "on_busy");
  bad({{"on_busy", "reject"}}, "without business_keys");
  EXPECT_FALSE(QueryTrans(*server_, "bad").found);
  // In custom_data (how DTM SDKs can send it), with Go's key rule.
  HttpResult r =
      HttpFetch("POST", server_->Api("submit"),
                SagaBody("in-custom", {{busi_.Url("/k/act"), busi_.Url("/k/undo")}}, {"a"},
                         {{"custom_data", R"({"Business_Keys":["cd"]})"}, {"wait_result", true}}));
  EXPECT_EQ(r.status, 200) << r.body;
}

TEST(BusinessKeysMulti, ThreeCoordinatorsOnPostgresNeverOverlap) {
  // Once, in business_keys_e2e_test_pg (the SQLite run would repeat it word for word).
  if (!E2EOnPostgres()) GTEST_SKIP() << "runs with DTX_E2E_STORE=postgres";
  const std::string store = FreshPostgresStore();
  if (store.empty()) GTEST_SKIP() << "DTX_TEST_PG_URL is not set (scripts/test.sh sets it)";
  Busi busi;
  busi.SetDefault("/k/act", BusiAnswer{200, R"({"dtm_result":"SUCCESS"})", 40});
  std::vector<std::unique_ptr<ServerProcess>> servers;
  for (int i = 0; i < 3; ++i) {
    servers.push_back(std::make_unique<ServerProcess>(store, kArgs));
    ASSERT_TRUE(servers.back()->Start()) << "coordinator " << i;
  }
  // 90 sagas on one or two of 4 keys, submitted by 6 clients round-robin over the coordinators.
  std::map<std::string, std::vector<std::string>> keys;
  for (int i = 0; i < 90; ++i) {
    std::vector<std::string> k = {"hot:" + std::to_string(i % 4)};
    if (i % 3 == 0) k.push_back("hot:" + std::to_string((i + 1) % 4));
    keys["pg-" + std::to_string(i)] = k;
  }
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < 90; i += 6) {
        const std::string gid = "pg-" + std::to_string(i);
        json::object extra{{"business_keys", Keys(keys.at(gid))}};
        HttpResult r = HttpFetch(
            "POST", servers[static_cast<size_t>(i) % 3]->Api("submit"),
            SagaBody(gid, {{busi.Url("/k/act"), busi.Url("/k/undo")}, {busi.Url("/k/act"), ""}},
                     {"a", "b"}, extra));
        ok += r.status == 200;
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(ok.load(), 90);
  for (const auto& [gid, k] : keys) {
    EXPECT_EQ(WaitStatus(*servers[0], gid, {"succeed"}, std::chrono::seconds(90)).status, "succeed")
        << gid;
  }
  EXPECT_GT(ExpectNoOverlap(busi, keys), 1000u);
}

}  // namespace
}  // namespace dtx::testing
