// End-to-end tests of the tcc, xa and msg modes (PROTOCOL.md §1.7-§1.9, §6 TCC-*, XA-*, MSG-*)
// against the real `dtx server` binary and a scriptable participant.
#include <gtest/gtest.h>

#include <thread>

#include "tests/support/harness.h"

namespace dtx::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using Statuses = std::vector<std::string>;

class ModesE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(TempDir("modes"));
    const std::string store = E2EStore(*dir_);
    if (store.empty()) GTEST_SKIP() << "DTX_E2E_STORE=postgres needs DTX_TEST_PG_URL";
    server_ = new ServerProcess(
        store, {"--retry-interval", "0.3", "--cron-interval", "0.1", "--request-timeout", "2",
                "--timeout-to-fail", "2", "--log-level", "warn"});
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
    EXPECT_EQ(server_->Terminate(), 0);
    delete busi_;
    delete server_;
    delete dir_;
  }
  std::string Name() { return ::testing::UnitTest::GetInstance()->current_test_info()->name(); }
  std::string Gid() { return Name() + "-" + std::to_string(counter_++); }
  std::string U(const std::string& path) { return busi_->Url("/" + Name() + path); }
  std::string P(const std::string& path) { return "/" + Name() + path; }
  static HttpResult Post(const std::string& op, const json::object& body) {
    return HttpFetch("POST", server_->Api(op), json::serialize(body));
  }
  HttpResult Register(const std::string& gid, const std::string& id, const std::string& confirm,
                      const std::string& cancel, const std::string& data = "{}") {
    return Post("registerBranch", {{"gid", gid},
                                   {"trans_type", "tcc"},
                                   {"branch_id", id},
                                   {"confirm", confirm},
                                   {"cancel", cancel},
                                   {"data", data}});
  }

  static std::string* dir_;
  static ServerProcess* server_;
  static Busi* busi_;
  static int counter_;
};
std::string* ModesE2E::dir_ = nullptr;
ServerProcess* ModesE2E::server_ = nullptr;
Busi* ModesE2E::busi_ = nullptr;
int ModesE2E::counter_ = 0;

TEST_F(ModesE2E, Tcc01ConfirmsInReverseOrder) {
  std::string gid = Gid();
  ASSERT_EQ(Post("prepare", {{"gid", gid}, {"trans_type", "tcc"}}).status, 200);
  ASSERT_EQ(Register(gid, "01", U("/confirm1"), U("/cancel1"), "{\"a\":1}").status, 200);
  ASSERT_EQ(Register(gid, "02", U("/confirm2"), U("/cancel2")).status, 200);
  auto r = Post("submit", {{"gid", gid}, {"trans_type", "tcc"}, {"wait_result", true}});
  ASSERT_EQ(r.status, 200) << r.body;
  TransView v = QueryTrans(*server_, gid);
  EXPECT_EQ(v.status, "succeed");
  EXPECT_EQ(v.branch_ops, (Statuses{"cancel", "confirm", "cancel", "confirm"}));
  EXPECT_EQ(v.branch_status, (Statuses{"prepared", "succeed", "prepared", "succeed"}));
  auto calls = busi_->CallsFor(gid);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].path, P("/confirm2"));
  EXPECT_EQ(calls[1].path, P("/confirm1"));
  EXPECT_EQ(calls[1].body, "{\"a\":1}");
  EXPECT_EQ(calls[1].query["op"], "confirm");
  EXPECT_EQ(calls[1].query["trans_type"], "tcc");
}

TEST_F(ModesE2E, Tcc02AbortCancelsEveryBranchInReverse) {
  std::string gid = Gid();
  ASSERT_EQ(Post("prepare", {{"gid", gid}, {"trans_type", "tcc"}}).status, 200);
  ASSERT_EQ(Register(gid, "01", U("/confirm1"), U("/cancel1")).status, 200);
  ASSERT_EQ(Register(gid, "02", U("/confirm2"), U("/cancel2")).status, 200);
  auto r = Post("abort", {{"gid", gid},
                          {"trans_type", "tcc"},
                          {"wait_result", true},
                          {"rollback_reason", "try of 02 failed"}});
  ASSERT_EQ(r.status, 200) << r.body;
  TransView v = QueryTrans(*server_, gid);
  EXPECT_EQ(v.status, "failed");
  EXPECT_EQ(v.branch_status, (Statuses{"succeed", "prepared", "succeed", "prepared"}));
  EXPECT_EQ(v.rollback_reason, "try of 02 failed");
  auto calls = busi_->CallsFor(gid);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].path, P("/cancel2"));
  EXPECT_EQ(calls[1].path, P("/cancel1"));
}

