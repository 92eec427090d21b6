#include "http/client.h"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "http/http_test_util.h"
#include "runtime/io_pool.h"

namespace dtx::http {
namespace {

using namespace std::chrono_literals;
using testing::TestHandler;

// co_spawn's future needs a default-constructible value; Result<T> is not.
boost::asio::awaitable<std::optional<Result<ClientResponse>>> SendWrapped(Client* client,
                                                                          ClientRequest request) {
  co_return co_await client->Send(std::move(request));
}

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_pool_ = std::make_unique<runtime::IoPool>(1);
    server_pool_->Start();
    client_pool_ = std::make_unique<runtime::IoPool>(1);
    client_pool_->Start();
  }

  void StartServer(ServerOptions options = {}) {
    server_ = std::make_unique<Server>(*server_pool_, std::move(options), handler_);
    handler_.server = server_.get();
    const Status status = server_->Start();
    ASSERT_TRUE(status.ok()) << status.ToString();
    base_ = "http://127.0.0.1:" + std::to_string(server_->port());
  }

  void MakeClient(ClientOptions options = {}) {
    client_ = std::make_unique<Client>(client_pool_->Get(0).get_executor(), options);
  }

  void TearDown() override {
    server_.reset();
    server_pool_.reset();
    // The client's sockets belong to the client context: destroy it while the context exists.
    client_pool_->Stop();
    client_pool_->Join();
    client_.reset();
    client_pool_.reset();
  }

  std::future<std::optional<Result<ClientResponse>>> SendAsync(ClientRequest request) {
    return boost::asio::co_spawn(client_pool_->Get(0),
                                 SendWrapped(client_.get(), std::move(request)),
                                 boost::asio::use_future);
  }

  static Result<ClientResponse> Wait(std::future<std::optional<Result<ClientResponse>>>& f) {
    if (f.wait_for(10s) != std::future_status::ready) {
      return Status::Internal("the test gave up waiting for the request");
    }
    return *f.get();
  }

  Result<ClientResponse> Send(ClientRequest request) {
    auto f = SendAsync(std::move(request));
    return Wait(f);
  }

  static ClientRequest Request(std::string method, std::string url, std::string body = "") {
    ClientRequest r;
    r.method = std::move(method);
    r.url = std::move(url);
    r.body = std::move(body);
    return r;
  }

  static std::string HeaderOf(const ClientResponse& r, std::string_view name) {
    for (const auto& [k, v] : r.headers) {
      if (k.size() == name.size() &&
          std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
            return std::tolower(static_cast<unsigned char>(a)) ==
                   std::tolower(static_cast<unsigned char>(b));
          })) {
        return v;
      }
    }
    return {};
  }

  TestHandler handler_;
  std::unique_ptr<runtime::IoPool> server_pool_;
  std::unique_ptr<runtime::IoPool> client_pool_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<Client> client_;
  std::string base_;
};

TEST(ParseHttpUrlTest, Valid) {
  auto a = ParseHttpUrl("http://example.com");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "example.com");
  EXPECT_EQ(a->port, 80);
  EXPECT_EQ(a->target, "/");

  auto b = ParseHttpUrl("http://127.0.0.1:8080/api/busi/TransOut?gid=1&op=try#fragment");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "127.0.0.1");
  EXPECT_EQ(b->port, 8080);
  EXPECT_EQ(b->target, "/api/busi/TransOut?gid=1&op=try");

  auto c = ParseHttpUrl("http://[::1]:9000/p");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->host, "::1");
  EXPECT_EQ(c->port, 9000);
  EXPECT_EQ(c->target, "/p");

  auto d = ParseHttpUrl("HTTP://[fe80::1]");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->host, "fe80::1");
  EXPECT_EQ(d->port, 80);

  auto e = ParseHttpUrl("http://host?x=1");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->target, "/?x=1");
}

