// End-to-end tests of the network hardening of issue 13 (item 6) with the real `dtx server`:
// TLS on the API listener, https participants verified against --ca-file (with it the saga
// succeeds; without it the branch call fails with the certificate error in last_error and the
// transaction keeps retrying), the server refusing to start on bad certificate/key/CA/token files,
// --admin-listen (admin API and console on their own listener, 404 on the main one; TLS on both),
// --api-token (401 without the bearer token on the DTM routes) and the SSRF guard
// --branch-url-allow (400 before anything is stored; link-local always refused; a name that
// resolves to a non-public address refused at call time).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "http/test_certs.h"
#include "http/tls.h"
#include "tests/support/harness.h"

namespace dtx::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;

const http::testing::TestCerts& Certs() {
  static const http::testing::TestCerts certs = [] {
    return http::testing::MakeTestCerts(TempDir("net-certs"));
  }();
  return certs;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The last_error texts of every branch, joined; and the branches' attempts, summed.
std::string LastErrors(const TransView& v) {
  std::string out;
  if (!v.raw.is_object()) return out;
  for (const auto& b : v.raw.at("branches").get_array()) {
    const auto* e = b.get_object().if_contains("last_error");
    if (e && e->is_string()) out += std::string(e->get_string()) + "\n";
  }
  return out;
}
int64_t Attempts(const TransView& v) {
  int64_t n = 0;
  if (!v.raw.is_object()) return n;
  for (const auto& b : v.raw.at("branches").get_array()) {
    const auto* a = b.get_object().if_contains("attempts");
    if (a && a->is_int64()) n += a->as_int64();
  }
  return n;
}

// Starts a server that must refuse to start; returns its log.
std::string RefusedStart(const std::vector<std::string>& args) {
  const std::string dir = TempDir("net-refused");
  ServerProcess server(dir + "/dtx.db", args);
  EXPECT_FALSE(server.Start(std::chrono::seconds(10)));
  return ReadAll(server.log_path());
}

TEST(NetTls, ServerRefusesToStartOnBadFiles) {
  const auto& c = Certs();
  ASSERT_TRUE(c.ok);
  const std::string garbage = TempDir("net-garbage") + "/garbage.pem";
  std::ofstream(garbage) << "not PEM\n";

  EXPECT_NE(RefusedStart({"--tls-cert", "/nonexistent/cert.pem", "--tls-key", c.key})
                .find("--tls-cert '/nonexistent/cert.pem': cannot be read"),
            std::string::npos);
  EXPECT_NE(RefusedStart({"--tls-cert", garbage, "--tls-key", c.key})
                .find("not a usable PEM certificate"),
            std::string::npos);
  EXPECT_NE(RefusedStart({"--tls-cert", c.cert, "--tls-key", c.wrong_key}).find("mismatch"),
            std::string::npos);
  EXPECT_NE(RefusedStart({"--tls-cert", c.cert}).find("--tls-cert and --tls-key go together"),
            std::string::npos);
  EXPECT_NE(RefusedStart({"--ca-file", garbage}).find("--ca-file"), std::string::npos);
}

class NetTlsE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Certs().ok) << "openssl could not make the test certificates";
    dir_ = TempDir("net-tls");
    auto tls = http::MakeServerTlsContext(Certs().cert, Certs().key);
    ASSERT_TRUE(tls.ok()) << tls.status().ToString();
    busi_ = std::make_unique<Busi>(*tls);
    SetFetchCaFile(Certs().ca);
  }
  void TearDown() override { SetFetchCaFile(""); }

  std::string dir_;
  std::unique_ptr<Busi> busi_;
};

