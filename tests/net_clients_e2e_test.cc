// End-to-end tests of the clients of a hardened coordinator (issue 13), with the real
// `dtx server --tls-cert --tls-key --api-token --admin-token`:
//   libdtx's dtx::Client  ClientOptions::extra_headers (the API token) and ca_file: with the token
//                         and the right CA a saga and a notification go through; without the token
//                         the Status says 401 / UNAUTHENTICATED; with a wrong CA or none the
//                         certificate does not verify;
//   the dtx command line  --ca-file / DTX_CA_FILE: right CA ok, none or a wrong one exit 2 with the
//                         certificate error and a hint, an unreadable file exit 2 naming it.
// And participant redirects under the SSRF guard (--branch-url-allow): followed to an allowed
// host without the credentials of branch_headers, not followed to a host off the list (the call
// fails, the transaction retries, the call history says why).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "dtx/client.h"
#include "dtx/notify.h"
#include "dtx/saga.h"
#include "http/test_certs.h"
#include "tests/support/harness.h"

namespace dtx::testing {
namespace {

namespace json = boost::json;

constexpr const char* kAdminToken = "alice-token-0123456789";
constexpr const char* kApiToken = "sdk-token-0123456789abcd";

const http::testing::TestCerts& Certs() {
  static const http::testing::TestCerts certs = [] {
    return http::testing::MakeTestCerts(TempDir("net-clients-certs"));
  }();
  return certs;
}

http::HeaderList Bearer(const std::string& token) { return {{"Authorization", "Bearer " + token}}; }

// One HTTPS coordinator with API and admin tokens for the whole suite.
class TlsTokenServer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_TRUE(Certs().ok) << "openssl could not make the test certificates";
    dir_ = new std::string(TempDir("net-clients"));
    server_ = new ServerProcess(
        *dir_ + "/dtx.db",
        {"--tls-cert", Certs().cert, "--tls-key", Certs().key, "--api-token",
         std::string("sdk=") + kApiToken, "--admin-token", std::string("alice=") + kAdminToken,
         "--retry-interval", "0.2", "--cron-interval", "0.1", "--log-level", "info"});
    ASSERT_TRUE(server_->Start());
    busi_ = new Busi();
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(server_->Terminate(), 0);
    delete busi_;
    delete server_;
    delete dir_;
  }
  void SetUp() override { SetFetchCaFile(Certs().ca); }
  void TearDown() override { SetFetchCaFile(""); }

  static ClientOptions Options(const std::string& ca_file, bool token) {
    ClientOptions o;
    o.request_timeout = std::chrono::seconds(5);
    o.ca_file = ca_file;
    if (token) o.extra_headers = {{"Authorization", std::string("Bearer ") + kApiToken}};
    return o;
  }
  static std::string ApiUrl() { return server_->Base() + "/api/dtmsvr"; }
  static bool Stored(const std::string& gid) {
    auto q = HttpFetchWithHeaders("GET", server_->Api("query?gid=" + gid), "", Bearer(kApiToken));
    EXPECT_EQ(q.status, 200) << q.body;
    return q.body.find("\"transaction\":null") == std::string::npos;
  }

  static std::string* dir_;
  static ServerProcess* server_;
  static Busi* busi_;
};
std::string* TlsTokenServer::dir_ = nullptr;
ServerProcess* TlsTokenServer::server_ = nullptr;
Busi* TlsTokenServer::busi_ = nullptr;

TEST_F(TlsTokenServer, SdkClientWithTokenAndTheRightCaRunsASagaAndANotification) {
  ASSERT_EQ(server_->Base().rfind("https://", 0), 0u) << server_->Base();
  Client client(ApiUrl(), Options(Certs().ca, true));
  auto gid = client.NewGid();
  ASSERT_TRUE(gid.ok()) << gid.status().ToString();
  Saga saga(client, *gid);
  saga.Add(busi_->Url("/sdk/a"), busi_->Url("/sdk/c"), R"({"n":1})");
  ASSERT_TRUE(saga.Submit().ok());
  auto done = client.WaitFinal(*gid, std::chrono::seconds(15));
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_EQ(done->status, "succeed");
  EXPECT_EQ(busi_->CallCount("/sdk/a"), 1u);
  // A notification goes through the client's connection too (/api/dtx/notify needs the token).
  Notification n(client, "sdk-tls-notify-1", busi_->Url("/sdk/hook"));
  n.SetPayload(R"({"paid":true})");
  Status sent = n.Send();
  ASSERT_TRUE(sent.ok()) << sent.ToString();
  EXPECT_TRUE(
      WaitFor([&] { return busi_->CallCount("/sdk/hook") == 1; }, std::chrono::seconds(10)));
}