TEST(ParseHttpUrlTest, Invalid) {
  for (const char* url : {"", "example.com", "ftp://x/", "http://", "http:///path", "http://h:/",
                          "http://h:abc/", "http://h:0/", "http://h:70000/", "http://[::1/",
                          "http://[::1]x/", "http://user:pw@h/", "http://h/a b"}) {
    EXPECT_EQ(ParseHttpUrl(url).status().code(), Code::kInvalidArgument) << url;
  }
}

TEST_F(ClientTest, GetAndPostWithHeadersAndBody) {
  StartServer();
  MakeClient();
  ClientRequest get = Request("GET", base_ + "/echo?k=v");
  get.headers = {{"X-Test", "header value"}};
  auto r = Send(get);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(HeaderOf(*r, "x-method"), "GET");
  EXPECT_EQ(HeaderOf(*r, "x-query"), "k=v");
  EXPECT_EQ(HeaderOf(*r, "x-header"), "header value");
  EXPECT_EQ(HeaderOf(*r, "content-type"), "text/plain");

  auto p = Send(Request("POST", base_ + "/echo", R"({"gid":"g1"})"));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->status, 200);
  EXPECT_EQ(p->body, R"({"gid":"g1"})");
  EXPECT_EQ(HeaderOf(*p, "x-method"), "POST");

  auto big = Send(Request("PUT", base_ + "/echo", std::string(1 << 20, 'z')));
  ASSERT_TRUE(big.ok()) << big.status().ToString();
  EXPECT_EQ(big->body.size(), 1u << 20);

  auto missing = Send(Request("GET", base_ + "/nope"));
  ASSERT_TRUE(missing.ok());  // any HTTP status is a success at this level
  EXPECT_EQ(missing->status, 404);
}

TEST_F(ClientTest, ReusesOneConnectionForSequentialRequests) {
  StartServer();
  MakeClient();
  for (int i = 0; i < 100; ++i) {
    auto r = Send(Request("POST", base_ + "/echo", std::to_string(i)));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->body, std::to_string(i));
  }
  EXPECT_EQ(server_->accepted_connections(), 1u);
}

TEST_F(ClientTest, TimeoutAgainstSlowHandler) {
  StartServer();
  MakeClient();
  ClientRequest request = Request("GET", base_ + "/slow?ms=3000");
  request.timeout = 300ms;
  const auto start = std::chrono::steady_clock::now();
  auto r = Send(request);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.status().code(), Code::kTimeout) << r.status().ToString();
  EXPECT_GE(elapsed, 250ms);
  EXPECT_LT(elapsed, 1500ms);

  // The client still works afterwards (the timed-out connection is not reused).
  auto ok = Send(Request("GET", base_ + "/echo"));
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
}

TEST_F(ClientTest, ConnectionRefusedIsUnavailable) {
  MakeClient();
  auto r = Send(Request("GET", "http://127.0.0.1:" + std::to_string(testing::ClosedPort()) + "/"));
  EXPECT_EQ(r.status().code(), Code::kUnavailable) << r.status().ToString();
  EXPECT_TRUE(r.status().retryable());
}

TEST_F(ClientTest, BadUrlIsInvalidArgument) {
  MakeClient();
  EXPECT_EQ(Send(Request("GET", "ftp://127.0.0.1/")).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Send(Request("GET", "not a url")).status().code(), Code::kInvalidArgument);
  ClientRequest bad_header = Request("GET", "http://127.0.0.1:1/");
  bad_header.headers = {{"X-Evil", "a\r\nInjected: yes"}};
  EXPECT_EQ(Send(bad_header).status().code(), Code::kInvalidArgument);
}

TEST_F(ClientTest, PerHostConnectionLimit) {
  StartServer();
  ClientOptions options;
  options.max_connections_per_host = 2;
  MakeClient(options);
  std::vector<std::future<std::optional<Result<ClientResponse>>>> futures;
  for (int i = 0; i < 10; ++i) futures.push_back(SendAsync(Request("GET", base_ + "/slow?ms=100")));
  for (auto& f : futures) {
    auto r = Wait(f);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->body, "slept");
  }
  EXPECT_LE(handler_.max_in_flight.load(), 2u);
  EXPECT_LE(handler_.max_open.load(), 2u);
  EXPECT_LE(server_->accepted_connections(), 2u);
}