TEST_F(ModesE2E, Tcc03SilentApplicationTimesOut) {
  std::string gid = Gid();
  ASSERT_EQ(Post("prepare", {{"gid", gid}, {"trans_type", "tcc"}, {"timeout_to_fail", 1}}).status,
            200);
  ASSERT_EQ(Register(gid, "01", U("/confirm1"), U("/cancel1")).status, 200);
  TransView v = WaitStatus(*server_, gid, {"failed"}, milliseconds(8000));
  EXPECT_EQ(v.status, "failed");
  EXPECT_NE(v.rollback_reason.find("Timeout after 1 seconds"), std::string::npos)
      << v.rollback_reason;
  EXPECT_EQ(busi_->CallCount(P("/cancel1")), 1u);
  EXPECT_EQ(busi_->CallCount(P("/confirm1")), 0u);
  // The server default (--timeout-to-fail 2) applies without an option.
  std::string gid2 = Gid();
  ASSERT_EQ(Post("prepare", {{"gid", gid2}, {"trans_type", "tcc"}}).status, 200);
  EXPECT_EQ(WaitStatus(*server_, gid2, {"failed"}, milliseconds(8000)).status, "failed");
}

TEST_F(ModesE2E, Tcc04LateRegistrationIsRefused) {
  std::string gid = Gid();
  ASSERT_EQ(Post("prepare", {{"gid", gid}, {"trans_type", "tcc"}}).status, 200);
  ASSERT_EQ(Post("submit", {{"gid", gid}, {"trans_type", "tcc"}, {"wait_result", true}}).status,
            200);
  auto r = Register(gid, "01", U("/confirm1"), U("/cancel1"));
  EXPECT_EQ(r.status, 409);
  EXPECT_NE(r.body.find("no trans with gid"), std::string::npos) << r.body;
  std::string gid2 = Gid();
  ASSERT_EQ(Post("prepare", {{"gid", gid2}, {"trans_type", "tcc"}}).status, 200);
  ASSERT_EQ(Post("abort", {{"gid", gid2}, {"trans_type", "tcc"}}).status, 200);
  EXPECT_EQ(Register(gid2, "01", U("/confirm1"), U("/cancel1")).status, 409);
  EXPECT_EQ(Register("never-prepared-gid", "01", U("/c"), U("/x")).status, 409);
}

TEST_F(ModesE2E, Tcc05ConfirmFailureIsRetriedNeverRolledBack) {
  std::string gid = Gid();
  busi_->Script(P("/confirm1"), {BusiAnswer::Failure(), BusiAnswer::Error()});
  ASSERT_EQ(Post("prepare", {{"gid", gid}, {"trans_type", "tcc"}}).status, 200);
  ASSERT_EQ(Register(gid, "01", U("/confirm1"), U("/cancel1")).status, 200);
  auto r = Post("submit", {{"gid", gid}, {"trans_type", "tcc"}, {"wait_result", true}});
  EXPECT_EQ(r.status, 409) << "wait_result reports the FAILURE of the confirm: " << r.body;
  TransView v = WaitStatus(*server_, gid, {"succeed"}, milliseconds(8000));
  EXPECT_EQ(v.status, "succeed");
  EXPECT_EQ(busi_->CallCount(P("/confirm1")), 3u);
  EXPECT_EQ(busi_->CallCount(P("/cancel1")), 0u);
}

TEST_F(ModesE2E, Tcc06NestedBranchConfirmedBeforeItsParent) {
  std::string gid = Gid();
  ASSERT_EQ(Post("prepare", {{"gid", gid}, {"trans_type", "tcc"}}).status, 200);
  ASSERT_EQ(Register(gid, "02", U("/confirm02"), U("/cancel02")).status, 200);
  ASSERT_EQ(Register(gid, "0201", U("/confirm0201"), U("/cancel0201")).status, 200);
  ASSERT_EQ(Post("submit", {{"gid", gid}, {"trans_type", "tcc"}, {"wait_result", true}}).status,
            200);
  auto calls = busi_->CallsFor(gid);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].query["branch_id"], "0201");
  EXPECT_EQ(calls[1].query["branch_id"], "02");
}