TEST_F(TlsTokenServer, SdkClientWithoutTheTokenGets401) {
  Client client(ApiUrl(), Options(Certs().ca, false));
  auto gid = client.NewGid();
  ASSERT_FALSE(gid.ok());
  EXPECT_NE(gid.status().message().find("HTTP 401 (unauthenticated"), std::string::npos)
      << gid.status().ToString();
  EXPECT_EQ(gid.status().reason(), "UNAUTHENTICATED");
  Saga saga(client, "sdk-no-token-1");
  saga.Add(busi_->Url("/sdk/a"), busi_->Url("/sdk/c"), "{}");
  Status s = saga.Submit();
  EXPECT_EQ(s.reason(), "UNAUTHENTICATED") << s.ToString();
  EXPECT_FALSE(Stored("sdk-no-token-1"));
  Notification n(client, "sdk-no-token-notify", busi_->Url("/sdk/hook2"));
  EXPECT_NE(n.Send().message().find("401"), std::string::npos);
  // A wrong token is refused the same way.
  ClientOptions wrong = Options(Certs().ca, false);
  wrong.extra_headers = {{"Authorization", "Bearer wrong-token-0123456789"}};
  Client wrong_client(ApiUrl(), wrong);
  EXPECT_EQ(wrong_client.NewGid().status().reason(), "UNAUTHENTICATED");
}

TEST_F(TlsTokenServer, SdkClientWithAWrongCaOrNoneFailsVerification) {
  for (const std::string& ca : {Certs().other_ca, std::string()}) {
    Client client(ApiUrl(), Options(ca, true));
    auto gid = client.NewGid();
    ASSERT_FALSE(gid.ok()) << "ca '" << ca << "'";
    EXPECT_EQ(gid.status().code(), Code::kUnavailable) << gid.status().ToString();
    EXPECT_NE(gid.status().message().find("certificate verify failed"), std::string::npos)
        << gid.status().ToString();
    Saga saga(client, "sdk-wrong-ca-1");
    saga.Add(busi_->Url("/sdk/a"), busi_->Url("/sdk/c"), "{}");
    EXPECT_EQ(saga.Submit().code(), Code::kUnavailable);
  }
  EXPECT_FALSE(Stored("sdk-wrong-ca-1"));
  // Plain http to the https listener gets no answer: an error, not a hang.
  std::string plain = ApiUrl();
  plain.replace(0, 5, "http");
  Client http_client(plain, Options("", true));
  EXPECT_FALSE(http_client.NewGid().ok());
}

TEST_F(TlsTokenServer, CliCaFileAndEnvironment) {
  const std::string common =
      " --server " + server_->Base() + " --token " + kAdminToken + " --timeout 5";
  CliResult ok = RunDtxCommand("tx list" + common + " --ca-file " + Certs().ca);
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.out.find("GID"), std::string::npos) << ok.out;
  CliResult env = RunDtxCommand("notify list --json" + common, "DTX_CA_FILE=" + Certs().ca);
  EXPECT_EQ(env.exit_code, 0) << env.err;
  EXPECT_NE(env.out.find("\"notifications\""), std::string::npos) << env.out;

  CliResult none = RunDtxCommand("tx list" + common, "DTX_CA_FILE=");
  EXPECT_EQ(none.exit_code, 2) << none.out;
  EXPECT_NE(none.err.find("certificate verify failed"), std::string::npos) << none.err;
  EXPECT_NE(none.err.find("--ca-file or DTX_CA_FILE"), std::string::npos) << none.err;
  CliResult wrong = RunDtxCommand("audit" + common + " --ca-file " + Certs().other_ca);
  EXPECT_EQ(wrong.exit_code, 2);
  EXPECT_NE(wrong.err.find("certificate verify failed"), std::string::npos) << wrong.err;
  CliResult missing = RunDtxCommand("tx list" + common + " --ca-file /nonexistent/ca.pem");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("--ca-file '/nonexistent/ca.pem'"), std::string::npos) << missing.err;
}

