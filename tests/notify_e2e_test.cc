// End-to-end tests of best-effort notifications (docs/notifications.md, issue 11) against the real
// `dtx server` binary and a scriptable receiver (an HTTP server in the test process). Runs on
// SQLite, and on PostgreSQL as notify_e2e_test_pg (DTX_E2E_STORE=postgres).
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sqlite3.h>

#include <mutex>
#include <thread>

#include "dtx/notify.h"
#include "dtx/participant.h"
#include "tests/support/harness.h"

namespace dtx::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;

constexpr int64_t kCronToleranceMs = 700;  // --cron-interval 0.1 plus a loaded machine's slack

class NotifyE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(TempDir("notify"));
    const std::string store = E2EStore(*dir_);
    if (store.empty()) GTEST_SKIP() << "DTX_E2E_STORE=postgres needs DTX_TEST_PG_URL";
    busi_ = new Busi();
    busi_->SetDefault("/alert", BusiAnswer{200, "ok", 0});
    server_ =
        new ServerProcess(store, {"--retry-interval", "0.3", "--cron-interval", "0.1",
                                  "--request-timeout", "2", "--timeout-to-fail", "1",
                                  "--alert-webhook", busi_->Url("/alert"), "--log-level", "warn"});
    ASSERT_TRUE(server_->Start());
  }
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
  std::string Id() { return Name() + "-" + std::to_string(counter_++); }
  std::string P(const std::string& path) { return "/" + Name() + path; }
  std::string U(const std::string& path) { return busi_->Url(P(path)); }
  static std::string Notify(const std::string& rest = {}) {
    return server_->Base() + "/api/dtx/notify" + rest;
  }
  static HttpResult Create(const json::object& body, const std::string& rest = {}) {
    return HttpFetch("POST", Notify(rest), json::serialize(body));
  }
  static json::object Get(const std::string& id) {
    HttpResult r = HttpFetch("GET", Notify("/" + id));
    EXPECT_EQ(r.status, 200) << r.body;
    if (r.status != 200) return {};
    return json::parse(r.body).as_object();
  }
  static json::object WaitNotify(const std::string& id, const std::string& status,
                                 milliseconds timeout = milliseconds(15000)) {
    json::object o;
    WaitFor(
        [&] {
          o = Get(id);
          return o.contains("status") && o["status"].as_string() == status;
        },
        timeout);
    EXPECT_EQ(json::value_to<std::string>(o["status"]), status) << json::serialize(o);
    return o;
  }
  static std::vector<int64_t> AttemptTimes(const json::object& o) {
    std::vector<int64_t> out;
    for (const auto& a : o.at("attempts").as_array()) out.push_back(a.at("time_ms").as_int64());
    return out;
  }

  static std::string* dir_;
  static ServerProcess* server_;
  static Busi* busi_;
  static int counter_;
};
std::string* NotifyE2E::dir_ = nullptr;
ServerProcess* NotifyE2E::server_ = nullptr;
Busi* NotifyE2E::busi_ = nullptr;
int NotifyE2E::counter_ = 0;

TEST_F(NotifyE2E, DeliveredOnTheFirstAttemptWithPayloadAndHeaders) {
  const std::string id = Id();
  auto r = Create({{"id", id},
                   {"url", U("/cb")},
                   {"payload", R"({"order":"A1","amount":30})"},
                   {"headers", {{"X-Merchant", "m-7"}}},
                   {"schedule", json::array{0, 1}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body), json::parse(R"({"id":")" + id + R"(","status":"pending"})"));
  json::object o = WaitNotify(id, "delivered");
  ASSERT_EQ(o["attempts"].as_array().size(), 1u);
  const json::object& a = o["attempts"].as_array()[0].as_object();
  EXPECT_EQ(a.at("n").as_int64(), 1);
  EXPECT_EQ(a.at("http_status").as_int64(), 200);
  EXPECT_GE(a.at("latency_ms").as_int64(), 0);
  EXPECT_EQ(a.at("error").as_string(), "");
  EXPECT_TRUE(o["next_attempt_time"].is_null());
  auto calls = busi_->Calls(P("/cb"));
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].method, "POST");
  EXPECT_EQ(calls[0].body, R"({"order":"A1","amount":30})");
  EXPECT_EQ(calls[0].headers["x-merchant"], "m-7");
  EXPECT_EQ(calls[0].headers.count("webhook-signature"), 0u);  // no secret, no signature
}

