// The SSRF guard's rules (url_policy.h) and the client applying them to calls, redirects and
// resolved addresses.
#include "http/url_policy.h"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <future>
#include <optional>

#include "http/client.h"
#include "http/http_test_util.h"
#include "runtime/io_pool.h"

namespace dtx::http {
namespace {

using namespace std::chrono_literals;
namespace ip = boost::asio::ip;

std::shared_ptr<const UrlPolicy> Policy(const std::vector<std::string>& patterns) {
  auto p = UrlPolicy::Parse(patterns);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return p.ok() ? *p : nullptr;
}

bool Allows(const UrlPolicy& p, std::string_view url) { return p.CheckUrl(url).ok(); }

ParsedUrl Url(std::string_view url) { return *ParseHttpUrl(url); }

TEST(UrlPolicyTest, BadPatternsAreRefusedNamingThem) {
  for (const char* bad :
       {"10.0.0.0/33", "10.0.0.0/", "10.0.0.0/x", "nothost/8", "fd00::/129", "[fd00::", "[fd00::]x",
        "host:0", "host:70000", "host:abc", "*.", "a b", "ho$t", ""}) {
    auto p = UrlPolicy::Parse({bad});
    ASSERT_FALSE(p.ok()) << bad;
    EXPECT_NE(p.status().message().find("--branch-url-allow"), std::string::npos) << bad;
  }
}

TEST(UrlPolicyTest, NoPatternsAllowAllButLinkLocal) {
  auto p = Policy({});
  EXPECT_FALSE(p->restricted());
  EXPECT_TRUE(Allows(*p, "http://example.com/x"));
  EXPECT_TRUE(Allows(*p, "http://10.1.2.3:8080/x"));
  EXPECT_TRUE(Allows(*p, "https://[::1]/x"));
  EXPECT_FALSE(Allows(*p, "http://169.254.169.254/latest/meta-data/"));
  EXPECT_FALSE(Allows(*p, "http://[fe80::1]/x"));
  EXPECT_FALSE(Allows(*p, "http://[::ffff:169.254.169.254]/x"));  // IPv4-mapped
  EXPECT_NE(p->CheckUrl("http://169.254.169.254/").message().find("link-local"), std::string::npos);
  // A name resolving to the metadata address is refused at connect time.
  EXPECT_FALSE(
      p->CheckAddress(Url("http://meta.example/"), ip::make_address("169.254.169.254")).ok());
  // Without patterns, names may resolve to internal addresses (today's behaviour).
  EXPECT_TRUE(p->CheckAddress(Url("http://svc.local/"), ip::make_address("10.0.0.1")).ok());
}

TEST(UrlPolicyTest, NamesWildcardsAndPorts) {
  auto p = Policy({"payments.internal", "*.svc.example", "orders.example:8443", "10.0.0.7:80"});
  EXPECT_TRUE(p->restricted());
  EXPECT_TRUE(Allows(*p, "http://payments.internal/pay"));
  EXPECT_TRUE(Allows(*p, "http://PAYMENTS.internal:9000/pay"));  // case-insensitive, any port
  EXPECT_TRUE(Allows(*p, "https://a.svc.example/x"));
  EXPECT_TRUE(Allows(*p, "https://b.a.svc.example/x"));
  EXPECT_FALSE(Allows(*p, "https://svc.example/x"));  // the suffix itself is not below it
  EXPECT_FALSE(Allows(*p, "https://evilsvc.example/x"));
  EXPECT_TRUE(Allows(*p, "https://orders.example:8443/x"));
  EXPECT_FALSE(Allows(*p, "https://orders.example/x"));  // 443
  EXPECT_TRUE(Allows(*p, "http://10.0.0.7/x"));
  EXPECT_FALSE(Allows(*p, "http://10.0.0.7:81/x"));
  EXPECT_FALSE(Allows(*p, "http://10.0.0.8/x"));
  EXPECT_FALSE(Allows(*p, "http://other.example/x"));
  EXPECT_FALSE(Allows(*p, "http://127.0.0.1/x"));
  EXPECT_FALSE(Allows(*p, "ftp://payments.internal/x"));
  EXPECT_NE(p->CheckUrl("http://other.example/").message().find("not allowed by"),
            std::string::npos);
}

TEST(UrlPolicyTest, CidrsV4AndV6) {
  auto p = Policy({"10.0.0.0/8", "[fd00::]/8", "2001:db8::/32", "192.168.1.7"});
  EXPECT_TRUE(Allows(*p, "http://10.200.3.4:1234/x"));
  EXPECT_FALSE(Allows(*p, "http://11.0.0.1/x"));
  EXPECT_TRUE(Allows(*p, "http://[fd12::1]/x"));
  EXPECT_FALSE(Allows(*p, "http://[fe00::1]/x"));
  EXPECT_TRUE(Allows(*p, "http://[2001:db8:1::5]:8080/x"));
  EXPECT_FALSE(Allows(*p, "http://[2001:db9::5]/x"));
  EXPECT_TRUE(Allows(*p, "http://192.168.1.7/x"));
  EXPECT_FALSE(Allows(*p, "http://192.168.1.8/x"));
  EXPECT_TRUE(Allows(*p, "http://[::ffff:10.1.1.1]/x"));  // mapped: checked as 10.1.1.1
  EXPECT_FALSE(Allows(*p, "http://somehost/x"));          // names need a name pattern
}

TEST(UrlPolicyTest, LinkLocalOnlyThroughAnExplicitCidr) {
  auto names = Policy({"*.example"});
  EXPECT_FALSE(names->CheckAddress(Url("http://a.example/"), ip::make_address("169.254.1.1")).ok());
  auto cidr = Policy({"169.254.169.254/32"});
  EXPECT_TRUE(Allows(*cidr, "http://169.254.169.254/x"));
  EXPECT_FALSE(Allows(*cidr, "http://169.254.169.253/x"));
  auto v6 = Policy({"fe80::/10"});
  EXPECT_TRUE(Allows(*v6, "http://[fe80::1]/x"));
}

TEST(UrlPolicyTest, ResolvedAddressesOfNamesMustBePublicUnlessACidrAdmitsThem) {
  auto p = Policy({"*.example", "10.1.0.0/16"});
  const ParsedUrl u = Url("https://api.example/x");
  EXPECT_TRUE(p->CheckAddress(u, ip::make_address("93.184.216.34")).ok());
  EXPECT_TRUE(p->CheckAddress(u, ip::make_address("10.1.2.3")).ok());
  for (const char* internal : {"127.0.0.1", "10.2.0.1", "172.16.5.5", "192.168.0.1", "100.64.0.1",
                               "0.0.0.0", "::1", "fd00::1", "::ffff:127.0.0.1", "224.0.0.1"}) {
    Status s = p->CheckAddress(u, ip::make_address(internal));
    EXPECT_FALSE(s.ok()) << internal;
    EXPECT_NE(s.message().find("non-public"), std::string::npos) << s.message();
  }
}

// The client applies the policy: the URL of a request, where a name resolves to, and redirects.
class UrlPolicyClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_.Start();
    server_ = std::make_unique<Server>(pool_, ServerOptions{}, handler_);
    ASSERT_TRUE(server_->Start().ok());
    port_ = std::to_string(server_->port());
  }
  void TearDown() override {
    server_->Stop();
    pool_.Stop();
    pool_.Join();
    client_.reset();
  }
  Result<ClientResponse> Get(std::vector<std::string> patterns, std::string url) {
    ClientOptions options;
    options.url_policy = Policy(patterns);
    client_ = std::make_unique<Client>(pool_.Get(0).get_executor(), options);
    ClientRequest r;
    r.url = std::move(url);
    auto f = boost::asio::co_spawn(
        pool_.Get(0),
        [](Client* c,
           ClientRequest req) -> boost::asio::awaitable<std::optional<Result<ClientResponse>>> {
          co_return co_await c->Send(std::move(req));
        }(client_.get(), std::move(r)),
        boost::asio::use_future);
    if (f.wait_for(10s) != std::future_status::ready) return Status::Internal("gave up");
    return *f.get();
  }