// dtx saga put|list against the https coordinator: --ca-file and --api-token (the saga
// definition routes are DTM-side routes that --api-token protects).
TEST_F(TlsTokenServer, CliSagaPutAndListWithCaFileAndApiToken) {
  const std::string file = TempDir("net-clients-saga") + "/refund.json";
  std::ofstream(file) << json::serialize(json::object{
      {"steps", json::array{json::object{{"name", "refund"}, {"action", busi_->Url("/r")}}}}});
  const std::string common = " --server " + server_->Base() + " --ca-file " + Certs().ca;
  CliResult put = RunDtxCommand("saga" + common + " put " + file,
                                std::string("DTX_CLIENT_API_TOKEN=") + kApiToken);
  EXPECT_EQ(put.exit_code, 0) << put.err;
  EXPECT_NE(put.out.find("refund version 1"), std::string::npos) << put.out;
  CliResult list = RunDtxCommand("saga" + common + " --api-token " + kApiToken + " list");
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("refund"), std::string::npos) << list.out;
  CliResult anon = RunDtxCommand("saga" + common + " list", "DTX_CLIENT_API_TOKEN=");
  EXPECT_EQ(anon.exit_code, 1);
  EXPECT_NE(anon.err.find("HTTP 401"), std::string::npos) << anon.err;
  CliResult no_ca = RunDtxCommand(
      "saga --server " + server_->Base() + " --api-token " + kApiToken + " list", "DTX_CA_FILE=");
  EXPECT_EQ(no_ca.exit_code, 1);
  EXPECT_NE(no_ca.err.find("certificate verify failed"), std::string::npos) << no_ca.err;
}

// Runs after the tests above (declaration order): nothing they sent — the API and admin tokens,
// a wrong token — is in the server's log, at info level.
TEST_F(TlsTokenServer, TokensAreNeverLogged) {
  std::ifstream in(server_->log_path());
  const std::string log((std::istreambuf_iterator<char>(in)), {});
  ASSERT_NE(log.find("ready"), std::string::npos) << "the log is read: " << log.size() << " bytes";
  EXPECT_NE(log.find("token"), std::string::npos) << "it says how many tokens it has";
  for (const char* secret : {kApiToken, kAdminToken, "wrong-token-0123456789"}) {
    EXPECT_EQ(log.find(secret), std::string::npos) << secret << " in:\n" << log;
  }
}

// --------------------------------------------------------------------------------------------
// Participant redirects under the SSRF guard.

class RedirectE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(TempDir("net-redirect"));
    origin_ = new Busi();
    allowed_ = new Busi();
    outside_ = new Busi();
    // Two participants on the list by host:port; the third is on the same address but another
    // port, which no pattern admits.
    server_ = new ServerProcess(
        *dir_ + "/dtx.db",
        {"--branch-url-allow", HostPort(*origin_), "--branch-url-allow", HostPort(*allowed_),
         "--admin-token", std::string("alice=") + kAdminToken, "--retry-interval", "0.2",
         "--cron-interval", "0.1", "--log-level", "warn"});
    ASSERT_TRUE(server_->Start());
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(server_->Terminate(), 0);
    delete server_;
    delete outside_;
    delete allowed_;
    delete origin_;
    delete dir_;
  }
  static std::string HostPort(const Busi& b) {
    const std::string url = b.Url("");
    return url.substr(std::string("http://").size());
  }
  static BusiAnswer RedirectTo(const std::string& location) {
    BusiAnswer a;
    a.status = 307;
    a.body = "";
    a.headers = {{"Location", location}};
    return a;
  }
  static std::string Submit(const std::string& gid, const std::string& action) {
    json::object extra{
        {"branch_headers",
         json::object{{"Authorization", "Bearer participant-secret"}, {"X-Trace", "trace-7"}}}};
    auto r = HttpFetch("POST", server_->Api("submit"),
                       SagaBody(gid, {{action, ""}}, {R"({"amount":30})"}, extra));
    EXPECT_EQ(r.status, 200) << r.body;
    return gid;
  }

  static std::string* dir_;
  static ServerProcess* server_;
  static Busi* origin_;
  static Busi* allowed_;
  static Busi* outside_;
};
std::string* RedirectE2E::dir_ = nullptr;
ServerProcess* RedirectE2E::server_ = nullptr;
Busi* RedirectE2E::origin_ = nullptr;
Busi* RedirectE2E::allowed_ = nullptr;
Busi* RedirectE2E::outside_ = nullptr;

