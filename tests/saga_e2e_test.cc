// End-to-end saga tests (PROTOCOL.md §6, SAGA-01..18): the real `dtx server` binary on 127.0.0.1
// with a real SQLite store, and a scriptable participant HTTP server.
#include <gtest/gtest.h>

#include <thread>

#include "tests/support/harness.h"

namespace dtx::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using Statuses = std::vector<std::string>;

class SagaE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(TempDir("saga"));
    const std::string store = E2EStore(*dir_);
    if (store.empty()) GTEST_SKIP() << "DTX_E2E_STORE=postgres needs DTX_TEST_PG_URL";
    server_ = new ServerProcess(store, {"--retry-interval", "0.3", "--cron-interval", "0.1",
                                        "--request-timeout", "2", "--log-level", "warn"});
    ASSERT_TRUE(server_->Start());
    busi_ = new Busi();
  }
  // A skip in SetUpTestSuite still runs every test: without a server, each skips too (they would
  // dereference the null server otherwise).
  void SetUp() override {
    if (server_ == nullptr)
      GTEST_SKIP() << "no server: DTX_E2E_STORE=postgres needs DTX_TEST_PG_URL";
  }
  static void TearDownTestSuite() {
    if (server_ == nullptr) return;
    EXPECT_EQ(server_->Terminate(), 0) << "dtx must exit cleanly on SIGTERM";
    delete busi_;
    delete server_;
    delete dir_;
  }

  std::string Gid() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    return std::string(info->name()) + "-" + std::to_string(counter_++);
  }
  std::string U(const std::string& path) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    return busi_->Url("/" + std::string(info->name()) + path);
  }
  std::string P(const std::string& path) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    return "/" + std::string(info->name()) + path;
  }
  HttpResult Submit(const std::string& body) {
    return HttpFetch("POST", server_->Api("submit"), body);
  }

  static std::string* dir_;
  static ServerProcess* server_;
  static Busi* busi_;
  static int counter_;
};
std::string* SagaE2E::dir_ = nullptr;
ServerProcess* SagaE2E::server_ = nullptr;
Busi* SagaE2E::busi_ = nullptr;
int SagaE2E::counter_ = 0;

TEST_F(SagaE2E, Saga01TwoStepsSucceed) {
  std::string gid = Gid();
  auto r = Submit(SagaBody(gid, {{U("/a1"), U("/c1")}, {U("/a2"), U("/c2")}},
                           {"{\"n\":1}", "{\"n\":2}"}, {{"wait_result", true}}));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, R"({"dtm_result":"SUCCESS"})");
  TransView v = QueryTrans(*server_, gid);
  EXPECT_EQ(v.status, "succeed");
  EXPECT_EQ(v.branch_status, (Statuses{"prepared", "succeed", "prepared", "succeed"}));
  EXPECT_EQ(v.branch_ops, (Statuses{"compensate", "action", "compensate", "action"}));
  EXPECT_TRUE(v.rollback_reason.empty());
  auto calls = busi_->CallsFor(gid);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].path, P("/a1"));
  EXPECT_EQ(calls[1].path, P("/a2"));
  EXPECT_LE(calls[0].end, calls[1].start) << "sequential saga: step 2 starts after step 1";
}

TEST_F(SagaE2E, Saga02FailureCompensatesBothStepsInReverse) {
  std::string gid = Gid();
  busi_->SetDefault(P("/a2"), BusiAnswer::Failure());
  auto r = Submit(SagaBody(gid, {{U("/a1"), U("/c1")}, {U("/a2"), U("/c2")}}, {"x", "y"},
                           {{"wait_result", true}}));
  EXPECT_EQ(r.status, 409);
  EXPECT_NE(r.body.find("busi failure"), std::string::npos) << r.body;
  TransView v = WaitStatus(*server_, gid, {"failed"});
  EXPECT_EQ(v.status, "failed");
  EXPECT_EQ(v.branch_status, (Statuses{"succeed", "succeed", "succeed", "failed"}));
  EXPECT_NE(v.rollback_reason.find("busi failure"), std::string::npos) << v.rollback_reason;
  EXPECT_NE(v.rollback_reason.find("url:" + U("/a2") + " return failed:"), std::string::npos);
  auto calls = busi_->CallsFor(gid);
  ASSERT_EQ(calls.size(), 4u);
  EXPECT_EQ(calls[2].path, P("/c2"));
  EXPECT_EQ(calls[3].path, P("/c1"));
}