TEST_F(NotifyE2E, FailsTwiceThenSucceedsOnTheSchedule) {
  const std::string id = Id();
  busi_->Script(P("/cb"), {BusiAnswer{500, "down", 0}, BusiAnswer{503, "still down", 0}});
  busi_->SetDefault(P("/cb"), BusiAnswer{204, "", 0});
  ASSERT_EQ(Create({{"id", id},
                    {"url", U("/cb")},
                    {"payload", "p"},
                    {"schedule", json::array{0, 0.4, 0.8, 5}}})
                .status,
            200);
  json::object o = WaitNotify(id, "delivered");
  std::vector<int64_t> t = AttemptTimes(o);
  ASSERT_EQ(t.size(), 3u);
  const auto& log = o["attempts"].as_array();
  EXPECT_EQ(log[0].at("http_status").as_int64(), 500);
  EXPECT_EQ(log[0].at("response").as_string(), "down");
  EXPECT_EQ(log[1].at("http_status").as_int64(), 503);
  EXPECT_EQ(log[2].at("http_status").as_int64(), 204);
  // Each wait is counted from the end of the previous attempt: never early, late by at most the
  // cron tolerance.
  EXPECT_GE(t[1] - t[0], 400);
  EXPECT_LE(t[1] - t[0], 400 + kCronToleranceMs);
  EXPECT_GE(t[2] - t[1], 800);
  EXPECT_LE(t[2] - t[1], 800 + kCronToleranceMs);
  EXPECT_EQ(busi_->CallCount(P("/cb")), 3u);
}

TEST_F(NotifyE2E, BodyRuleNeedsTheExactSuccessBody) {
  const std::string id = Id();
  busi_->Script(P("/cb"), {BusiAnswer{200, "fail", 0}, BusiAnswer{200, "SUCCESS", 0}});
  busi_->SetDefault(P("/cb"), BusiAnswer{200, " success\n", 0});
  ASSERT_EQ(Create({{"id", id},
                    {"url", U("/cb")},
                    {"schedule", json::array{0, 0.2, 0.2, 0.2}},
                    {"success", {{"body", "success"}}}})
                .status,
            200);
  json::object o = WaitNotify(id, "delivered");
  EXPECT_EQ(o["attempts"].as_array().size(), 3u);
}

TEST_F(NotifyE2E, JsonRuleNeedsTheTopLevelField) {
  const std::string id = Id();
  busi_->Script(P("/cb"), {BusiAnswer{200, R"({"code":"FAIL"})", 0}});
  busi_->SetDefault(P("/cb"), BusiAnswer{200, R"({"code":"SUCCESS","message":"OK"})", 0});
  ASSERT_EQ(Create({{"id", id},
                    {"url", U("/cb")},
                    {"schedule", json::array{0, 0.2, 0.2}},
                    {"success", {{"json", "code"}, {"equals", "SUCCESS"}}}})
                .status,
            200);
  json::object o = WaitNotify(id, "delivered");
  EXPECT_EQ(o["attempts"].as_array().size(), 2u);
}

TEST_F(NotifyE2E, RefusedConnectionAndTimeoutAreFailedAttempts) {
  const std::string id = Id();
  busi_->Script(P("/cb"), {BusiAnswer{200, "late", 1500}});  // beyond the 0.5 s timeout
  ASSERT_EQ(
      Create({{"id", id}, {"url", "http://127.0.0.1:1/refused"}, {"schedule", json::array{0}}})
          .status,
      200);
  json::object o = WaitNotify(id, "failed");
  EXPECT_EQ(o["attempts"].as_array()[0].at("http_status").as_int64(), 0);
  EXPECT_NE(o["attempts"].as_array()[0].at("error").as_string(), "");
  const std::string id2 = Id();
  ASSERT_EQ(
      Create({{"id", id2}, {"url", U("/cb")}, {"schedule", json::array{0, 0.2}}, {"timeout", 0.5}})
          .status,
      200);
  o = WaitNotify(id2, "delivered");
  const auto& log = o["attempts"].as_array();
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].at("http_status").as_int64(), 0);  // timed out
  EXPECT_LE(log[0].at("latency_ms").as_int64(), 1400);
}

