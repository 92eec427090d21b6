// End-to-end tests of the admin API (issue 13): the real `dtx server` with admin tokens, a
// scriptable participant, and every operator action (retry, stop, abort, skip, resolve), the
// audit log, the auth paths (401/403) and two operators racing on one transaction. On SQLite, and
// on PostgreSQL with DTX_E2E_STORE=postgres (there the race runs across two coordinators).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/support/harness.h"

namespace dtx::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;

constexpr const char* kAlice = "alice-token-0123456789";
constexpr const char* kBob = "bob-token-0123456789ab";

json::value Parse(const HttpResult& r) {
  boost::system::error_code ec;
  json::value v = json::parse(r.body, ec);
  return ec ? json::value() : v;
}

std::string Str(const json::value& v, const char* key) {
  if (!v.is_object()) return {};
  const json::value* x = v.get_object().if_contains(key);
  return x && x->is_string() ? std::string(x->get_string()) : std::string();
}

class AdminE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(TempDir("admin"));
    store_ = new std::string(E2EStore(*dir_));
    if (store_->empty()) GTEST_SKIP() << "DTX_E2E_STORE=postgres needs DTX_TEST_PG_URL";
    // A long backoff base (2 s, doubling) so that a retry's effect is visible against it.
    const std::vector<std::string> args = {"--retry-interval",    "2",
                                           "--cron-interval",     "0.1",
                                           "--request-timeout",   "2",
                                           "--alert-retry-limit", "1",
                                           "--log-level",         "warn",
                                           "--admin-token",       std::string("alice=") + kAlice,
                                           "--admin-token",       std::string("bob=") + kBob};
    server_ = new ServerProcess(*store_, args);
    ASSERT_TRUE(server_->Start());
    busi_ = new Busi();
  }
  void SetUp() override {
    if (server_ == nullptr) GTEST_SKIP() << "no server";
  }
  static void TearDownTestSuite() {
    if (server_ == nullptr) return;
    EXPECT_EQ(server_->Terminate(), 0);
    delete busi_;
    delete server_;
    delete store_;
    delete dir_;
  }

  std::string Gid() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    return std::string(info->name()) + "-" + std::to_string(counter_++);
  }
  std::string P(const std::string& path) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    return "/" + std::string(info->name()) + path;
  }
  std::string U(const std::string& path) { return busi_->Url(P(path)); }
  static std::string Admin(const ServerProcess& s, const std::string& path) {
    return s.Base() + "/api/dtx/admin/" + path;
  }
  static HttpResult Get(const std::string& path, const char* token = kAlice,
                        const ServerProcess* s = nullptr) {
    return HttpFetchWithHeaders("GET", Admin(s ? *s : *server_, path), "",
                                {{"Authorization", std::string("Bearer ") + token}});
  }
  static HttpResult Post(const std::string& path, const json::object& body,
                         const char* token = kAlice, const ServerProcess* s = nullptr) {
    return HttpFetchWithHeaders("POST", Admin(s ? *s : *server_, path), json::serialize(body),
                                {{"Authorization", std::string("Bearer ") + token}});
  }
  // A two-step saga whose first action answers 500 until told otherwise.
  std::string StuckSaga() {
    const std::string gid = Gid();
    busi_->SetDefault(P("/a1"), BusiAnswer::Error());
    auto r = HttpFetch("POST", server_->Api("submit"),
                       SagaBody(gid, {{U("/a1"), U("/c1")}, {U("/a2"), U("/c2")}}, {"{}", "{}"}));
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_TRUE(WaitFor([&] { return busi_->CallCount(P("/a1")) >= 1; }, milliseconds(5000)));
    return gid;
  }
  json::value Show(const std::string& gid) { return Parse(Get("transactions/" + gid)); }

  static std::string* dir_;
  static std::string* store_;
  static ServerProcess* server_;
  static Busi* busi_;
  static int counter_;
};
std::string* AdminE2E::dir_ = nullptr;
std::string* AdminE2E::store_ = nullptr;
ServerProcess* AdminE2E::server_ = nullptr;
Busi* AdminE2E::busi_ = nullptr;
int AdminE2E::counter_ = 0;