TEST_F(NetTlsE2E, HttpsApiAndHttpsParticipantWithTheRightCa) {
  const auto& c = Certs();
  ServerProcess server(dir_ + "/dtx.db", {"--tls-cert", c.cert, "--tls-key", c.key, "--ca-file",
                                          c.ca, "--log-level", "warn"});
  ASSERT_TRUE(server.Start());
  ASSERT_EQ(server.Base().rfind("https://", 0), 0u);
  // Plain HTTP to the TLS listener gets no answer.
  const std::string plain = "http://127.0.0.1:" + std::to_string(server.port()) + "/api/ping";
  EXPECT_NE(HttpFetch("GET", plain, {}, std::chrono::seconds(3)).status, 200);

  const std::string gid = "tls-ok-1";
  auto r = HttpFetch("POST", server.Api("submit"),
                     SagaBody(gid,
                              {{busi_->Url("/ok/a1"), busi_->Url("/ok/c1")},
                               {busi_->Url("/ok/a2"), busi_->Url("/ok/c2")}},
                              {"{}", "{}"}, {{"wait_result", true}}));
  ASSERT_EQ(r.status, 200) << r.body;
  auto v = WaitStatus(server, gid, {"succeed"});
  EXPECT_EQ(v.status, "succeed");
  EXPECT_EQ(busi_->CallCount("/ok/a1"), 1u);
  EXPECT_EQ(busi_->CallCount("/ok/a2"), 1u);

  // Many sagas: the coordinator's https connections to the participant are pooled, not one per
  // call (the participant accepts far fewer connections than it gets calls).
  for (int i = 0; i < 20; ++i) {
    const std::string g = "tls-many-" + std::to_string(i);
    ASSERT_EQ(HttpFetch("POST", server.Api("submit"),
                        SagaBody(g, {{busi_->Url("/many/a"), busi_->Url("/many/c")}}, {"{}"},
                                 {{"wait_result", true}}))
                  .status,
              200);
  }
  EXPECT_EQ(busi_->CallCount("/many/a"), 20u);
  EXPECT_LT(busi_->AcceptedConnections(), 12u);
  EXPECT_EQ(server.Terminate(), 0);
}

TEST_F(NetTlsE2E, WithoutTheCaTheBranchFailsWithACertificateErrorAndKeepsRetrying) {
  ServerProcess server(dir_ + "/dtx.db", {"--retry-interval", "0.2", "--cron-interval", "0.1",
                                          "--log-level", "warn"});
  ASSERT_TRUE(server.Start());
  const std::string gid = "tls-no-ca-1";
  auto r = HttpFetch("POST", server.Api("submit"),
                     SagaBody(gid, {{busi_->Url("/nca/a1"), busi_->Url("/nca/c1")}}, {"{}"}));
  ASSERT_EQ(r.status, 200) << r.body;
  std::string error;
  TransView v;
  ASSERT_TRUE(WaitFor(
      [&] {
        v = QueryTrans(server, gid);
        error = LastErrors(v);
        return error.find("certificate verify failed") != std::string::npos;
      },
      std::chrono::seconds(15)))
      << error;
  // Still being retried: not failed, not succeeded; the participant never saw a request.
  const int64_t attempts_before = Attempts(v);
  ASSERT_TRUE(WaitFor(
      [&] {
        v = QueryTrans(server, gid);
        return Attempts(v) > attempts_before;
      },
      std::chrono::seconds(15)));
  EXPECT_EQ(v.status, "submitted");
  EXPECT_EQ(busi_->CallCount("/nca/a1"), 0u);
  EXPECT_EQ(server.Terminate(), 0);
}

constexpr const char* kAdminToken = "alice-token-0123456789";
constexpr const char* kApiToken = "sdk-token-0123456789abcd";

http::HeaderList Bearer(const std::string& token) { return {{"Authorization", "Bearer " + token}}; }

TEST(NetAdminListen, AdminApiAndConsoleMoveToTheirOwnTlsListener) {
  const auto& c = Certs();
  ASSERT_TRUE(c.ok);
  SetFetchCaFile(c.ca);
  const std::string dir = TempDir("net-admin");
  ServerProcess server(dir + "/dtx.db", {"--admin-listen", "127.0.0.1:0", "--admin-token",
                                         std::string("alice=") + kAdminToken, "--tls-cert", c.cert,
                                         "--tls-key", c.key, "--log-level", "warn"});
  ASSERT_TRUE(server.Start());
  ASSERT_NE(server.admin_port(), 0);
  ASSERT_NE(server.admin_port(), server.port());
  const std::string main = server.Base();
  const std::string admin = server.AdminBase();
  ASSERT_EQ(admin.rfind("https://", 0), 0u);

  // The admin API and the console: on the admin listener only.
  auto who = HttpFetchWithHeaders("GET", admin + "/api/dtx/admin/whoami", "", Bearer(kAdminToken));
  EXPECT_EQ(who.status, 200) << who.body;
  EXPECT_NE(who.body.find("alice"), std::string::npos);
  EXPECT_EQ(HttpFetch("GET", admin + "/admin/").status, 200);
  auto hidden =
      HttpFetchWithHeaders("GET", main + "/api/dtx/admin/whoami", "", Bearer(kAdminToken));
  EXPECT_EQ(hidden.status, 404) << hidden.body;
  EXPECT_NE(hidden.body.find("--admin-listen"), std::string::npos);
  EXPECT_EQ(HttpFetch("GET", main + "/admin/").status, 404);
  // The DTM routes: on the main listener only; ping and metrics on both.
  EXPECT_EQ(HttpFetch("GET", main + "/api/dtmsvr/newGid").status, 200);
  EXPECT_EQ(HttpFetch("GET", admin + "/api/dtmsvr/newGid").status, 404);
  EXPECT_EQ(HttpFetch("POST", admin + "/api/dtmsvr/submit", "{}").status, 404);
  EXPECT_EQ(HttpFetch("GET", admin + "/api/ping").status, 200);
  EXPECT_EQ(HttpFetch("GET", admin + "/api/metrics").status, 200);
  SetFetchCaFile("");
  EXPECT_EQ(server.Terminate(), 0);
}