TEST_F(ModesE2E, Tcc07DuplicateRegistration) {
  std::string gid = Gid();
  ASSERT_EQ(Post("prepare", {{"gid", gid}, {"trans_type", "tcc"}}).status, 200);
  ASSERT_EQ(Register(gid, "01", U("/confirm1"), U("/cancel1")).status, 200);
  EXPECT_EQ(Register(gid, "01", U("/confirm1"), U("/cancel1")).status, 200) << "identical repeat";
  EXPECT_EQ(Register(gid, "01", U("/other"), U("/cancel1")).status, 409) << "conflicting repeat";
  EXPECT_EQ(QueryTrans(*server_, gid).branch_status.size(), 2u);
  // The legacy alias behaves the same (API-08).
  auto alias = HttpFetch("POST", server_->Api("registerTccBranch"),
                         json::serialize(json::object{{"gid", gid},
                                                      {"trans_type", "tcc"},
                                                      {"branch_id", "02"},
                                                      {"confirm", U("/c2")},
                                                      {"cancel", U("/x2")}}));
  EXPECT_EQ(alias.status, 200);
  // API-07: values must be strings.
  EXPECT_EQ(HttpFetch("POST", server_->Api("registerBranch"),
                      R"({"gid":")" + gid + R"(","trans_type":"tcc","branch_id":3})")
                .status,
            400);
}

TEST_F(ModesE2E, Tcc08CancelOngoingLeavesAborting) {
  std::string gid = Gid();
  busi_->Script(P("/cancel1"), {BusiAnswer::Ongoing()});
  ASSERT_EQ(Post("prepare", {{"gid", gid}, {"trans_type", "tcc"}}).status, 200);
  ASSERT_EQ(Register(gid, "01", U("/confirm1"), U("/cancel1")).status, 200);
  auto r = Post("abort", {{"gid", gid}, {"trans_type", "tcc"}, {"wait_result", true}});
  EXPECT_EQ(r.status, 425) << r.body;
  EXPECT_EQ(QueryTrans(*server_, gid).status, "aborting");
  EXPECT_EQ(WaitStatus(*server_, gid, {"failed"}, milliseconds(8000)).status, "failed");
}

TEST_F(ModesE2E, TccOptionsGivenAtPrepareGovernTheConfirmRound) {
  std::string gid = Gid();
  ASSERT_EQ(Post("prepare", {{"gid", gid},
                             {"trans_type", "tcc"},
                             {"branch_headers", json::object{{"x-token", "abc"}}}})
                .status,
            200);
  ASSERT_EQ(Register(gid, "01", U("/confirm1"), U("/cancel1")).status, 200);
  ASSERT_EQ(Post("submit", {{"gid", gid}, {"trans_type", "tcc"}, {"wait_result", true}}).status,
            200);
  auto calls = busi_->CallsFor(gid);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].headers["x-token"], "abc");
}

TEST_F(ModesE2E, Xa01To03) {
  std::string gid = Gid();
  ASSERT_EQ(Post("prepare", {{"gid", gid}, {"trans_type", "xa"}}).status, 200);
  for (const char* id : {"01", "02"}) {
    ASSERT_EQ(Post("registerXaBranch",
                   {{"gid", gid}, {"trans_type", "xa"}, {"branch_id", id}, {"url", U("/xa")}})
                  .status,
              200);
  }
  ASSERT_EQ(Post("submit", {{"gid", gid}, {"trans_type", "xa"}, {"wait_result", true}}).status,
            200);
  TransView v = QueryTrans(*server_, gid);
  EXPECT_EQ(v.branch_ops, (Statuses{"rollback", "commit", "rollback", "commit"}));
  auto calls = busi_->CallsFor(gid);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].query["branch_id"], "01") << "xa commits in registration order";
  EXPECT_EQ(calls[0].method, "POST");
  EXPECT_EQ(calls[0].body, "");
  EXPECT_EQ(calls[0].query["op"], "commit");
  // XA-03: a prepared XA without branches times out -> failed.
  std::string gid2 = Gid();
  ASSERT_EQ(Post("prepare", {{"gid", gid2}, {"trans_type", "xa"}, {"timeout_to_fail", 1}}).status,
            200);
  EXPECT_EQ(WaitStatus(*server_, gid2, {"failed"}, milliseconds(8000)).status, "failed");
}

json::object MsgBody(const std::string& gid, const std::vector<std::string>& actions,
                     const json::object& extra = {}) {
  json::array steps, payloads;
  for (const auto& a : actions) {
    steps.push_back(json::object{{"action", a}});
    payloads.push_back(json::string("{\"n\":1}"));
  }
  json::object o{{"gid", gid}, {"trans_type", "msg"}, {"steps", steps}, {"payloads", payloads}};
  for (const auto& kv : extra) o[kv.key()] = kv.value();
  return o;
}