TEST_F(NotifyE2E, ExhaustedScheduleFailsAlertsAndResendDeliversKeepingTheLog) {
  const std::string id = Id();
  busi_->SetDefault(P("/cb"), BusiAnswer{500, "no", 0});
  ASSERT_EQ(Create({{"id", id}, {"url", U("/cb")}, {"schedule", json::array{0, 0.2, 0.2}}}).status,
            200);
  json::object o = WaitNotify(id, "failed");
  EXPECT_EQ(o["attempts"].as_array().size(), 3u);
  EXPECT_EQ(o["attempt_count"].as_int64(), 3);
  // The alert webhook got kind notify_failed for this id.
  bool alerted = WaitFor(
      [&] {
        for (const BusiCall& c : busi_->Calls("/alert")) {
          json::value v = json::parse(c.body);
          if (v.at("kind") == "notify_failed" && v.at("gid") == id.c_str()) {
            EXPECT_EQ(v.at("retry_count").as_int64(), 3);
            return true;
          }
        }
        return false;
      },
      milliseconds(5000));
  EXPECT_TRUE(alerted);
  EXPECT_EQ(busi_->CallCount(P("/cb")), 3u);  // nothing after giving up
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_EQ(busi_->CallCount(P("/cb")), 3u);

  busi_->SetDefault(P("/cb"), BusiAnswer{200, "ok", 0});
  auto r = HttpFetch("POST", Notify("/" + id + "/resend"));
  ASSERT_EQ(r.status, 200) << r.body;
  o = WaitNotify(id, "delivered");
  const auto& log = o["attempts"].as_array();
  ASSERT_EQ(log.size(), 4u);  // the earlier attempts stay
  EXPECT_EQ(log[3].at("n").as_int64(), 4);
  EXPECT_EQ(log[3].at("http_status").as_int64(), 200);
  // A delivered one can be resent too; a pending one cannot.
  busi_->SetDefault(P("/cb"), BusiAnswer{500, "no", 0});
  const std::string id2 = Id();
  ASSERT_EQ(Create({{"id", id2}, {"url", U("/cb")}, {"schedule", json::array{5}}}).status, 200);
  EXPECT_EQ(HttpFetch("POST", Notify("/" + id2 + "/resend")).status, 409);
  EXPECT_EQ(HttpFetch("POST", Notify("/nope-" + id2 + "/resend")).status, 404);
  HttpResult get = HttpFetch("GET", Notify("/" + id2 + "/resend"));
  EXPECT_EQ(get.status, 405);
  EXPECT_EQ(get.Header("Allow"), "POST");  // RFC 9110 §15.5.6
  EXPECT_EQ(HttpFetch("PUT", Notify("")).Header("Allow"), "GET, POST");
}

TEST_F(NotifyE2E, CreateIsIdempotentByIdAndADifferentBodyConflicts) {
  const std::string id = Id();
  json::object body{
      {"id", id}, {"url", U("/cb")}, {"payload", "same"}, {"schedule", json::array{0}}};
  ASSERT_EQ(Create(body).status, 200);
  WaitNotify(id, "delivered");
  auto again = Create(body);
  EXPECT_EQ(again.status, 200) << again.body;
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(busi_->CallCount(P("/cb")), 1u);  // created nothing, sent nothing
  body["payload"] = "different";
  EXPECT_EQ(Create(body).status, 409);
  // Any other difference (here the schedule) conflicts too.
  EXPECT_EQ(
      Create({{"id", id}, {"url", U("/cb")}, {"payload", "same"}, {"schedule", json::array{0, 1}}})
          .status,
      409);
}