TEST_F(AdminE2E, AuthMissingOrWrongTokenIs401) {
  auto none = HttpFetch("GET", Admin(*server_, "transactions"));
  EXPECT_EQ(none.status, 401) << none.body;
  auto wrong = Get("transactions", "alice-token-0123456780");
  EXPECT_EQ(wrong.status, 401) << wrong.body;
  auto basic = HttpFetchWithHeaders("GET", Admin(*server_, "transactions"), "",
                                    {{"Authorization", std::string("Basic ") + kAlice}});
  EXPECT_EQ(basic.status, 401);
  auto ok = Get("whoami", kBob);
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(Str(Parse(ok), "who"), "bob");
  // The DTM API is not behind the admin token.
  EXPECT_EQ(HttpFetch("GET", server_->Api("version")).status, 200);
}

TEST_F(AdminE2E, NoTokenConfiguredIs403) {
  const std::string dir = TempDir("admin-403");
  const std::string store = E2EStore(dir);
  ServerProcess bare(store, {"--log-level", "warn"});
  ASSERT_TRUE(bare.Start());
  auto r = HttpFetchWithHeaders("GET", Admin(bare, "transactions"), "",
                                {{"Authorization", std::string("Bearer ") + kAlice}});
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_NE(r.body.find("--admin-token"), std::string::npos) << "says how to enable it";
  EXPECT_EQ(bare.Terminate(), 0);
}

TEST_F(AdminE2E, UnreadableTokenFileRefusesToStart) {
  const std::string dir = TempDir("admin-file");
  ServerProcess s(E2EStore(dir), {"--admin-token-file", dir + "/missing-tokens"});
  EXPECT_FALSE(s.Start(std::chrono::seconds(5)));
}