TEST_F(RedirectE2E, ARedirectToAnAllowedHostIsFollowedWithoutCredentials) {
  origin_->SetDefault("/rd/a", RedirectTo(allowed_->Url("/rd/a-moved")));
  const std::string gid = Submit("redirect-ok", origin_->Url("/rd/a"));
  EXPECT_EQ(WaitStatus(*server_, gid, {"succeed"}).status, "succeed");
  auto first = origin_->Calls("/rd/a");
  auto moved = allowed_->Calls("/rd/a-moved");
  ASSERT_EQ(first.size(), 1u);
  ASSERT_EQ(moved.size(), 1u);
  EXPECT_EQ(first[0].headers["authorization"], "Bearer participant-secret");
  // 307 keeps the method and the body; the other host gets the other headers but not the
  // credentials.
  EXPECT_EQ(moved[0].method, "POST");
  EXPECT_EQ(moved[0].body, R"({"amount":30})");
  EXPECT_EQ(moved[0].headers["x-trace"], "trace-7");
  EXPECT_EQ(moved[0].headers.count("authorization"), 0u);
}

TEST_F(RedirectE2E, ARedirectOffTheListIsNotFollowedAndTheCallHistorySaysWhy) {
  origin_->SetDefault("/rd/b", RedirectTo(outside_->Url("/rd/b-stolen")));
  origin_->SetDefault("/rd/m", RedirectTo("http://169.254.169.254/latest/meta-data/"));
  const std::string gid = Submit("redirect-off", origin_->Url("/rd/b"));
  const std::string meta = Submit("redirect-meta", origin_->Url("/rd/m"));
  auto calls_error = [&](const std::string& g) {
    auto r = HttpFetchWithHeaders("GET", server_->Base() + "/api/dtx/admin/transactions/" + g, "",
                                  Bearer(kAdminToken));
    if (r.status != 200) return std::string();
    json::value v = json::parse(r.body);
    for (const auto& b : v.at("branches").as_array()) {
      const auto* calls = b.as_object().if_contains("calls");
      if (calls == nullptr || !calls->is_array() || calls->as_array().size() < 2) continue;
      return std::string(calls->as_array().back().at("error").as_string());
    }
    return std::string();
  };
  std::string error, meta_error;
  ASSERT_TRUE(WaitFor(
      [&] {
        error = calls_error(gid);
        meta_error = calls_error(meta);
        return !error.empty() && !meta_error.empty();
      },
      std::chrono::seconds(15)))
      << error << " / " << meta_error;
  EXPECT_NE(error.find("redirect from 127.0.0.1"), std::string::npos) << error;
  EXPECT_NE(error.find("refused"), std::string::npos) << error;
  EXPECT_NE(error.find("--branch-url-allow"), std::string::npos) << error;
  EXPECT_NE(meta_error.find("link-local"), std::string::npos) << meta_error;
  EXPECT_EQ(outside_->CallCount("/rd/b-stolen"), 0u);  // never reached
  EXPECT_GE(origin_->CallCount("/rd/b"), 2u);          // retried with the backoff
  EXPECT_EQ(QueryTrans(*server_, gid).status, "submitted");
  EXPECT_EQ(QueryTrans(*server_, meta).status, "submitted");
}

}  // namespace
}  // namespace dtx::testing