TEST_F(SagaE2E, Saga03OngoingIsRetriedUntilSuccess) {
  std::string gid = Gid();
  busi_->Script(P("/a1"), {BusiAnswer::Ongoing()});
  auto r = Submit(SagaBody(gid, {{U("/a1"), U("/c1")}}, {"x"}, {{"wait_result", true}}));
  EXPECT_NE(r.status, 200) << "ONGOING with wait_result must not answer success";
  TransView v = QueryTrans(*server_, gid);
  EXPECT_EQ(v.status, "submitted");
  v = WaitStatus(*server_, gid, {"succeed"});
  EXPECT_EQ(v.status, "succeed");
  EXPECT_EQ(busi_->CallCount(P("/a1")), 2u);
}

TEST_F(SagaE2E, Saga04CompensationErrorIsRetried) {
  std::string gid = Gid();
  busi_->SetDefault(P("/a2"), BusiAnswer::Failure());
  busi_->Script(P("/c2"), {BusiAnswer::Error(), BusiAnswer::Failure()});
  auto r = Submit(SagaBody(gid, {{U("/a1"), U("/c1")}, {U("/a2"), U("/c2")}}, {"x", "y"},
                           {{"wait_result", true}}));
  EXPECT_EQ(r.status, 409);
  TransView v = QueryTrans(*server_, gid);
  EXPECT_EQ(v.status, "aborting");
  v = WaitStatus(*server_, gid, {"failed"});
  EXPECT_EQ(v.status, "failed");
  EXPECT_EQ(busi_->CallCount(P("/c2")), 3u) << "ERROR, then FAILURE (retried too), then SUCCESS";
  EXPECT_EQ(busi_->CallCount(P("/c1")), 1u);
  EXPECT_EQ(v.branch_status, (Statuses{"succeed", "succeed", "succeed", "failed"}));
}

TEST_F(SagaE2E, Saga05ResubmitRules) {
  std::string gid = Gid();
  busi_->Script(P("/a1"), {BusiAnswer{200, R"({"dtm_result":"SUCCESS"})", 800}});
  std::string body = SagaBody(gid, {{U("/a1"), U("/c1")}}, {"x"});
  ASSERT_EQ(Submit(body).status, 200);
  auto again = Submit(body);
  EXPECT_EQ(again.status, 200) << "re-submitting a submitted saga is idempotent: " << again.body;
  TransView v = WaitStatus(*server_, gid, {"succeed"});
  EXPECT_EQ(v.status, "succeed");
  auto late = Submit(body);
  EXPECT_EQ(late.status, 409);
  EXPECT_NE(late.body.find("current status 'succeed', cannot sumbmit"), std::string::npos)
      << late.body;
  EXPECT_EQ(busi_->CallCount(P("/a1")), 1u) << "the re-submit must not call the action again";
}

TEST_F(SagaE2E, Saga06EmptyActionUrlIsSuccessWithoutCall) {
  std::string gid = Gid();
  auto r =
      Submit(SagaBody(gid, {{"", U("/c1")}, {U("/a2"), ""}}, {"x", "y"}, {{"wait_result", true}}));
  ASSERT_EQ(r.status, 200) << r.body;
  TransView v = QueryTrans(*server_, gid);
  EXPECT_EQ(v.branch_status, (Statuses{"prepared", "succeed", "prepared", "succeed"}));
  EXPECT_EQ(busi_->CallsFor(gid).size(), 1u);
}

TEST_F(SagaE2E, Saga07LegacyStepDataIsTheBody) {
  std::string gid = Gid();
  json::object o{
      {"gid", gid},
      {"trans_type", "saga"},
      {"wait_result", true},
      {"steps", json::array{json::object{
                    {"action", U("/a1")}, {"compensate", U("/c1")}, {"data", "legacy-body"}}}}};
  auto r = Submit(json::serialize(o));
  ASSERT_EQ(r.status, 200) << r.body;
  auto calls = busi_->CallsFor(gid);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].body, "legacy-body");
  EXPECT_EQ(calls[0].method, "POST");
}