TEST(NetAdminListen, BadOrBusyAdminAddressRefusesToStart) {
  EXPECT_NE(RefusedStart({"--admin-listen", "nonsense"}).find("--admin-listen must be HOST:PORT"),
            std::string::npos);
  const std::string dir = TempDir("net-busy");
  ServerProcess first(dir + "/a.db");
  ASSERT_TRUE(first.Start());
  const std::string busy = "127.0.0.1:" + std::to_string(first.port());
  EXPECT_NE(RefusedStart({"--admin-listen", busy}).find("--admin-listen " + busy),
            std::string::npos);
  EXPECT_EQ(first.Terminate(), 0);
}

class NetApiToken : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(TempDir("net-token"));
    // One token on the command line, one through the environment.
    ::setenv("DTX_API_TOKEN", "env-sdk=env-token-0123456789abcd", 1);
    server_ = new ServerProcess(*dir_ + "/dtx.db",
                                {"--api-token", std::string("sdk=") + kApiToken, "--admin-token",
                                 std::string("alice=") + kAdminToken, "--log-level", "warn"});
    const bool started = server_->Start();
    ::unsetenv("DTX_API_TOKEN");
    ASSERT_TRUE(started);
    busi_ = new Busi();
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(server_->Terminate(), 0);
    delete busi_;
    delete server_;
    delete dir_;
  }
  static std::string* dir_;
  static ServerProcess* server_;
  static Busi* busi_;
};
std::string* NetApiToken::dir_ = nullptr;
ServerProcess* NetApiToken::server_ = nullptr;
Busi* NetApiToken::busi_ = nullptr;

TEST_F(NetApiToken, DtmRoutesNeedTheBearerToken) {
  auto none = HttpFetch("GET", server_->Api("newGid"));
  EXPECT_EQ(none.status, 401) << none.body;
  EXPECT_NE(none.body.find("--api-token"), std::string::npos);
  EXPECT_EQ(
      HttpFetchWithHeaders("GET", server_->Api("newGid"), "", Bearer("wrong-token-0123456789"))
          .status,
      401);
  EXPECT_EQ(HttpFetchWithHeaders("GET", server_->Api("newGid"), "",
                                 {{"Authorization", std::string("Basic ") + kApiToken}})
                .status,
            401);
  EXPECT_EQ(HttpFetchWithHeaders("GET", server_->Api("newGid"), "", Bearer(kApiToken)).status, 200);
  EXPECT_EQ(
      HttpFetchWithHeaders("GET", server_->Api("newGid"), "", Bearer("env-token-0123456789abcd"))
          .status,
      200);
  // /api/dtx/* (not admin) too; ping and metrics stay open.
  EXPECT_EQ(HttpFetch("GET", server_->Base() + "/api/dtx/sagas").status, 401);
  EXPECT_EQ(HttpFetch("GET", server_->Base() + "/api/ping").status, 200);
  EXPECT_EQ(HttpFetch("GET", server_->Base() + "/api/metrics").status, 200);
  // The admin API keeps its own tokens: the API token is not one of them.
  EXPECT_EQ(HttpFetchWithHeaders("GET", server_->Base() + "/api/dtx/admin/whoami", "",
                                 Bearer(kAdminToken))
                .status,
            200);
  EXPECT_EQ(
      HttpFetchWithHeaders("GET", server_->Base() + "/api/dtx/admin/whoami", "", Bearer(kApiToken))
          .status,
      401);
}