TEST_F(NotifyE2E, BadInputIsRefusedAndNothingIsStored) {
  const std::string url = U("/cb");
  const std::string big(1024 * 1024 + 1, 'x');
  struct Case {
    json::object body;
    int status;
  };
  int n = 0;
  auto id = [&] { return Name() + "-bad-" + std::to_string(n++); };
  std::vector<Case> cases = {
      {{{"url", url}}, 400},                                 // no id
      {{{"id", ""}, {"url", url}}, 400},                     // empty id
      {{{"id", std::string(129, 'i')}, {"url", url}}, 400},  // id too long
      {{{"id", id()}}, 400},                                 // no url
      {{{"id", id()}, {"url", "ftp://x/y"}}, 400},           // not http
      {{{"id", id()}, {"url", url}, {"schedule", json::array{}}}, 400},
      {{{"id", id()}, {"url", url}, {"schedule", json::array{0, -1}}}, 400},
      {{{"id", id()}, {"url", url}, {"schedule", json::array(101, 1)}}, 400},
      {{{"id", id()}, {"url", url}, {"schedule", "paypal"}}, 400},
      {{{"id", id()}, {"url", url}, {"schedule", json::array{"1"}}}, 400},
      {{{"id", id()}, {"url", url}, {"success", {{"status", "200"}}}}, 400},
      {{{"id", id()}, {"url", url}, {"success", {{"regex", ".*"}}}}, 400},
      {{{"id", id()}, {"url", url}, {"secret", "abc"}}, 400},
      {{{"id", id()}, {"url", url}, {"secret", "whsec_!!notbase64"}}, 400},
      {{{"id", id()}, {"url", url}, {"timeout", 0}}, 400},
      {{{"id", id()}, {"url", url}, {"headers", {{"webhook-id", "x"}}}}, 400},
      {{{"id", id()}, {"url", url}, {"payload", 7}}, 400},
      {{{"id", id()}, {"url", url}, {"extra", 1}}, 400},
      {{{"id", id()}, {"url", url}, {"payload", big}}, 413},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    auto r = Create(cases[i].body);
    EXPECT_EQ(r.status, cases[i].status) << i << ": " << r.body;
    if (cases[i].body.contains("id") && !cases[i].body["id"].as_string().empty() &&
        cases[i].body["id"].as_string().size() <= 128) {
      const std::string cid(cases[i].body["id"].as_string());
      EXPECT_EQ(HttpFetch("GET", Notify("/" + cid)).status, 404) << i;
    }
  }
  EXPECT_EQ(HttpFetch("POST", Notify(), "not json").status, 400);
  EXPECT_EQ(HttpFetch("POST", Notify("/submit"), R"({"id":"unknown-x"})").status, 404);
  EXPECT_EQ(HttpFetch("POST", Notify("/abort"), R"({"id":"unknown-x"})").status, 404);
  EXPECT_EQ(HttpFetch("POST", Notify("/submit"), R"({})").status, 400);
  EXPECT_EQ(HttpFetch("GET", Notify("/unknown-x")).status, 404);
  EXPECT_EQ(HttpFetch("GET", Notify("?status=lost")).status, 400);
  EXPECT_EQ(busi_->CallCount(P("/cb")), 0u);
}