TEST_F(ModesE2E, Msg01And03PlainMsgIsDeliveredInOrderAndFailuresRetried) {
  std::string gid = Gid();
  busi_->Script(P("/a2"), {BusiAnswer::Failure(), BusiAnswer::Error()});
  ASSERT_EQ(Post("submit", MsgBody(gid, {U("/a1"), U("/a2")})).status, 200);
  TransView v = WaitStatus(*server_, gid, {"succeed"}, milliseconds(8000));
  EXPECT_EQ(v.status, "succeed");
  EXPECT_EQ(v.branch_status, (Statuses{"succeed", "succeed"}));
  auto calls = busi_->CallsFor(gid);
  ASSERT_EQ(calls.size(), 4u);
  EXPECT_EQ(calls[0].path, P("/a1"));
  EXPECT_EQ(busi_->CallCount(P("/a2")), 3u);
}

TEST_F(ModesE2E, Msg02ConcurrentCallsInParallel) {
  std::string gid = Gid();
  busi_->SetDefault(P("/a1"), BusiAnswer{200, R"({"dtm_result":"SUCCESS"})", 400});
  busi_->SetDefault(P("/a2"), BusiAnswer{200, R"({"dtm_result":"SUCCESS"})", 400});
  ASSERT_EQ(Post("submit",
                 MsgBody(gid, {U("/a1"), U("/a2")}, {{"concurrent", true}, {"wait_result", true}}))
                .status,
            200);
  auto calls = busi_->CallsFor(gid);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_LT(calls[1].start, calls[0].end);
}

TEST_F(ModesE2E, Msg04And05PrepareSubmitAbort) {
  std::string gid = Gid();
  auto body = MsgBody(gid, {U("/a1")}, {{"query_prepared", U("/qp")}});
  ASSERT_EQ(Post("prepare", body).status, 200);
  ASSERT_EQ(Post("prepare", body).status, 200) << "prepare twice";
  auto sub = Post("submit", {{"gid", gid}, {"trans_type", "msg"}, {"wait_result", true}});
  ASSERT_EQ(sub.status, 200) << sub.body;
  EXPECT_EQ(QueryTrans(*server_, gid).status, "succeed");
  EXPECT_EQ(Post("prepare", body).status, 409);
  EXPECT_EQ(Post("abort", {{"gid", gid}, {"trans_type", "msg"}}).status, 409);
  std::string gid2 = Gid();
  ASSERT_EQ(Post("prepare", MsgBody(gid2, {U("/b1")}, {{"query_prepared", U("/qp")}})).status, 200);
  ASSERT_EQ(Post("abort", {{"gid", gid2}, {"trans_type", "msg"}}).status, 200);
  EXPECT_EQ(QueryTrans(*server_, gid2).status, "failed");
  EXPECT_EQ(busi_->CallCount(P("/b1")), 0u);
  EXPECT_EQ(Post("prepare", MsgBody(Gid(), {U("/b1")})).status, 400) << "query_prepared required";
}

TEST_F(ModesE2E, Msg06And07CheckBackAfterTimeout) {
  // SUCCESS -> delivered; FAILURE -> failed; ONGOING -> stays prepared.
  std::string ok = Gid(), fail = Gid(), ongoing = Gid();
  busi_->SetDefault(P("/qp-fail"), BusiAnswer::Failure());
  busi_->SetDefault(P("/qp-ongoing"), BusiAnswer::Ongoing());
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(Post("prepare",
                 MsgBody(ok, {U("/a")}, {{"query_prepared", U("/qp-ok")}, {"timeout_to_fail", 1}}))
                .status,
            200);
  ASSERT_EQ(Post("prepare", MsgBody(fail, {U("/a")},
                                    {{"query_prepared", U("/qp-fail")}, {"timeout_to_fail", 1}}))
                .status,
            200);
  ASSERT_EQ(Post("prepare", MsgBody(ongoing, {U("/a")},
                                    {{"query_prepared", U("/qp-ongoing")}, {"timeout_to_fail", 1}}))
                .status,
            200);
  EXPECT_EQ(WaitStatus(*server_, ok, {"succeed"}, milliseconds(8000)).status, "succeed");
  auto qp = busi_->Calls(P("/qp-ok"));
  ASSERT_GE(qp.size(), 1u);
  EXPECT_GE(qp[0].start - t0, milliseconds(900)) << "no check-back before timeout_to_fail";
  EXPECT_EQ(qp[0].method, "GET");
  EXPECT_EQ(qp[0].query["branch_id"], "00");
  EXPECT_EQ(qp[0].query["op"], "msg");
  TransView f = WaitStatus(*server_, fail, {"failed"}, milliseconds(8000));
  EXPECT_EQ(f.status, "failed");
  EXPECT_EQ(f.branch_status, (Statuses{"prepared"}));
  EXPECT_TRUE(WaitFor([&] { return busi_->CallCount(P("/qp-ongoing")) >= 2; }, milliseconds(8000)));
  EXPECT_EQ(QueryTrans(*server_, ongoing).status, "prepared");
  ASSERT_EQ(Post("forceStop", {{"gid", ongoing}}).status, 200);
}