TEST_F(SagaE2E, Saga08CallShape) {
  std::string gid = Gid();
  auto r = Submit(SagaBody(gid, {{U("/a1?x=1"), U("/c1")}, {U("/a2"), U("/c2")}},
                           {"{\"amount\":30}", ""}, {{"wait_result", true}}));
  ASSERT_EQ(r.status, 200) << r.body;
  auto calls = busi_->CallsFor(gid);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].method, "POST");
  EXPECT_EQ(calls[0].body, "{\"amount\":30}");
  EXPECT_EQ(calls[0].query["trans_type"], "saga");
  EXPECT_EQ(calls[0].query["branch_id"], "01");
  EXPECT_EQ(calls[0].query["op"], "action");
  EXPECT_EQ(calls[0].headers["content-type"], "application/json");
  EXPECT_EQ(calls[1].method, "GET") << "an empty payload is sent as GET";
  EXPECT_EQ(calls[1].body, "");
  EXPECT_EQ(calls[1].query["branch_id"], "02");
  EXPECT_EQ(calls[1].headers["content-type"], "application/json") << "CALL-04: even on GET";
}

TEST_F(SagaE2E, Saga09BackoffIntervals) {
  std::string gid = Gid();
  busi_->Script(P("/a1"), {BusiAnswer::Ongoing()});
  auto r = Submit(SagaBody(gid, {{U("/a1"), U("/c1")}}, {"x"},
                           {{"retry_interval", 150}, {"wait_result", true}}));
  EXPECT_NE(r.status, 200);
  TransView v = QueryTrans(*server_, gid);
  const auto& t = v.raw.at("transaction").as_object();
  EXPECT_EQ(t.at("next_cron_interval").to_number<int64_t>(), 150) << "ONGOING keeps the interval";

  std::string gid2 = Gid();
  busi_->Script(P("/a2"), {BusiAnswer::Error()});
  r = Submit(SagaBody(gid2, {{U("/a2"), U("/c2")}}, {"x"},
                      {{"retry_interval", 150}, {"wait_result", true}}));
  EXPECT_NE(r.status, 200);
  v = QueryTrans(*server_, gid2);
  const auto& t2 = v.raw.at("transaction").as_object();
  EXPECT_EQ(t2.at("next_cron_interval").to_number<int64_t>(), 300) << "ERROR doubles the interval";
  EXPECT_EQ(v.status, "submitted");
  // Due at +270..330 s: resetNextCronTime runs it now (API-13).
  ASSERT_EQ(HttpFetch("POST", server_->Api("resetNextCronTime"),
                      json::serialize(json::object{{"gid", gid2}}))
                .status,
            200);
  v = WaitStatus(*server_, gid2, {"succeed"}, milliseconds(5000));
  EXPECT_EQ(v.status, "succeed");
}

TEST_F(SagaE2E, Saga10TimeoutWhileOngoing) {
  std::string gid = Gid();
  busi_->SetDefault(P("/a1"), BusiAnswer::Ongoing());
  auto r = Submit(SagaBody(gid, {{U("/a1"), U("/c1")}, {U("/a2"), U("/c2")}}, {"x", "y"},
                           {{"timeout_to_fail", 1}}));
  ASSERT_EQ(r.status, 200);
  TransView v = WaitStatus(*server_, gid, {"failed"}, milliseconds(10000));
  EXPECT_EQ(v.status, "failed");
  EXPECT_NE(v.rollback_reason.find("Timeout after 1 seconds"), std::string::npos)
      << v.rollback_reason;
  EXPECT_EQ(v.branch_status, (Statuses{"succeed", "prepared", "prepared", "prepared"}));
  EXPECT_EQ(busi_->CallCount(P("/a2")), 0u);
}