TEST_F(NetApiToken, ASagaRunsWithTheToken) {
  const std::string gid = "token-saga-1";
  const std::string body = SagaBody(gid, {{busi_->Url("/tok/a"), busi_->Url("/tok/c")}}, {"{}"},
                                    {{"wait_result", true}});
  EXPECT_EQ(HttpFetch("POST", server_->Api("submit"), body).status, 401);
  auto r = HttpFetchWithHeaders("POST", server_->Api("submit"), body, Bearer(kApiToken));
  ASSERT_EQ(r.status, 200) << r.body;
  auto q = HttpFetchWithHeaders("GET", server_->Api("query?gid=" + gid), "", Bearer(kApiToken));
  EXPECT_NE(q.body.find("\"succeed\""), std::string::npos) << q.body;
  // Nothing was stored by the refused submit of another gid.
  const std::string other = "token-saga-refused";
  EXPECT_EQ(HttpFetch("POST", server_->Api("submit"),
                      SagaBody(other, {{busi_->Url("/tok/a"), busi_->Url("/tok/c")}}, {"{}"}))
                .status,
            401);
  auto gone =
      HttpFetchWithHeaders("GET", server_->Api("query?gid=" + other), "", Bearer(kApiToken));
  EXPECT_NE(gone.body.find("\"transaction\":null"), std::string::npos) << gone.body;
}

TEST(NetApiTokenStart, UnreadableTokenFileOrShortTokenRefusesToStart) {
  EXPECT_NE(RefusedStart({"--api-token-file", "/nonexistent/tokens"}).find("--api-token-file"),
            std::string::npos);
  EXPECT_NE(RefusedStart({"--api-token", "sdk=short"}).find("--api-token"), std::string::npos);
}

class NetSsrf : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(TempDir("net-ssrf"));
    busi_ = new Busi();
    // The participant's address is allowed; "localhost" matches by name but resolves to a
    // non-public address that no CIDR admits (a rebinding name).
    server_ = new ServerProcess(
        *dir_ + "/dtx.db",
        {"--branch-url-allow", "127.0.0.1", "--branch-url-allow", "localhost", "--retry-interval",
         "0.2", "--cron-interval", "0.1", "--log-level", "warn"});
    ASSERT_TRUE(server_->Start());
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(server_->Terminate(), 0);
    delete server_;
    delete busi_;
    delete dir_;
  }
  static void ExpectRefused(const HttpResult& r, const std::string& what) {
    EXPECT_EQ(r.status, 400) << what << ": " << r.body;
    EXPECT_TRUE(r.body.find("--branch-url-allow") != std::string::npos ||
                r.body.find("link-local") != std::string::npos)
        << what << ": " << r.body;
  }
  static bool Stored(const std::string& gid) { return QueryTrans(*server_, gid).found; }

  static std::string* dir_;
  static ServerProcess* server_;
  static Busi* busi_;
};
std::string* NetSsrf::dir_ = nullptr;
ServerProcess* NetSsrf::server_ = nullptr;
Busi* NetSsrf::busi_ = nullptr;

TEST_F(NetSsrf, AllowedParticipantRuns) {
  const std::string gid = "ssrf-ok";
  auto r = HttpFetch(
      "POST", server_->Api("submit"),
      SagaBody(gid, {{busi_->Url("/s/a"), busi_->Url("/s/c")}}, {"{}"}, {{"wait_result", true}}));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(WaitStatus(*server_, gid, {"succeed"}).status, "succeed");
}