TEST_F(ModesE2E, Msg08GuardedCheckBack) {
  std::string html = Gid(), exc = Gid();
  busi_->SetDefault(P("/qp-html"), BusiAnswer{200, "<html><body>Internal error</body></html>", 0});
  busi_->SetDefault(
      P("/qp-exc"),
      BusiAnswer{200, R"({"dtm_result":"Object reference not set to an instance"})", 0});
  ASSERT_EQ(Post("prepare", MsgBody(html, {U("/a")},
                                    {{"query_prepared", U("/qp-html")}, {"timeout_to_fail", 1}}))
                .status,
            200);
  ASSERT_EQ(Post("prepare", MsgBody(exc, {U("/a")},
                                    {{"query_prepared", U("/qp-exc")}, {"timeout_to_fail", 1}}))
                .status,
            200);
  EXPECT_TRUE(WaitFor(
      [&] { return busi_->CallCount(P("/qp-html")) >= 1 && busi_->CallCount(P("/qp-exc")) >= 1; },
      milliseconds(8000)));
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_EQ(QueryTrans(*server_, html).status, "prepared") << "an error page must not commit";
  EXPECT_EQ(QueryTrans(*server_, exc).status, "prepared");
  EXPECT_EQ(busi_->CallsFor(html).size(), busi_->CallCount(P("/qp-html"))) << "no action called";
  std::string empty = Gid();
  busi_->SetDefault(P("/qp-null"), BusiAnswer{200, "null", 0});
  ASSERT_EQ(Post("prepare", MsgBody(empty, {U("/a")},
                                    {{"query_prepared", U("/qp-null")}, {"timeout_to_fail", 1}}))
                .status,
            200);
  EXPECT_EQ(WaitStatus(*server_, empty, {"succeed"}, milliseconds(8000)).status, "succeed");
  Post("forceStop", {{"gid", html}});
  Post("forceStop", {{"gid", exc}});
}

TEST_F(ModesE2E, SubmitDuringACheckBackRoundWaitsForItAndSucceeds) {
  std::string gid = Gid();
  busi_->SetDefault(P("/qp"), BusiAnswer{425, R"({"dtm_result":"ONGOING"})", 1000});
  ASSERT_EQ(Post("prepare",
                 MsgBody(gid, {U("/a")}, {{"query_prepared", U("/qp")}, {"timeout_to_fail", 1}}))
                .status,
            200);
  ASSERT_TRUE(WaitFor([&] { return busi_->CallCount(P("/qp")) >= 1; }, milliseconds(5000)));
  // The check-back is in flight (it answers after 1 s): the submit must not be refused.
  auto r = Post("submit", {{"gid", gid}, {"trans_type", "msg"}});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(WaitStatus(*server_, gid, {"succeed"}, milliseconds(8000)).status, "succeed");
}

TEST_F(ModesE2E, Msg10Delay) {
  std::string gid = Gid();
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(Post("submit", MsgBody(gid, {U("/a")}, {{"custom_data", R"({"Delay":1})"}})).status,
            200);
  EXPECT_EQ(WaitStatus(*server_, gid, {"succeed"}, milliseconds(8000)).status, "succeed");
  auto calls = busi_->CallsFor(gid);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_GE(calls[0].start - t0, milliseconds(950)) << "no action before the delay";
}

// A delay near the int64 limit is capped (delay * 1000 used to overflow: UB, in practice a
// negative delay and an immediate delivery).
TEST_F(ModesE2E, Msg10HugeDelayIsNotImmediate) {
  std::string gid = Gid();
  ASSERT_EQ(
      Post("submit", MsgBody(gid, {U("/a")}, {{"custom_data", R"({"delay":9223372036854775807})"}}))
          .status,
      200);
  std::this_thread::sleep_for(milliseconds(1500));
  EXPECT_EQ(QueryTrans(*server_, gid).status, "submitted");
  EXPECT_TRUE(busi_->CallsFor(gid).empty()) << "no action before the delay";
  Post("forceStop", {{"gid", gid}});
}