TEST_F(AdminE2E, RetryMakesAStuckSagaDueNowAfterTheFix) {
  const std::string gid = StuckSaga();
  // Wait until it counts as stuck (retried at least --alert-retry-limit times) and is listed so.
  ASSERT_TRUE(WaitFor([&] { return busi_->CallCount(P("/a1")) >= 2; }, milliseconds(10000)));
  auto list = Parse(Get("transactions?stuck=1&gid_prefix=" + gid));
  ASSERT_TRUE(list.is_object()) << "list";
  const auto& rows = list.at("transactions").as_array();
  ASSERT_EQ(rows.size(), 1u) << json::serialize(list);
  EXPECT_EQ(Str(rows[0], "gid"), gid);
  EXPECT_TRUE(rows[0].at("stuck").as_bool());
  // The next attempt lies seconds away (backoff 4 s and more).
  json::value before = Show(gid);
  const int64_t next = before.at("transaction").at("next_cron_time_ms").as_int64();
  const int64_t now =
      std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  ASSERT_GT(next - now, 2500) << "the backoff must outlast the test's wait below";
  busi_->SetDefault(P("/a1"), BusiAnswer::Success());  // the participant is fixed
  auto r = Post("transactions/" + gid + "/retry",
                {{"reason", "payment service fixed"}, {"expect_status", "submitted"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Str(Parse(r), "status_before"), "submitted");
  TransView done = WaitStatus(*server_, gid, {"succeed"}, milliseconds(2500));
  EXPECT_EQ(done.status, "succeed") << "retry must run it now, not at the next backoff";
  auto audit = Parse(Get("audit?gid=" + gid));
  const auto& records = audit.at("audit").as_array();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(Str(records[0], "who"), "alice");
  EXPECT_EQ(Str(records[0], "action"), "retry");
  EXPECT_EQ(Str(records[0], "reason"), "payment service fixed");
  EXPECT_EQ(Str(records[0], "status_before"), "submitted");
}

TEST_F(AdminE2E, StopFailsWithoutCompensation) {
  const std::string gid = StuckSaga();
  auto r = Post("transactions/" + gid + "/stop", {{"reason", "customer cancelled by phone"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Str(Parse(r), "status_after"), "failed");
  TransView v = QueryTrans(*server_, gid);
  EXPECT_EQ(v.status, "failed");
  EXPECT_NE(v.rollback_reason.find("customer cancelled by phone"), std::string::npos);
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_EQ(busi_->CallCount(P("/c1")), 0u) << "stop never compensates";
  auto again = Post("transactions/" + gid + "/stop", {{"reason", "twice"}});
  EXPECT_EQ(again.status, 409) << "a final transaction: " << again.body;
  EXPECT_EQ(Str(Parse(again).at("current"), "status"), "failed");
}

TEST_F(AdminE2E, AbortCompensatesWhatRan) {
  const std::string gid = Gid();
  busi_->SetDefault(P("/a2"), BusiAnswer::Error());
  auto s = HttpFetch("POST", server_->Api("submit"),
                     SagaBody(gid, {{U("/a1"), U("/c1")}, {U("/a2"), U("/c2")}}, {"{}", "{}"}));
  ASSERT_EQ(s.status, 200);
  ASSERT_TRUE(WaitFor([&] { return busi_->CallCount(P("/a2")) >= 1; }, milliseconds(5000)));
  auto r = Post("transactions/" + gid + "/abort", {{"reason", "out of stock"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Str(Parse(r), "status_after"), "aborting");
  TransView v = WaitStatus(*server_, gid, {"failed"}, milliseconds(5000));
  EXPECT_EQ(v.status, "failed");
  EXPECT_GE(busi_->CallCount(P("/c1")), 1u) << "step 1 ran: it is compensated";
  EXPECT_NE(v.rollback_reason.find("out of stock"), std::string::npos);
}

TEST_F(AdminE2E, SkipMarksABranchDoneAndContinues) {
  const std::string gid = StuckSaga();
  auto missing = Post("transactions/" + gid + "/skip", {{"reason", "x"}, {"branch_id", "09"}});
  EXPECT_EQ(missing.status, 404) << missing.body;
  auto r = Post("transactions/" + gid + "/skip",
                {{"reason", "refunded by hand"}, {"branch_id", "01"}, {"op", "action"}});
  ASSERT_EQ(r.status, 200) << r.body;
  TransView v = WaitStatus(*server_, gid, {"succeed"}, milliseconds(5000));
  EXPECT_EQ(v.status, "succeed");
  EXPECT_GE(busi_->CallCount(P("/a2")), 1u) << "the saga went on with step 2";
  auto audit = Parse(Get("audit?gid=" + gid));
  ASSERT_EQ(audit.at("audit").as_array().size(), 1u);
  EXPECT_EQ(Str(audit.at("audit").as_array()[0], "branch_id"), "01");
  EXPECT_EQ(Str(audit.at("audit").as_array()[0], "op"), "action");
}

TEST_F(AdminE2E, ResolveMarksWithoutChangingState) {
  const std::string gid = StuckSaga();
  ASSERT_EQ(Post("transactions/" + gid + "/stop", {{"reason", "stop"}}).status, 200);
  auto r = Post("transactions/" + gid + "/resolve", {{"reason", "refunded manually"}}, kBob);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Str(Parse(r), "status_after"), "failed");
  json::value shown = Show(gid);
  EXPECT_TRUE(shown.at("transaction").at("resolved").as_bool());
  EXPECT_EQ(Str(shown.at("resolved"), "who"), "bob");
  auto resolved = Parse(Get("transactions?resolved=1&gid_prefix=" + gid));
  EXPECT_EQ(resolved.at("transactions").as_array().size(), 1u);
  auto open = Parse(Get("transactions?resolved=0&gid_prefix=" + gid));
  EXPECT_EQ(open.at("transactions").as_array().size(), 0u);
  EXPECT_EQ(Post("transactions/" + gid + "/resolve", {{"reason", "again"}}).status, 409);
  EXPECT_EQ(QueryTrans(*server_, gid).status, "failed");
}

TEST_F(AdminE2E, BadInput) {
  const std::string gid = StuckSaga();
  EXPECT_EQ(Post("transactions/no-such-gid/retry", {{"reason", "x"}}).status, 404);
  EXPECT_EQ(Get("transactions/no-such-gid").status, 404);
  auto no_reason = Post("transactions/" + gid + "/retry", json::object{});
  EXPECT_EQ(no_reason.status, 400) << no_reason.body;
  EXPECT_EQ(Post("transactions/" + gid + "/explode", {{"reason", "x"}}).status, 400);
  EXPECT_EQ(Post("transactions/" + gid + "/retry", {{"reason", 5}}).status, 400);
  auto stale =
      Post("transactions/" + gid + "/stop", {{"reason", "x"}, {"expect_status", "aborting"}});
  ASSERT_EQ(stale.status, 409) << stale.body;
  EXPECT_EQ(Str(Parse(stale).at("current"), "status"), "submitted");
  EXPECT_EQ(QueryTrans(*server_, gid).status, "submitted") << "a refused action changes nothing";
  EXPECT_EQ(
      Post("transactions/" + gid + "/abort", {{"reason", "x"}, {"expect_status", "bogus"}}).status,
      400);
  EXPECT_EQ(Get("transactions?limit=0").status, 400);
  EXPECT_EQ(Get("transactions?limit=abc").status, 400);
  EXPECT_EQ(Get("nothing-here").status, 404);
  HttpResult del = HttpFetchWithHeaders("DELETE", Admin(*server_, "transactions"), "",
                                        {{"Authorization", std::string("Bearer ") + kAlice}});
  EXPECT_EQ(del.status, 405);
  EXPECT_EQ(del.Header("Allow"), "GET");  // RFC 9110 §15.5.6
  EXPECT_EQ(Get("transactions/" + gid + "/retry").Header("Allow"), "POST");
  EXPECT_EQ(HttpFetch("POST", server_->Base() + "/admin/").Header("Allow"), "GET, HEAD");
  EXPECT_EQ(Parse(Get("audit?gid=" + gid)).at("audit").as_array().size(), 0u)
      << "refused actions leave no audit record";
}

// Two operators act on the same transaction at once, each on the state they saw: exactly one
// wins, the other gets 409 with the current state. On PostgreSQL the second operator talks to a
// second coordinator sharing the store.
TEST_F(AdminE2E, TwoOperatorsRacing) {
  std::unique_ptr<ServerProcess> second;
  if (E2EOnPostgres()) {
    second = std::make_unique<ServerProcess>(
        *store_, std::vector<std::string>{"--log-level", "warn", "--cron-interval", "0.1",
                                          "--admin-token", std::string("bob=") + kBob});
    ASSERT_TRUE(second->Start());
  }
  for (int round = 0; round < 5; ++round) {
    const std::string gid = StuckSaga();
    std::atomic<int> go{0};
    HttpResult a, b;
    std::thread ta([&] {
      while (go.load() == 0) {
      }
      a = Post("transactions/" + gid + "/stop",
               {{"reason", "alice stops"}, {"expect_status", "submitted"}}, kAlice);
    });
    std::thread tb([&] {
      while (go.load() == 0) {
      }
      b = Post("transactions/" + gid + "/abort",
               {{"reason", "bob aborts"}, {"expect_status", "submitted"}}, kBob, second.get());
    });
    go = 1;
    ta.join();
    tb.join();
    ASSERT_TRUE((a.status == 200 && b.status == 409) || (a.status == 409 && b.status == 200))
        << "alice " << a.status << " " << a.body << " / bob " << b.status << " " << b.body;
    const HttpResult& lost = a.status == 409 ? a : b;
    const std::string current = Str(Parse(lost).at("current"), "status");
    EXPECT_TRUE(current == "failed" || current == "aborting") << lost.body;
    auto audit = Parse(Get("audit?gid=" + gid));
    ASSERT_EQ(audit.at("audit").as_array().size(), 1u) << "one action happened";
    EXPECT_EQ(Str(audit.at("audit").as_array()[0], "who"), a.status == 200 ? "alice" : "bob");
  }
  if (second) {
    EXPECT_EQ(second->Terminate(), 0);
  }
}

TEST_F(AdminE2E, ListPagesByPosition) {
  std::vector<std::string> gids;
  for (int i = 0; i < 5; ++i) gids.push_back(StuckSaga());
  const std::string prefix = "ListPagesByPosition-";
  std::vector<std::string> seen;
  int64_t position = 0;
  for (int page = 0; page < 10; ++page) {
    auto r = Parse(Get("transactions?limit=2&gid_prefix=" + prefix +
                       (position ? "&position=" + std::to_string(position) : "")));
    for (const auto& t : r.at("transactions").as_array()) seen.push_back(Str(t, "gid"));
    position = r.at("next_position").as_int64();
    if (position == 0) break;
  }
  EXPECT_EQ(seen.size(), 5u);
  EXPECT_EQ(seen.front(), gids.back()) << "newest first";
  for (const auto& g : gids) {
    ASSERT_EQ(Post("transactions/" + g + "/stop", {{"reason", "cleanup"}}).status, 200);
  }
}

// Browser cross-site requests are refused on every route (a web page must not drive the
// coordinator); non-browser clients send neither header and are unaffected.
TEST_F(AdminE2E, CrossSiteBrowserRequestsAreRefused) {
  const std::string gid = Gid();
  const std::string body = SagaBody(gid, {{U("/a1"), U("/c1")}}, {"{}"});
  auto evil = HttpFetchWithHeaders("POST", server_->Api("submit"), body,
                                   {{"Origin", "http://evil.example"}});
  EXPECT_EQ(evil.status, 403) << evil.body;
  EXPECT_FALSE(QueryTrans(*server_, gid).found) << "nothing stored";
  auto img = HttpFetchWithHeaders("GET", server_->Api("resetCronTime"), "",
                                  {{"Sec-Fetch-Site", "cross-site"}});
  EXPECT_EQ(img.status, 403) << img.body;
  auto admin = HttpFetchWithHeaders(
      "GET", Admin(*server_, "transactions"), "",
      {{"Authorization", std::string("Bearer ") + kAlice}, {"Origin", "http://evil.example"}});
  EXPECT_EQ(admin.status, 403) << "a stolen session cannot be used from another page";
  // Same origin (the console served by this server) passes.
  auto same =
      HttpFetchWithHeaders("GET", server_->Api("version"), "",
                           {{"Origin", server_->Base()}, {"Sec-Fetch-Site", "same-origin"}});
  EXPECT_EQ(same.status, 200) << same.body;
  // An allowed origin passes.
  const std::string dir = TempDir("admin-origin");
  ServerProcess allowing(E2EStore(dir),
                         {"--log-level", "warn", "--allow-origin", "http://console.example"});
  ASSERT_TRUE(allowing.Start());
  auto ok = HttpFetchWithHeaders(
      "GET", allowing.Api("version"), "",
      {{"Origin", "http://console.example"}, {"Sec-Fetch-Site", "cross-site"}});
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(
      HttpFetchWithHeaders("GET", allowing.Api("version"), "", {{"Origin", "http://evil.example"}})
          .status,
      403);
  EXPECT_EQ(allowing.Terminate(), 0);
}

TEST_F(AdminE2E, BranchHeadersCannotSetHostOrHopByHop) {
  const std::string gid = Gid();
  auto r = HttpFetch("POST", server_->Api("submit"),
                     SagaBody(gid, {{U("/a1"), U("/c1")}}, {"{}"},
                              {{"branch_headers", json::object{{"Host", "metadata.internal"}}}}));
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_FALSE(QueryTrans(*server_, gid).found);
}

// The `dtx` command line against the real server: tables, --json, exit codes.

TEST_F(AdminE2E, CliVersion) {
  CliResult r = RunDtxCommand("--version");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("dtx-"), std::string::npos) << r.out;
}

TEST_F(AdminE2E, CliListShowActAudit) {
  const std::string gid = StuckSaga();
  const std::string common = " --server " + server_->Base() + " --token " + kAlice;
  CliResult list = RunDtxCommand("tx list --gid-prefix " + gid + common);
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("GID"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find(gid), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("submitted"), std::string::npos) << list.out;

  CliResult js = RunDtxCommand("tx list --json --gid-prefix " + gid + common);
  ASSERT_EQ(js.exit_code, 0) << js.err;
  boost::system::error_code ec;
  json::value v = json::parse(js.out, ec);
  ASSERT_FALSE(ec) << js.out;
  ASSERT_EQ(v.at("transactions").as_array().size(), 1u);
  EXPECT_EQ(Str(v.at("transactions").as_array()[0], "gid"), gid);

  CliResult show = RunDtxCommand("tx show " + gid + common);
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find("BRANCH"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("compensate"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("next try:"), std::string::npos) << show.out;
  EXPECT_EQ(show.out.find("finished:"), std::string::npos) << show.out;

  // Refused: a stale expect_status -> exit 1 with the reason and the current state; nothing
  // changes.
  CliResult stale =
      RunDtxCommand("tx stop " + gid + " --reason oops --expect-status aborting" + common);
  EXPECT_EQ(stale.exit_code, 1);
  EXPECT_NE(stale.err.find("409"), std::string::npos) << stale.err;
  EXPECT_NE(stale.err.find("submitted"), std::string::npos) << stale.err;
  EXPECT_EQ(QueryTrans(*server_, gid).status, "submitted");
  // No reason: a usage error, nothing sent.
  EXPECT_NE(RunDtxCommand("tx retry " + gid + common).exit_code, 0);
  // No token (the environment's DTX_TOKEN is the other way to give it).
  CliResult anon = RunDtxCommand("tx list --server " + server_->Base(), "DTX_TOKEN=");
  EXPECT_EQ(anon.exit_code, 1);
  EXPECT_NE(anon.err.find("401"), std::string::npos) << anon.err;
  CliResult env = RunDtxCommand("tx show " + gid + " --server " + server_->Base(),
                                std::string("DTX_TOKEN=") + kBob);
  EXPECT_EQ(env.exit_code, 0) << env.err;
  // Unreachable server -> exit 2.
  EXPECT_EQ(RunDtxCommand("tx list --server http://127.0.0.1:1 --token x --timeout 2").exit_code,
            2);

  CliResult skip =
      RunDtxCommand("tx skip " + gid + " --branch 01 --op action --reason 'done by hand'" + common);
  ASSERT_EQ(skip.exit_code, 0) << skip.err;
  EXPECT_NE(skip.out.find("submitted -> submitted"), std::string::npos) << skip.out;
  EXPECT_EQ(WaitStatus(*server_, gid, {"succeed"}, milliseconds(5000)).status, "succeed");
  // Final: when it finished, and no next try (a final transaction is never woken again).
  CliResult done = RunDtxCommand("tx show " + gid + common);
  ASSERT_EQ(done.exit_code, 0) << done.err;
  EXPECT_EQ(done.out.find("next try"), std::string::npos) << done.out;
  EXPECT_NE(done.out.find("finished:   20"), std::string::npos) << done.out;
  CliResult audit = RunDtxCommand("audit --gid " + gid + common);
  ASSERT_EQ(audit.exit_code, 0) << audit.err;
  EXPECT_NE(audit.out.find("alice"), std::string::npos) << audit.out;
  EXPECT_NE(audit.out.find("done by hand"), std::string::npos) << audit.out;
  CliResult audit_js = RunDtxCommand("audit --json --gid " + gid + common);
  ASSERT_EQ(audit_js.exit_code, 0);
  json::value a = json::parse(audit_js.out, ec);
  ASSERT_FALSE(ec) << audit_js.out;
  EXPECT_EQ(Str(a.at("audit").as_array()[0], "action"), "skip");
}

// Notifications through the admin API (issue 13 item 1, issue 11): list and show in the
// notification API's words, resend with a reason, audited; the secret is never shown.
constexpr const char* kNotifySecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

std::string CreateNotification(const ServerProcess& s, const std::string& id,
                               const std::string& url, const std::string& schedule) {
  json::object body{{"id", id}, {"url", url}, {"payload", "{\"n\":1}"}, {"secret", kNotifySecret}};
  body["schedule"] = json::parse(schedule);
  auto r = HttpFetch("POST", s.Base() + "/api/dtx/notify", json::serialize(body));
  EXPECT_EQ(r.status, 200) << r.body;
  return id;
}

std::string NotifyStatus(const ServerProcess& s, const std::string& id) {
  return Str(Parse(HttpFetch("GET", s.Base() + "/api/dtx/notify/" + id)), "status");
}

bool Lists(const json::value& page, const std::string& id) {
  for (const auto& n : page.at("notifications").as_array()) {
    if (Str(n, "id") == id) return true;
  }
  return false;
}

TEST_F(AdminE2E, NotificationsListShowResendAudited) {
  busi_->SetDefault(P("/hook"), BusiAnswer::Error());
  const std::string id = CreateNotification(*server_, Gid(), U("/hook"), "[0]");
  ASSERT_TRUE(WaitFor([&] { return NotifyStatus(*server_, id) == "failed"; }, milliseconds(5000)));

  json::value failed = Parse(Get("notifications?status=failed&limit=500"));
  EXPECT_TRUE(Lists(failed, id)) << json::serialize(failed);
  EXPECT_FALSE(Lists(Parse(Get("notifications?status=delivered&limit=500")), id));
  EXPECT_FALSE(Lists(Parse(Get("notifications?status=aborted&limit=500")), id));
  EXPECT_EQ(Get("notifications?status=stuck").status, 400);
  EXPECT_EQ(Get("notifications?limit=0").status, 400);

  HttpResult shown = Get("notifications/" + id);
  ASSERT_EQ(shown.status, 200) << shown.body;
  json::value n = Parse(shown).at("notification");
  EXPECT_EQ(Str(n, "status"), "failed");
  ASSERT_EQ(n.at("attempts").as_array().size(), 1u);
  EXPECT_EQ(n.at("attempts").as_array()[0].at("http_status").as_int64(), 500);
  EXPECT_TRUE(n.at("signed").as_bool());
  // The secret is never shown: not here, not in the transaction views of the admin API.
  EXPECT_EQ(shown.body.find("MfKQ9r8G"), std::string::npos) << shown.body;
  EXPECT_EQ(Get("transactions/" + id).body.find("MfKQ9r8G"), std::string::npos);
  EXPECT_EQ(Get("transactions?trans_type=notify&limit=500").body.find("MfKQ9r8G"),
            std::string::npos);
  EXPECT_EQ(Get("notifications/no-such-notification").status, 404);
  EXPECT_EQ(Get("notifications/" + StuckSaga()).status, 404);  // a saga is not a notification

  // Refusals change nothing: no reason, unknown id, GET on the action.
  EXPECT_EQ(Post("notifications/" + id + "/resend", {}).status, 400);
  EXPECT_EQ(Post("notifications/nope/resend", {{"reason", "x"}}).status, 404);
  EXPECT_EQ(Get("notifications/" + id + "/resend").status, 405);
  EXPECT_EQ(Get("notifications/" + id + "/resend").Header("Allow"), "POST");
  EXPECT_EQ(NotifyStatus(*server_, id), "failed");

  busi_->SetDefault(P("/hook"), BusiAnswer::Success());  // the receiver is fixed
  HttpResult resent = Post("notifications/" + id + "/resend", {{"reason", "receiver fixed"}});
  ASSERT_EQ(resent.status, 200) << resent.body;
  EXPECT_EQ(Str(Parse(resent), "status_before"), "failed");
  EXPECT_EQ(Str(Parse(resent), "status_after"), "pending");
  ASSERT_TRUE(
      WaitFor([&] { return NotifyStatus(*server_, id) == "delivered"; }, milliseconds(5000)));
  json::value after = Parse(Get("notifications/" + id));
  EXPECT_EQ(after.at("notification").at("attempts").as_array().size(), 2u);
  const json::array& audit = after.at("audit").as_array();
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(Str(audit[0], "action"), "resend");
  EXPECT_EQ(Str(audit[0], "who"), "alice");
  EXPECT_EQ(Str(audit[0], "reason"), "receiver fixed");
  EXPECT_EQ(Str(audit[0], "status_before"), "failed");

  // A pending notification (its first attempt an hour away) cannot be resent: 409.
  const std::string parked = CreateNotification(*server_, Gid(), U("/hook"), "[3600]");
  HttpResult busy = Post("notifications/" + parked + "/resend", {{"reason", "too early"}});
  EXPECT_EQ(busy.status, 409) << busy.body;
  EXPECT_TRUE(Lists(Parse(Get("notifications?status=pending&limit=500")), parked));
  EXPECT_TRUE(Parse(Get("notifications/" + parked)).at("audit").as_array().empty());
}

TEST_F(AdminE2E, CliNotifyListShowResend) {
  busi_->SetDefault(P("/hook"), BusiAnswer::Error());
  const std::string id = CreateNotification(*server_, Gid(), U("/hook"), "[0]");
  ASSERT_TRUE(WaitFor([&] { return NotifyStatus(*server_, id) == "failed"; }, milliseconds(5000)));
  const std::string common = " --server " + server_->Base() + " --token " + kAlice;

  CliResult list = RunDtxCommand("notify list --status failed --limit 500" + common);
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("ATTEMPTS"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find(id), std::string::npos) << list.out;
  CliResult js = RunDtxCommand("notify list --json --status failed --limit 500" + common);
  ASSERT_EQ(js.exit_code, 0) << js.err;
  boost::system::error_code ec;
  json::value v = json::parse(js.out, ec);
  ASSERT_FALSE(ec) << js.out;
  EXPECT_TRUE(Lists(v, id));

  CliResult show = RunDtxCommand("notify show " + id + common);
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find("failed"), std::string::npos) << show.out;
  EXPECT_EQ(show.out.find(", next"), std::string::npos) << "nothing scheduled: " << show.out;
  EXPECT_NE(show.out.find("500"), std::string::npos) << show.out;  // the attempt's answer
  EXPECT_EQ(show.out.find("MfKQ9r8G"), std::string::npos) << show.out;
  EXPECT_EQ(RunDtxCommand("notify show nope" + common).exit_code, 1);

  EXPECT_NE(RunDtxCommand("notify resend " + id + common).exit_code,
            0);  // no --reason: usage error
  busi_->SetDefault(P("/hook"), BusiAnswer::Success());
  CliResult resend = RunDtxCommand("notify resend " + id + " --reason 'receiver back'" + common);
  ASSERT_EQ(resend.exit_code, 0) << resend.err;
  EXPECT_NE(resend.out.find("failed -> pending"), std::string::npos) << resend.out;
  ASSERT_TRUE(
      WaitFor([&] { return NotifyStatus(*server_, id) == "delivered"; }, milliseconds(5000)));
  // Resending a pending one is refused by the server: exit 1 with the reason.
  const std::string parked = CreateNotification(*server_, Gid(), U("/hook"), "[3600]");
  CliResult refused = RunDtxCommand("notify resend " + parked + " --reason early" + common);
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("409"), std::string::npos) << refused.err;
}

}  // namespace
}  // namespace dtx::testing