TEST_F(NotifyE2E, TwoPhaseSubmitAbortAndCheckBack) {
  // prepare, then submit: delivered.
  const std::string a = Id();
  json::object body{{"id", a},
                    {"url", U("/cb")},
                    {"schedule", json::array{0}},
                    {"query_prepared", U("/query")},
                    {"timeout_to_fail", 60}};
  auto r = Create(body, "/prepare");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Get(a)["status"].as_string(), "prepared");
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(busi_->CallCount(P("/cb")), 0u);
  ASSERT_EQ(HttpFetch("POST", Notify("/submit"), json::serialize(json::object{{"id", a}})).status,
            200);
  WaitNotify(a, "delivered");
  EXPECT_EQ(HttpFetch("POST", Notify("/abort"), json::serialize(json::object{{"id", a}})).status,
            409);
  // prepare, then abort: never sent; submit is refused.
  const std::string b = Id();
  body["id"] = b;
  ASSERT_EQ(Create(body, "/prepare").status, 200);
  ASSERT_EQ(HttpFetch("POST", Notify("/abort"), json::serialize(json::object{{"id", b}})).status,
            200);
  EXPECT_EQ(Get(b)["status"].as_string(), "aborted");
  EXPECT_EQ(HttpFetch("POST", Notify("/submit"), json::serialize(json::object{{"id", b}})).status,
            409);
  EXPECT_EQ(HttpFetch("POST", Notify("/" + b + "/resend")).status, 409);
  // Neither: checked back after timeout_to_fail (1 s). SUCCESS -> delivered; FAILURE -> aborted.
  const std::string c = Id();
  busi_->SetDefault(P("/query"), BusiAnswer{200, R"({"dtm_result":"SUCCESS"})", 0});
  json::object cb{{"id", c},
                  {"url", U("/cb")},
                  {"schedule", json::array{0}},
                  {"query_prepared", U("/query")},
                  {"timeout_to_fail", 1}};
  ASSERT_EQ(Create(cb, "/prepare").status, 200);
  WaitNotify(c, "delivered");
  auto q = busi_->CallsFor(c);
  ASSERT_FALSE(q.empty());
  EXPECT_EQ(q[0].query["trans_type"], "notify");
  const std::string d = Id();
  busi_->SetDefault(P("/query2"), BusiAnswer{409, R"({"dtm_result":"FAILURE"})", 0});
  cb["id"] = d;
  cb["query_prepared"] = U("/query2");
  ASSERT_EQ(Create(cb, "/prepare").status, 200);
  WaitNotify(d, "aborted");
  EXPECT_EQ(busi_->CallCount(P("/cb")), 2u);  // a and c only
}

// Standard Webhooks: base64(HMAC-SHA256(key, id.timestamp.body)), key = base64 after whsec_.
std::string ExpectedSignature(const std::string& key, const std::string& signed_text) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(signed_text.data()), signed_text.size(), mac, &len);
  std::string out(4 * ((len + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), mac, static_cast<int>(len));
  out.resize(static_cast<size_t>(n));
  return "v1," + out;
}

TEST_F(NotifyE2E, SignedWithStandardWebhooksAndTheSecretIsNeverReturned) {
  const std::string id = Id();
  // whsec_ + base64("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") (the Standard Webhooks test key form).
  const std::string key = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  const std::string secret = "whsec_TWZLUTlyOEdLWXFyVHdqVVBEOElMUFpJbzJMYUxhU3c=";
  const std::string payload = R"({"trade_no":"T1"})";
  ASSERT_EQ(Create({{"id", id},
                    {"url", U("/cb")},
                    {"payload", payload},
                    {"schedule", json::array{0}},
                    {"secret", secret}})
                .status,
            200);
  json::object o = WaitNotify(id, "delivered");
  EXPECT_TRUE(o["signed"].as_bool());
  auto calls = busi_->Calls(P("/cb"));
  ASSERT_EQ(calls.size(), 1u);
  auto& h = calls[0].headers;
  EXPECT_EQ(h["webhook-id"], id);
  const int64_t ts = std::stoll(h["webhook-timestamp"]);
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  EXPECT_LE(std::llabs(now - ts), 5);
  EXPECT_EQ(h["webhook-signature"],
            ExpectedSignature(key, id + "." + h["webhook-timestamp"] + "." + payload));
  EXPECT_NE(h["webhook-signature"],
            ExpectedSignature("another key", id + "." + h["webhook-timestamp"] + "." + payload));
  // No read API returns the secret: ours, DTM's query and all.
  for (const std::string& url : {Notify("/" + id), server_->Api("query") + "?gid=" + id,
                                 server_->Api("all") + "?transType=notify", Notify()}) {
    HttpResult r = HttpFetch("GET", url);
    EXPECT_EQ(r.status, 200) << url;
    EXPECT_EQ(r.body.find("TWZLUTlyOEdL"), std::string::npos) << url << ": " << r.body;
  }
  // A DTM client cannot create or submit a notify transaction through the DTM routes.
  EXPECT_EQ(
      HttpFetch("POST", server_->Api("submit"), R"({"gid":"dtm-notify","trans_type":"notify"})")
          .status,
      400);
}