// Topics (PROTOCOL.md §2.3, §6 API-15): subscribe creates the topic; errors keep DTM's messages;
// scanKV/queryKV show v as a JSON string and the version grows with every change.
TEST_F(ModesE2E, Api15TopicsSubscribeUnsubscribeDeleteAndKv) {
  const std::string topic = Name();
  auto sub = [&](const std::string& t, const std::string& url, const std::string& remark = "") {
    return HttpFetch("GET",
                     server_->Api("subscribe?topic=" + t + "&url=" + url + "&remark=" + remark));
  };
  auto unsub = [&](const std::string& t, const std::string& url) {
    return HttpFetch("GET", server_->Api("unsubscribe?topic=" + t + "&url=" + url));
  };
  auto message = [](const HttpResult& r) {
    boost::system::error_code ec;
    json::value v = json::parse(r.body, ec);
    if (ec || !v.is_object() || !v.get_object().contains("message")) return std::string();
    return json::value_to<std::string>(v.get_object().at("message"));
  };
  auto r = sub(topic, "http://h1/a", "first");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, R"({"dtm_result":"SUCCESS"})");
  ASSERT_EQ(sub(topic, "http://h2/b").status, 200);
  r = sub(topic, "http://h1/a");
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(message(r), "this url exists");
  r = sub("", "http://h1/a");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(message(r), "empty topic");
  r = sub(topic, "");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(message(r), "empty url");
  r = unsub(topic + "-none", "http://h1/a");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(message(r), "no such a topic");
  r = unsub(topic, "http://h9/z");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(message(r), "no such an url");
  r = HttpFetch("DELETE", server_->Api("topic/" + topic + "-none"));
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_EQ(message(r), "storage: NotFound");

  // queryKV: v is a JSON string; two subscribes -> version 2.
  r = HttpFetch("GET", server_->Api("queryKV?cat=topics&key=" + topic));
  ASSERT_EQ(r.status, 200) << r.body;
  json::object q = json::parse(r.body).as_object();
  ASSERT_EQ(q.at("kv").as_array().size(), 1u);
  json::object kv = q.at("kv").as_array()[0].as_object();
  EXPECT_EQ(json::value_to<std::string>(kv.at("cat")), "topics");
  EXPECT_EQ(json::value_to<std::string>(kv.at("k")), topic);
  EXPECT_EQ(json::value_to<std::string>(kv.at("v")),
            R"([{"url":"http://h1/a","remark":"first"},{"url":"http://h2/b","remark":""}])");
  EXPECT_EQ(kv.at("version").as_int64(), 2);
  for (const char* key : {"id", "create_time", "update_time"}) EXPECT_TRUE(kv.contains(key)) << key;
  EXPECT_NE(json::value_to<std::string>(kv.at("create_time")).find('Z'), std::string::npos);
  EXPECT_FALSE(q.contains("next_position"));
  r = HttpFetch("GET", server_->Api("queryKV?cat=topics&key=" + topic + "-none"));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"kv":[]})");

  // unsubscribe -> version 3; the topic stays (empty list) until deleted.
  ASSERT_EQ(unsub(topic, "http://h1/a").status, 200);
  ASSERT_EQ(unsub(topic, "http://h2/b").status, 200);
  r = HttpFetch("GET", server_->Api("scanKV?cat=topics&limit=1000"));
  ASSERT_EQ(r.status, 200) << r.body;
  json::object scan = json::parse(r.body).as_object();
  EXPECT_EQ(json::value_to<std::string>(scan.at("next_position")), "");
  bool found = false;
  for (const auto& e : scan.at("kv").as_array()) {
    if (json::value_to<std::string>(e.at("k")) != topic) continue;
    found = true;
    EXPECT_EQ(json::value_to<std::string>(e.at("v")), "[]");
    EXPECT_EQ(e.at("version").as_int64(), 4);
  }
  EXPECT_TRUE(found) << r.body;
  // scanKV pages with the cursor rules of `all`.
  ASSERT_EQ(sub(topic + "-p1", "http://h1/a").status, 200);
  ASSERT_EQ(sub(topic + "-p2", "http://h1/a").status, 200);
  r = HttpFetch("GET", server_->Api("scanKV?cat=topics&limit=1"));
  ASSERT_EQ(r.status, 200);
  scan = json::parse(r.body).as_object();
  ASSERT_EQ(scan.at("kv").as_array().size(), 1u);
  EXPECT_EQ(json::value_to<std::string>(scan.at("kv").as_array()[0].at("k")), topic + "-p2");
  std::string next = json::value_to<std::string>(scan.at("next_position"));
  ASSERT_FALSE(next.empty());
  r = HttpFetch("GET", server_->Api("scanKV?cat=topics&limit=1&position=" + next));
  scan = json::parse(r.body).as_object();
  EXPECT_EQ(json::value_to<std::string>(scan.at("kv").as_array()[0].at("k")), topic + "-p1");

  r = HttpFetch("DELETE", server_->Api("topic/" + topic));
  EXPECT_EQ(r.status, 200) << r.body;
  r = HttpFetch("GET", server_->Api("queryKV?cat=topics&key=" + topic));
  EXPECT_EQ(r.body, R"({"kv":[]})");
  r = unsub(topic, "http://h1/a");
  EXPECT_EQ(message(r), "no such a topic");
}