TEST_F(ClientTest, WaitingForAFullHostEndsAtTheDeadline) {
  StartServer();
  ClientOptions options;
  options.max_connections_per_host = 1;
  MakeClient(options);
  auto slow = SendAsync(Request("GET", base_ + "/slow?ms=1000"));
  ASSERT_TRUE(testing::WaitFor([&] { return handler_.in_flight.load() == 1; }));
  ClientRequest quick = Request("GET", base_ + "/echo");
  quick.timeout = 200ms;
  const auto start = std::chrono::steady_clock::now();
  auto r = Send(quick);
  EXPECT_EQ(r.status().code(), Code::kUnavailable) << r.status().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 900ms);
  auto s = Wait(slow);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  // The slot is free again.
  auto after = Send(Request("GET", base_ + "/echo"));
  ASSERT_TRUE(after.ok()) << after.status().ToString();
}

TEST_F(ClientTest, StalePooledConnectionIsRetried) {
  ServerOptions server_options;
  server_options.idle_timeout = 200ms;
  StartServer(server_options);
  MakeClient();
  auto first = Send(Request("POST", base_ + "/echo", "one"));
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  // The server closes the kept-alive connection while it sits in the client's pool.
  ASSERT_TRUE(testing::WaitFor([&] { return server_->open_connections() == 0; }));
  std::this_thread::sleep_for(50ms);
  auto second = Send(Request("POST", base_ + "/echo", "two"));
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->body, "two");
  EXPECT_EQ(server_->accepted_connections(), 2u);
  EXPECT_EQ(handler_.calls.load(), 2u);
}

TEST_F(ClientTest, FollowsRedirects) {
  StartServer();
  MakeClient();
  auto r = Send(Request("GET", base_ + "/redirect?to=%2Fecho%3Fafter%3D1"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(HeaderOf(*r, "x-path"), "/echo");
  EXPECT_EQ(HeaderOf(*r, "x-query"), "after=1");

  // 307 keeps the method and body; 303 turns into a GET without body.
  auto keep = Send(Request("POST", base_ + "/redirect?code=307", "payload"));
  ASSERT_TRUE(keep.ok()) << keep.status().ToString();
  EXPECT_EQ(HeaderOf(*keep, "x-method"), "POST");
  EXPECT_EQ(keep->body, "payload");
  auto see_other = Send(Request("POST", base_ + "/redirect?code=303", "payload"));
  ASSERT_TRUE(see_other.ok()) << see_other.status().ToString();
  EXPECT_EQ(HeaderOf(*see_other, "x-method"), "GET");
  EXPECT_EQ(see_other->body, "");

  // A loop stops after max_redirects and returns the last answer.
  auto loop = Send(Request("GET", base_ + "/loop"));
  ASSERT_TRUE(loop.ok()) << loop.status().ToString();
  EXPECT_EQ(loop->status, 302);
  EXPECT_EQ(handler_.calls.load(), 2u + 2u + 2u + 1u + 10u);
}

TEST_F(ClientTest, ResponseTooLarge) {
  StartServer();
  ClientOptions options;
  options.max_response_bytes = 1000;
  MakeClient(options);
  auto ok = Send(Request("GET", base_ + "/big?n=1000"));
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->body.size(), 1000u);
  auto big = Send(Request("GET", base_ + "/big?n=5000"));
  EXPECT_EQ(big.status().code(), Code::kTooLarge) << big.status().ToString();
  auto after = Send(Request("GET", base_ + "/big?n=10"));
  ASSERT_TRUE(after.ok()) << after.status().ToString();
}

TEST_F(ClientTest, ServerAnswering503IsASuccessfulExchange) {
  ServerOptions server_options;
  server_options.max_connections = 0;
  StartServer(server_options);
  MakeClient();
  auto r = Send(Request("GET", base_ + "/echo"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 503);
}

}  // namespace
}  // namespace dtx::http