TEST_F(NetSsrf, OutsideUrlsAreRefusedBeforeAnythingIsStored) {
  // A saga step (action or compensation) outside the list.
  ExpectRefused(
      HttpFetch("POST", server_->Api("submit"),
                SagaBody("ssrf-saga", {{"http://10.1.2.3/a", busi_->Url("/s/c")}}, {"{}"})),
      "saga action");
  ExpectRefused(
      HttpFetch("POST", server_->Api("submit"),
                SagaBody("ssrf-saga2", {{busi_->Url("/s/a"), "http://example.com/c"}}, {"{}"})),
      "saga compensation");
  EXPECT_FALSE(Stored("ssrf-saga"));
  EXPECT_FALSE(Stored("ssrf-saga2"));
  // The metadata address.
  ExpectRefused(
      HttpFetch("POST", server_->Api("submit"),
                SagaBody("ssrf-meta", {{"http://169.254.169.254/latest/meta-data/", ""}}, {"{}"})),
      "metadata");
  EXPECT_FALSE(Stored("ssrf-meta"));
  // A msg's query_prepared.
  json::object msg{{"gid", "ssrf-msg"},
                   {"trans_type", "msg"},
                   {"steps", json::array{json::object{{"action", busi_->Url("/s/a")}}}},
                   {"payloads", json::array{"{}"}},
                   {"query_prepared", "http://10.0.0.1/qp"}};
  ExpectRefused(HttpFetch("POST", server_->Api("prepare"), json::serialize(msg)), "query_prepared");
  EXPECT_FALSE(Stored("ssrf-msg"));
  // registerBranch of a prepared tcc.
  json::object tcc{{"gid", "ssrf-tcc"}, {"trans_type", "tcc"}};
  ASSERT_EQ(HttpFetch("POST", server_->Api("prepare"), json::serialize(tcc)).status, 200);
  json::object reg{{"gid", "ssrf-tcc"},
                   {"trans_type", "tcc"},
                   {"branch_id", "01"},
                   {"confirm", "http://10.0.0.2/confirm"},
                   {"cancel", busi_->Url("/s/c")},
                   {"data", "{}"}};
  ExpectRefused(HttpFetch("POST", server_->Api("registerBranch"), json::serialize(reg)),
                "registerBranch");
  auto tv = QueryTrans(*server_, "ssrf-tcc");
  EXPECT_TRUE(tv.branch_status.empty());
  // A topic subscriber.
  ExpectRefused(
      HttpFetch("GET", server_->Api("subscribe?topic=t1&url=" +
                                    http::UrlEncode("http://10.0.0.3/sub") + "&remark=r")),
      "subscribe");
  // A notification's url.
  ExpectRefused(HttpFetch("POST", server_->Base() + "/api/dtx/notify",
                          R"({"id":"ssrf-notify","url":"http://10.0.0.4/cb","payload":"{}"})"),
                "notify");
  EXPECT_FALSE(Stored("ssrf-notify"));
}

// A saga definition (PUT /api/dtx/sagas/{name}) is held to the list at PUT: a step URL outside it
// is answered 400 naming the step and the URL, and nothing is stored.
TEST_F(NetSsrf, SagaDefinitionOutsideTheListIsRefusedAtPut) {
  const std::string sagas = server_->Base() + "/api/dtx/sagas/";
  auto def = [](const std::string& action, const std::string& compensate) {
    return json::serialize(json::object{
        {"steps", json::array{json::object{
                      {"name", "charge"}, {"action", action}, {"compensate", compensate}}}}});
  };
  auto bad =
      HttpFetch("PUT", sagas + "ssrf-def", def("http://10.1.2.3/charge", busi_->Url("/d/c")));
  ExpectRefused(bad, "definition action");
  EXPECT_NE(bad.body.find("step charge action url http://10.1.2.3/charge"), std::string::npos)
      << bad.body;
  auto comp = HttpFetch("PUT", sagas + "ssrf-def",
                        def(busi_->Url("/d/a"), "http://169.254.169.254/latest/meta-data/"));
  ExpectRefused(comp, "definition compensation");
  EXPECT_NE(comp.body.find("step charge compensate url http://169.254.169.254"), std::string::npos)
      << comp.body;
  EXPECT_EQ(HttpFetch("GET", sagas + "ssrf-def").status, 404);  // nothing stored
  // On the list: stored, and a submit by name runs it.
  ASSERT_EQ(
      HttpFetch("PUT", sagas + "ssrf-def", def(busi_->Url("/d/a"), busi_->Url("/d/c"))).status,
      200);
  auto sub = HttpFetch("POST", sagas + "ssrf-def/submit",
                       R"({"gid":"ssrf-def-1","payloads":{"charge":"{}"},"wait_result":true})");
  ASSERT_EQ(sub.status, 200) << sub.body;
  EXPECT_EQ(WaitStatus(*server_, "ssrf-def-1", {"succeed"}).status, "succeed");
}

// A definition stored before the list was narrowed is checked again at every submit by name: 400
// naming the URL, nothing stored (the list at the submit is what counts, as for a plain submit).
TEST(NetSsrfSagaDef, SubmitByNameIsCheckedAgainstTheListOfTheSubmit) {
  const std::string dir = TempDir("net-ssrf-def");
  const std::string def = json::serialize(json::object{
      {"services", json::object{{"pay", "http://10.77.0.1:8081/api"}}},
      {"steps", json::array{json::object{{"name", "charge"}, {"action", "{pay}/charge"}}}}});
  {
    ServerProcess open(dir + "/dtx.db", {"--log-level", "warn"});  // no list yet
    ASSERT_TRUE(open.Start());
    auto put = HttpFetch("PUT", open.Base() + "/api/dtx/sagas/pay", def);
    ASSERT_EQ(put.status, 200) << put.body;
    EXPECT_EQ(open.Terminate(), 0);
  }
  ServerProcess guarded(dir + "/dtx.db",
                        {"--branch-url-allow", "127.0.0.1", "--log-level", "warn"});
  ASSERT_TRUE(guarded.Start());
  auto sub = HttpFetch("POST", guarded.Base() + "/api/dtx/sagas/pay/submit",
                       R"({"gid":"ssrf-def-old","payloads":{"charge":"{}"}})");
  EXPECT_EQ(sub.status, 400) << sub.body;
  EXPECT_NE(sub.body.find("saga pay version 1: step charge action url "
                          "http://10.77.0.1:8081/api/charge"),
            std::string::npos)
      << sub.body;
  EXPECT_NE(sub.body.find("--branch-url-allow"), std::string::npos) << sub.body;
  EXPECT_FALSE(QueryTrans(guarded, "ssrf-def-old").found);
  EXPECT_EQ(guarded.Terminate(), 0);
}

TEST(NetSsrfRebind, NameResolvingToAnInternalAddressIsRefusedAtCallTime) {
  // "localhost" is on the list by name, but it resolves to a non-public address that no CIDR
  // admits: what a DNS-rebinding attacker's name would do.
  Busi busi;
  const std::string dir = TempDir("net-rebind");
  ServerProcess server(dir + "/dtx.db", {"--branch-url-allow", "localhost", "--retry-interval",
                                         "0.2", "--cron-interval", "0.1", "--log-level", "warn"});
  ASSERT_TRUE(server.Start());
  const std::string gid = "ssrf-rebind";
  const std::string url = "http://localhost:" + busi.Url("").substr(busi.Url("").rfind(':') + 1);
  auto r = HttpFetch("POST", server.Api("submit"),
                     SagaBody(gid, {{url + "/rb/a", url + "/rb/c"}}, {"{}"}));
  ASSERT_EQ(r.status, 200) << r.body;  // the name is on the list
  std::string error;
  ASSERT_TRUE(WaitFor(
      [&] {
        error = LastErrors(QueryTrans(server, gid));
        return error.find("non-public") != std::string::npos;
      },
      std::chrono::seconds(15)))
      << error << json::serialize(QueryTrans(server, gid).raw);
  EXPECT_EQ(busi.CallCount("/rb/a"), 0u);
  EXPECT_EQ(QueryTrans(server, gid).status, "submitted");
  // An IP address outside the list is refused at the request.
  EXPECT_EQ(HttpFetch("POST", server.Api("submit"),
                      SagaBody("ssrf-rebind-2", {{busi.Url("/rb/a"), ""}}, {"{}"}))
                .status,
            400);
  EXPECT_EQ(server.Terminate(), 0);
}

TEST(NetSsrfDefault, LinkLocalIsRefusedWithoutAnyPattern) {
  const std::string dir = TempDir("net-ssrf-default");
  ServerProcess server(dir + "/dtx.db", {"--log-level", "warn"});
  ASSERT_TRUE(server.Start());
  auto r = HttpFetch("POST", server.Api("submit"),
                     SagaBody("ll-1", {{"http://169.254.169.254/latest/meta-data/", ""}}, {"{}"}));
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("link-local"), std::string::npos) << r.body;
  auto v6 = HttpFetch("POST", server.Api("submit"),
                      SagaBody("ll-2", {{"http://[fe80::1]:8080/x", ""}}, {"{}"}));
  EXPECT_EQ(v6.status, 400) << v6.body;
  // Other addresses are not restricted without patterns.
  auto other = HttpFetch("POST", server.Api("submit"),
                         SagaBody("ll-3", {{"http://127.0.0.1:1/x", ""}}, {"{}"}));
  EXPECT_EQ(other.status, 200) << other.body;
  EXPECT_EQ(server.Terminate(), 0);
}

}  // namespace
}  // namespace dtx::testing