// MSG-09: a topic:// action is expanded at creation into one row per current subscriber.
TEST_F(ModesE2E, Msg09TopicExpandsIntoOneBranchPerSubscriber) {
  const std::string two = Name() + "-two", one = Name() + "-one";
  auto sub = [&](const std::string& t, const std::string& url) {
    return HttpFetch("GET", server_->Api("subscribe?topic=" + t + "&url=" + url)).status;
  };
  ASSERT_EQ(sub(two, U("/s1")), 200);
  ASSERT_EQ(sub(two, U("/s2")), 200);
  ASSERT_EQ(sub(one, U("/only")), 200);

  std::string gid = Gid();
  auto r = Post("submit", MsgBody(gid, {"topic://" + two, U("/after")}, {{"wait_result", true}}));
  ASSERT_EQ(r.status, 200) << r.body;
  TransView v = WaitStatus(*server_, gid, {"succeed"}, milliseconds(8000));
  ASSERT_EQ(v.status, "succeed");
  std::vector<std::string> ids;
  for (const auto& b : v.raw.at("branches").as_array()) {
    ids.push_back(json::value_to<std::string>(b.at("branch_id")));
  }
  EXPECT_EQ(ids, (Statuses{"01-01", "01-02", "02"}));
  EXPECT_EQ(busi_->CallCount(P("/s1")), 1u);
  EXPECT_EQ(busi_->CallCount(P("/s2")), 1u);
  auto calls = busi_->CallsFor(gid);
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0].query["branch_id"], "01-01");
  EXPECT_EQ(calls[1].query["branch_id"], "01-02");
  EXPECT_EQ(calls[0].body, "{\"n\":1}");

  // One subscriber -> plain 01; also through prepare + submit.
  std::string gid1 = Gid();
  ASSERT_EQ(
      Post("prepare", MsgBody(gid1, {"topic://" + one}, {{"query_prepared", U("/qp")}})).status,
      200);
  r = Post("submit", MsgBody(gid1, {"topic://" + one}, {{"wait_result", true}}));
  ASSERT_EQ(r.status, 200) << r.body;
  v = WaitStatus(*server_, gid1, {"succeed"}, milliseconds(8000));
  ASSERT_EQ(v.status, "succeed");
  ASSERT_EQ(v.raw.at("branches").as_array().size(), 1u);
  EXPECT_EQ(json::value_to<std::string>(v.raw.at("branches").as_array()[0].at("branch_id")), "01");
  EXPECT_EQ(busi_->CallCount(P("/only")), 1u);

  // Unknown topic (or one without subscribers): 400 topic not found, nothing stored.
  for (const std::string& t : {Name() + "-unknown", std::string()}) {
    std::string bad = Gid();
    r = Post("submit", MsgBody(bad, {U("/a"), "topic://" + t}));
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_NE(r.body.find("topic not found"), std::string::npos) << r.body;
    EXPECT_FALSE(QueryTrans(*server_, bad).found);
    r = Post("prepare", MsgBody(bad, {"topic://" + t}, {{"query_prepared", U("/qp")}}));
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_FALSE(QueryTrans(*server_, bad).found);
  }
}

// §5 #17: a subscription change applies to messages created after it, not to earlier ones.
TEST_F(ModesE2E, TopicChangeAffectsOnlyLaterMessages) {
  const std::string topic = Name();
  auto get = [&](const std::string& op) { return HttpFetch("GET", server_->Api(op)).status; };
  ASSERT_EQ(get("subscribe?topic=" + topic + "&url=" + U("/old")), 200);
  // Created (prepared) before the change: keeps its one row to /old.
  std::string before = Gid();
  ASSERT_EQ(
      Post("prepare", MsgBody(before, {"topic://" + topic}, {{"query_prepared", U("/qp")}})).status,
      200);
  ASSERT_EQ(get("subscribe?topic=" + topic + "&url=" + U("/new")), 200);
  ASSERT_EQ(get("unsubscribe?topic=" + topic + "&url=" + U("/old")), 200);
  auto r = Post("submit", MsgBody(before, {"topic://" + topic}, {{"wait_result", true}}));
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(WaitStatus(*server_, before, {"succeed"}, milliseconds(8000)).status, "succeed");
  EXPECT_EQ(busi_->CallCount(P("/old")), 1u);
  EXPECT_EQ(busi_->CallCount(P("/new")), 0u);
  // Created after: goes to /new only.
  std::string after = Gid();
  r = Post("submit", MsgBody(after, {"topic://" + topic}, {{"wait_result", true}}));
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(WaitStatus(*server_, after, {"succeed"}, milliseconds(8000)).status, "succeed");
  EXPECT_EQ(busi_->CallCount(P("/old")), 1u);
  EXPECT_EQ(busi_->CallCount(P("/new")), 1u);
  // The prepared msg's submit still works once the topic has no subscriber at all.
  std::string prepared = Gid();
  ASSERT_EQ(Post("prepare", MsgBody(prepared, {"topic://" + topic}, {{"query_prepared", U("/qp")}}))
                .status,
            200);
  ASSERT_EQ(get("unsubscribe?topic=" + topic + "&url=" + U("/new")), 200);
  r = Post("submit", MsgBody(prepared, {"topic://" + topic}, {{"wait_result", true}}));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(busi_->CallCount(P("/new")), 2u);
}