TEST_F(SagaE2E, Saga11RetryLimit) {
  std::string gid = Gid();
  busi_->Script(P("/a1"), {BusiAnswer::Error(), BusiAnswer::Error()});
  auto r = Submit(
      SagaBody(gid, {{U("/a1"), U("/c1")}}, {"x"}, {{"retry_limit", 3}, {"wait_result", true}}));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(QueryTrans(*server_, gid).status, "succeed");
  EXPECT_EQ(busi_->CallCount(P("/a1")), 3u);

  std::string gid2 = Gid();
  busi_->SetDefault(P("/b2"), BusiAnswer::Error());
  r = Submit(SagaBody(gid2, {{U("/b1"), U("/d1")}, {U("/b2"), U("/d2")}}, {"x", "y"},
                      {{"retry_limit", 1}, {"wait_result", true}}));
  EXPECT_EQ(r.status, 409);
  TransView v = WaitStatus(*server_, gid2, {"failed"});
  EXPECT_EQ(v.status, "failed");
  EXPECT_EQ(v.rollback_reason, "RetryCount is greater than RetryLimit, RetryLimit: 1");
  EXPECT_EQ(v.branch_status, (Statuses{"succeed", "succeed", "succeed", "prepared"}));
  EXPECT_EQ(busi_->CallCount(P("/b2")), 2u);
}

TEST_F(SagaE2E, Saga12BranchHeadersOnFirstCallAndRetries) {
  std::string gid = Gid();
  busi_->Script(P("/a1"), {BusiAnswer::Error()});
  auto r = Submit(SagaBody(gid, {{U("/a1"), U("/c1")}}, {"x"},
                           {{"branch_headers", json::object{{"test_header", "test"}}}}));
  ASSERT_EQ(r.status, 200);
  TransView v = WaitStatus(*server_, gid, {"succeed"});
  EXPECT_EQ(v.status, "succeed");
  auto calls = busi_->CallsFor(gid);
  ASSERT_EQ(calls.size(), 2u);
  for (auto& c : calls) EXPECT_EQ(c.headers["test_header"], "test");
}

TEST_F(SagaE2E, Saga14ConcurrentStartsAllAndRespectsOrders) {
  std::string gid = Gid();
  busi_->SetDefault(P("/a1"), BusiAnswer{200, R"({"dtm_result":"SUCCESS"})", 300});
  busi_->SetDefault(P("/a2"), BusiAnswer{200, R"({"dtm_result":"SUCCESS"})", 300});
  auto r = Submit(SagaBody(gid, {{U("/a1"), U("/c1")}, {U("/a2"), U("/c2")}}, {"x", "y"},
                           {{"custom_data", R"({"concurrent":true})"}, {"wait_result", true}}));
  ASSERT_EQ(r.status, 200) << r.body;
  auto calls = busi_->CallsFor(gid);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_LT(calls[1].start, calls[0].end) << "both actions run at the same time";

  std::string gid2 = Gid();
  busi_->SetDefault(P("/b1"), BusiAnswer::Failure());
  r = Submit(SagaBody(
      gid2, {{U("/b1"), U("/d1")}, {U("/b2"), U("/d2")}}, {"x", "y"},
      {{"custom_data", R"({"concurrent":true,"orders":{"1":[0]}})"}, {"wait_result", true}}));
  EXPECT_EQ(r.status, 409);
  TransView v = WaitStatus(*server_, gid2, {"failed"});
  EXPECT_EQ(v.branch_status, (Statuses{"succeed", "failed", "prepared", "prepared"}));
  EXPECT_EQ(busi_->CallCount(P("/b2")), 0u);
  EXPECT_EQ(busi_->CallCount(P("/d2")), 0u);
  EXPECT_EQ(busi_->CallCount(P("/d1")), 1u);
}

TEST_F(SagaE2E, Saga15ConcurrentCompensationInReverseDependencyOrder) {
  std::string gid = Gid();
  busi_->SetDefault(P("/a2"), BusiAnswer::Failure());
  auto r = Submit(SagaBody(
      gid, {{U("/a1"), U("/c1")}, {U("/a2"), U("/c2")}}, {"x", "y"},
      {{"custom_data", R"({"concurrent":true,"orders":{"1":[0]}})"}, {"wait_result", true}}));
  EXPECT_EQ(r.status, 409);
  TransView v = WaitStatus(*server_, gid, {"failed"});
  EXPECT_EQ(v.branch_status, (Statuses{"succeed", "succeed", "succeed", "failed"}));
  auto calls = busi_->CallsFor(gid);
  ASSERT_EQ(calls.size(), 4u);
  EXPECT_EQ(calls[2].path, P("/c2"));
  EXPECT_EQ(calls[3].path, P("/c1"));
  EXPECT_LE(calls[2].end, calls[3].start);
}