TEST_F(NotifyE2E, ListFiltersByStatusAndPages) {
  busi_->SetDefault(P("/cb"), BusiAnswer{500, "no", 0});
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(Id());
    ASSERT_EQ(Create({{"id", ids.back()}, {"url", U("/cb")}, {"schedule", json::array{0}}}).status,
              200);
  }
  for (const auto& id : ids) WaitNotify(id, "failed");
  std::set<std::string> seen;
  std::string position;
  for (int page = 0; page < 100; ++page) {
    std::string q = "?status=failed&limit=2" + (position.empty() ? "" : "&position=" + position);
    HttpResult r = HttpFetch("GET", Notify(q));
    ASSERT_EQ(r.status, 200) << r.body;
    json::object o = json::parse(r.body).as_object();
    for (const auto& n : o["notifications"].as_array()) {
      EXPECT_EQ(n.at("status").as_string(), "failed");
      seen.insert(std::string(n.at("id").as_string()));
    }
    position = std::string(o["position"].as_string());
    if (position.empty()) break;
  }
  for (const auto& id : ids) EXPECT_TRUE(seen.contains(id)) << id;
  HttpResult pending = HttpFetch("GET", Notify("?status=pending"));
  ASSERT_EQ(pending.status, 200);
  for (const auto& id : ids) EXPECT_EQ(pending.body.find("\"" + id + "\""), std::string::npos);
}

// ---------------------------------------------------------------------------------------------------
// The SDK: dtx::Notification sends, dtx::VerifyWebhook checks what the receiver got, and the
// two-phase DoAndSubmit on the SQLite barrier with dtx::QueryPrepared as the check-back endpoint.

std::vector<std::pair<std::string, std::string>> HeaderList(const BusiCall& c) {
  return {c.headers.begin(), c.headers.end()};
}

TEST_F(NotifyE2E, SdkSendsAndTheReceiverVerifiesTheSignature) {
  dtx::Client client(server_->Api(""));
  const std::string secret = "whsec_TWZLUTlyOEdLWXFyVHdqVVBEOElMUFpJbzJMYUxhU3c=";
  dtx::Notification n(client, Id(), U("/cb"));
  n.SetPayload(R"({"trade_no":"T9"})").SetSchedule(std::vector<double>{0}).SetSecret(secret);
  ASSERT_TRUE(n.Send().ok());
  ASSERT_TRUE(n.Send().ok());  // idempotent repeat
  WaitNotify(n.id(), "delivered");
  auto calls = busi_->Calls(P("/cb"));
  ASSERT_EQ(calls.size(), 1u);
  dtx::WebhookReplayGuard seen;
  EXPECT_TRUE(dtx::VerifyWebhook(secret, HeaderList(calls[0]), calls[0].body,
                                 std::chrono::minutes(5), &seen)
                  .ok());
  // The same delivery again is a replay; another secret or a changed body is rejected.
  EXPECT_EQ(dtx::VerifyWebhook(secret, HeaderList(calls[0]), calls[0].body, std::chrono::minutes(5),
                               &seen)
                .code(),
            dtx::Code::kAlreadyExists);
  EXPECT_FALSE(
      dtx::VerifyWebhook("whsec_YW5vdGhlciBrZXk=", HeaderList(calls[0]), calls[0].body).ok());
  EXPECT_FALSE(dtx::VerifyWebhook(secret, HeaderList(calls[0]), calls[0].body + " ").ok());
  // A different body under the same id: 409 through the SDK.
  n.SetPayload("other");
  EXPECT_EQ(n.Send().code(), dtx::Code::kConflict);
}

class Gateway {
 public:
  explicit Gateway(const std::string& dir) {
    EXPECT_EQ(sqlite3_open((dir + "/gw.db").c_str(), &db_), SQLITE_OK);
    dtx::SqliteDb adapter(db_);
    EXPECT_TRUE(dtx::EnsureBarrierTable(adapter).ok());
    EXPECT_EQ(sqlite3_exec(db_, "CREATE TABLE pay(id TEXT PRIMARY KEY)", nullptr, nullptr, nullptr),
              SQLITE_OK);
    server_.Handle("GET", "/queryPrepared", [this](const dtx::BranchRequest& r) {
      std::lock_guard lock(mu_);
      dtx::SqliteDb adapter(db_);
      return dtx::QueryPrepared(r, adapter);
    });
    EXPECT_TRUE(server_.Start().ok());
  }
  ~Gateway() {
    server_.Stop();
    sqlite3_close(db_);
  }
  std::string QueryUrl() const {
    return "http://127.0.0.1:" + std::to_string(server_.port()) + "/queryPrepared";
  }
  sqlite3* db() { return db_; }
  std::mutex& mu() { return mu_; }