TEST(AlertsE2E, Call06WebhookFiresFromTheRetryLimitAndAFailingWebhookIsIgnored) {
  Busi busi;
  busi.SetDefault("/alert", BusiAnswer{500, "webhook down", 0});  // a failing webhook
  busi.Script("/flaky",
              {BusiAnswer::Error(), BusiAnswer::Error(), BusiAnswer::Error(), BusiAnswer::Error()});
  busi.SetDefault("/qp-html", BusiAnswer{200, "<html>oops</html>", 0});
  std::string dir = TempDir("alerts");
  ServerProcess server(dir + "/dtx.db", {"--retry-interval", "0.1", "--cron-interval", "0.05",
                                         "--max-retry-interval", "0.2", "--alert-webhook",
                                         busi.Url("/alert"), "--log-level", "error"});
  ASSERT_TRUE(server.Start());
  ASSERT_EQ(HttpFetch("POST", server.Api("submit"),
                      SagaBody("alert-saga", {{busi.Url("/flaky"), ""}}, {"x"}))
                .status,
            200);
  EXPECT_EQ(WaitStatus(server, "alert-saga", {"succeed"}, milliseconds(10000)).status, "succeed")
      << "a failing webhook must not stop processing";
  auto alerts = busi.Calls("/alert");
  ASSERT_GE(alerts.size(), 2u) << "attempts 3 and 4 failed";
  json::value first = json::parse(alerts[0].body);
  EXPECT_EQ(first.at("gid").as_string(), "alert-saga");
  EXPECT_EQ(first.at("retry_count").to_number<int64_t>(), 3);
  EXPECT_EQ(first.at("branch").as_string(), busi.Url("/flaky"));
  EXPECT_EQ(first.at("status").as_string(), "submitted");
  EXPECT_NE(std::string(first.at("error").as_string()).find("busi error"), std::string::npos);
  // An indeterminate check-back raises the alert too, with its own kind.
  json::object msg{{"gid", "alert-msg"},
                   {"trans_type", "msg"},
                   {"query_prepared", busi.Url("/qp-html")},
                   {"timeout_to_fail", 1},
                   {"steps", json::array{json::object{{"action", busi.Url("/a")}}}},
                   {"payloads", json::array{"x"}}};
  ASSERT_EQ(HttpFetch("POST", server.Api("prepare"), json::serialize(msg)).status, 200);
  EXPECT_TRUE(WaitFor(
      [&] {
        for (const auto& c : busi.Calls("/alert")) {
          if (c.body.find("indeterminate_check_back") != std::string::npos) return true;
        }
        return false;
      },
      milliseconds(10000)));
  EXPECT_EQ(QueryTrans(server, "alert-msg").status, "prepared");
  EXPECT_EQ(server.Terminate(), 0);
}

TEST(CheckBackPolicyE2E, LegacyCommitsOnAny200) {
  Busi busi;
  busi.SetDefault("/qp-ok", BusiAnswer{200, "ok", 0});
  std::string dir = TempDir("legacy");
  ServerProcess server(dir + "/dtx.db", {"--retry-interval", "0.2", "--cron-interval", "0.05",
                                         "--check-back-policy", "legacy", "--log-level", "error"});
  ASSERT_TRUE(server.Start());
  json::object msg{{"gid", "legacy-msg"},
                   {"trans_type", "msg"},
                   {"query_prepared", busi.Url("/qp-ok")},
                   {"timeout_to_fail", 1},
                   {"steps", json::array{json::object{{"action", busi.Url("/a")}}}},
                   {"payloads", json::array{"x"}}};
  ASSERT_EQ(HttpFetch("POST", server.Api("prepare"), json::serialize(msg)).status, 200);
  EXPECT_EQ(WaitStatus(server, "legacy-msg", {"succeed"}, milliseconds(8000)).status, "succeed");
  EXPECT_EQ(server.Terminate(), 0);
}

}  // namespace
}  // namespace dtx::testing