TEST_F(SagaE2E, Saga16BadOrdersAreRejectedAndNothingStored) {
  for (const char* custom :
       {R"({"concurrent":true,"orders":{"0":[1],"1":[0]}})",
        R"({"concurrent":true,"orders":{"5":[0]}})", R"({"concurrent":true,"orders":{"1":[7]}})",
        R"({"concurrent":true,"orders":{"1":[1]}})"}) {
    std::string gid = Gid();
    auto r = Submit(SagaBody(gid, {{U("/a1"), U("/c1")}, {U("/a2"), U("/c2")}}, {"x", "y"},
                             {{"custom_data", custom}}));
    EXPECT_EQ(r.status, 400) << custom << " " << r.body;
    EXPECT_FALSE(QueryTrans(*server_, gid).found) << "nothing may be persisted";
  }
}

TEST_F(SagaE2E, Saga17NoCompensationWhileItsActionIsInFlight) {
  std::string gid = Gid();
  busi_->SetDefault(P("/a1"), BusiAnswer::Failure());
  busi_->SetDefault(P("/a2"), BusiAnswer{200, R"({"dtm_result":"SUCCESS"})", 800});
  auto r = Submit(SagaBody(gid, {{U("/a1"), U("/c1")}, {U("/a2"), U("/c2")}}, {"x", "y"},
                           {{"custom_data", R"({"concurrent":true})"}}));
  ASSERT_EQ(r.status, 200);
  TransView v = WaitStatus(*server_, gid, {"failed"});
  EXPECT_EQ(v.status, "failed");
  auto a2 = busi_->Calls(P("/a2"));
  auto c2 = busi_->Calls(P("/c2"));
  ASSERT_EQ(a2.size(), 1u);
  ASSERT_EQ(c2.size(), 1u);
  EXPECT_GE(c2[0].start, a2[0].end) << "comp 2 started while action 2 was still running";
}

TEST_F(SagaE2E, Saga18RequestTimeout) {
  // The fixture's server default is 2 s: a 3 s action times out...
  std::string gid = Gid();
  busi_->Script(P("/a1"), {BusiAnswer{200, R"({"dtm_result":"SUCCESS"})", 3000}});
  auto r = Submit(SagaBody(gid, {{U("/a1"), U("/c1")}}, {"x"}, {{"wait_result", true}}));
  EXPECT_NE(r.status, 200);
  TransView v = QueryTrans(*server_, gid);
  EXPECT_EQ(v.status, "submitted");
  // ...while request_timeout=4 lets it succeed.
  std::string gid2 = Gid();
  busi_->Script(P("/b1"), {BusiAnswer{200, R"({"dtm_result":"SUCCESS"})", 3000}});
  r = Submit(SagaBody(gid2, {{U("/b1"), U("/d1")}}, {"x"},
                      {{"request_timeout", 4}, {"wait_result", true}}));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(WaitStatus(*server_, gid, {"succeed"}).status, "succeed");
}

TEST_F(SagaE2E, Call01To03Classification) {
  struct Case {
    BusiAnswer answer;
    std::string expect;  // "succeed" | "failed" | "submitted"
  };
  std::vector<Case> cases = {
      {{200, R"({"dtm_result":"FAILURE"})", 0}, "failed"},
      {{500, "something FAILURE", 0}, "failed"},
      {{200, "ONGOING", 0}, "submitted"},
      {{409, "ONGOING", 0}, "submitted"},
      {{201, "created", 0}, "submitted"},
      {{204, "", 0}, "submitted"},
      {{404, "not found", 0}, "submitted"},
      {{503, "unavailable", 0}, "submitted"},
      {{200, "ok", 0}, "succeed"},
  };
  int i = 0;
  for (auto& c : cases) {
    std::string gid = Gid();
    std::string path = "/case" + std::to_string(i++);
    busi_->SetDefault(P(path), c.answer);
    auto r = Submit(
        SagaBody(gid, {{U(path), ""}}, {"x"}, {{"wait_result", true}, {"retry_interval", 60}}));
    (void)r;
    TransView v = WaitStatus(*server_, gid, {c.expect}, milliseconds(3000));
    EXPECT_EQ(v.status, c.expect) << "answer " << c.answer.status << " " << c.answer.body;
  }
}

}  // namespace
}  // namespace dtx::testing