 private:
  sqlite3* db_ = nullptr;
  std::mutex mu_;
  dtx::ParticipantServer server_;
};

dtx::Status InsertPay(sqlite3* db, const std::string& id) {
  const std::string sql = "INSERT INTO pay VALUES('" + id + "')";
  return sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK
             ? dtx::Status::Ok()
             : dtx::Status::Internal(sqlite3_errmsg(db));
}

TEST_F(NotifyE2E, SdkDoAndSubmitCommitsOrAbortsWithTheLocalTransaction) {
  Gateway gw(TempDir("notify-gw"));
  dtx::Client client(server_->Api(""));
  dtx::SqliteDb db(gw.db());
  // Committed: delivered.
  dtx::Notification ok(client, Id(), U("/cb"));
  ok.SetSchedule(std::vector<double>{0});
  dtx::Status s;
  {
    std::lock_guard lock(gw.mu());
    s = ok.DoAndSubmit(gw.QueryUrl(), db,
                       [&](dtx::SqliteTx&) { return InsertPay(gw.db(), ok.id()); });
  }
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(ok.local_outcome(), dtx::LocalOutcome::kCommitted);
  WaitNotify(ok.id(), "delivered");
  // A business refusal: rolled back and aborted, never sent.
  dtx::Notification refused(client, Id(), U("/cb"));
  refused.SetSchedule(std::vector<double>{0});
  {
    std::lock_guard lock(gw.mu());
    s = refused.DoAndSubmit(gw.QueryUrl(), db,
                            [](dtx::SqliteTx&) { return dtx::Status::Conflict("no funds"); });
  }
  EXPECT_EQ(s.code(), dtx::Code::kConflict);
  EXPECT_EQ(refused.local_outcome(), dtx::LocalOutcome::kRolledBack);
  EXPECT_EQ(Get(refused.id())["status"].as_string(), "aborted");
  EXPECT_EQ(busi_->CallCount(P("/cb")), 1u);
}

TEST_F(NotifyE2E, SdkCheckBackDecidesWhenTheSenderWentSilent) {
  Gateway gw(TempDir("notify-gw2"));
  dtx::Client client(server_->Api(""));
  dtx::SqliteDb db(gw.db());
  // The local transaction committed, then the sender "died" before submit (no submit is sent):
  // the check-back after timeout_to_fail (1 s) finds the barrier row and the notification goes.
  dtx::Notification committed(client, Id(), U("/cb"));
  committed.SetSchedule(std::vector<double>{0}).SetTimeoutToFail(1);
  ASSERT_TRUE(committed.Prepare(gw.QueryUrl()).ok());
  {
    std::lock_guard lock(gw.mu());
    auto barrier = dtx::BranchBarrier::Create("notify", committed.id(), "00", "msg");
    ASSERT_TRUE(barrier.ok());
    ASSERT_TRUE(barrier->Call(db, [&] { return InsertPay(gw.db(), committed.id()); }).ok());
  }
  // The local transaction never ran: the check-back plants "rollback" and it is aborted.
  dtx::Notification lost(client, Id(), U("/cb"));
  lost.SetSchedule(std::vector<double>{0}).SetTimeoutToFail(1);
  ASSERT_TRUE(lost.Prepare(gw.QueryUrl()).ok());
  WaitNotify(committed.id(), "delivered");
  WaitNotify(lost.id(), "aborted");
  EXPECT_EQ(busi_->CallCount(P("/cb")), 1u);
  // A late local transaction of the aborted one is refused by the barrier (DUPLICATED).
  std::lock_guard lock(gw.mu());
  auto late = dtx::BranchBarrier::Create("notify", lost.id(), "00", "msg");
  ASSERT_TRUE(late.ok());
  EXPECT_FALSE(late->Call(db, [&] { return InsertPay(gw.db(), lost.id()); }).ok());
}

}  // namespace
}  // namespace dtx::testing