  testing::TestHandler handler_;
  runtime::IoPool pool_{1};
  std::unique_ptr<Server> server_;
  std::unique_ptr<Client> client_;
  std::string port_;
};

TEST_F(UrlPolicyClientTest, AllowedAddressIsCalled) {
  auto r = Get({"127.0.0.1"}, "http://127.0.0.1:" + port_ + "/echo");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
}

TEST_F(UrlPolicyClientTest, RefusedUrlIsNotCalled) {
  auto r = Get({"10.0.0.0/8"}, "http://127.0.0.1:" + port_ + "/echo");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(handler_.calls.load(), 0u);
}

TEST_F(UrlPolicyClientTest, NameResolvingToLoopbackIsRefusedAtConnect) {
  // "localhost" matches the name pattern, but resolves to a non-public address that no CIDR admits
  // (what a DNS-rebinding attacker's name would do).
  auto r = Get({"localhost"}, "http://localhost:" + port_ + "/echo");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("non-public"), std::string::npos) << r.status().message();
  EXPECT_EQ(handler_.calls.load(), 0u);
  // Admitted by a CIDR as well, the same name is called.
  auto ok = Get({"localhost", "127.0.0.0/8", "::1/128"}, "http://localhost:" + port_ + "/echo");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->status, 200);
}

TEST_F(UrlPolicyClientTest, RedirectsAreFollowedOnlyWithinThePolicy) {
  const std::string base = "http://127.0.0.1:" + port_;
  // Within the policy: followed to /echo.
  auto inside = Get({"127.0.0.1"}, base + "/redirect?to=/echo");
  ASSERT_TRUE(inside.ok()) << inside.status().ToString();
  EXPECT_EQ(inside->status, 200);
  // To the metadata address: refused, never connected.
  auto meta = Get({"127.0.0.1"}, base + "/redirect?to=http://169.254.169.254/latest/meta-data/");
  ASSERT_FALSE(meta.ok());
  EXPECT_NE(meta.status().message().find("redirect from"), std::string::npos)
      << meta.status().message();
  // Elsewhere, outside the list: refused.
  auto out = Get({"127.0.0.1:" + port_}, base + "/redirect?to=http://127.0.0.1:1/echo");
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("not allowed by --branch-url-allow"), std::string::npos)
      << out.status().message();
}

}  // namespace
}  // namespace dtx::http
