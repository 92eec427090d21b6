#include "http/server.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "http/http_test_util.h"
#include "runtime/io_pool.h"

namespace dtx::http {
namespace {

using namespace std::chrono_literals;
using testing::RawConn;
using testing::RawResponse;
using testing::TestHandler;
using testing::WaitFor;

std::string Get(std::string_view target, std::string_view extra_headers = "") {
  return "GET " + std::string(target) + " HTTP/1.1\r\nHost: test\r\n" + std::string(extra_headers) +
         "\r\n";
}

std::string Post(std::string_view target, std::string_view body,
                 std::string_view extra_headers = "") {
  return "POST " + std::string(target) +
         " HTTP/1.1\r\nHost: test\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
         std::string(extra_headers) + "\r\n" + std::string(body);
}

class ServerTest : public ::testing::Test {
 protected:
  void StartServer(ServerOptions options = {}, size_t threads = 2) {
    pool_ = std::make_unique<runtime::IoPool>(threads);
    pool_->Start();
    server_ = std::make_unique<Server>(*pool_, std::move(options), handler_);
    handler_.server = server_.get();
    const Status status = server_->Start();
    ASSERT_TRUE(status.ok()) << status.ToString();
    port_ = server_->port();
    ASSERT_NE(port_, 0);
  }

  void TearDown() override {
    server_.reset();
    pool_.reset();
  }

  // A fresh connection that sends `request` and reads one response.
  std::optional<RawResponse> RoundTrip(std::string_view request) {
    RawConn conn(port_);
    if (!conn.connected() || !conn.Send(request)) return std::nullopt;
    return conn.ReadResponse();
  }

  TestHandler handler_;
  std::unique_ptr<runtime::IoPool> pool_;
  std::unique_ptr<Server> server_;
  uint16_t port_ = 0;
};

TEST(UrlCodingTest, DecodeAndEncode) {
  EXPECT_EQ(UrlDecode("a%20b+c%2Bd"), "a b c+d");
  EXPECT_EQ(UrlDecode("%e4%b8%ad"), "\xe4\xb8\xad");
  EXPECT_EQ(UrlDecode("100%"), "100%");    // a stray '%' stays
  EXPECT_EQ(UrlDecode("%zz%4"), "%zz%4");  // so does a bad escape
  EXPECT_EQ(UrlEncode("a b/c?d=e&f~g-h_i.j"), "a%20b%2Fc%3Fd%3De%26f~g-h_i.j");
  EXPECT_EQ(UrlEncode("\xe4\xb8\xad"), "%E4%B8%AD");
  EXPECT_EQ(UrlDecode(UrlEncode("any thing+%/\x01")), "any thing+%/\x01");
}

TEST(RequestTest, HeaderIsCaseInsensitive) {
  Request r;
  r.headers = {{"Content-Type", "application/json"}, {"X-Gid", "g1"}};
  EXPECT_EQ(r.Header("content-type"), "application/json");
  EXPECT_EQ(r.Header("X-GID"), "g1");
  EXPECT_EQ(r.Header("missing"), "");
}

TEST(RequestTest, QueryParam) {
  Request r;
  r.query = "gid=abc&op=try&empty=&flag&sp=a+b%21&a%20b=x&gid=second";
  EXPECT_EQ(r.QueryParam("gid"), "abc");  // the first one wins
  EXPECT_EQ(r.QueryParam("op"), "try");
  EXPECT_EQ(r.QueryParam("empty"), "");
  EXPECT_EQ(r.QueryParam("flag"), "");
  EXPECT_EQ(r.QueryParam("sp"), "a b!");
  EXPECT_EQ(r.QueryParam("a b"), "x");
  EXPECT_EQ(r.QueryParam("missing"), std::nullopt);
}

TEST_F(ServerTest, Echo) {
  StartServer();
  auto r = RoundTrip(Post("/echo?x=1&y=2", "hello body", "X-Test: abc\r\n"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello body");
  EXPECT_EQ(r->Header("content-type"), "text/plain");
  EXPECT_EQ(r->Header("content-length"), "10");
  EXPECT_EQ(r->Header("x-method"), "POST");
  EXPECT_EQ(r->Header("x-path"), "/echo");
  EXPECT_EQ(r->Header("x-query"), "x=1&y=2");
  EXPECT_EQ(r->Header("x-header"), "abc");
  EXPECT_EQ(r->Header("connection"), "");
}

TEST_F(ServerTest, ChunkedRequestBody) {
  StartServer();
  auto r = RoundTrip(
      "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello world");
}

TEST_F(ServerTest, KeepAliveServesManyRequestsOnOneConnection) {
  StartServer();
  RawConn conn(port_);
  ASSERT_TRUE(conn.connected());
  for (int i = 0; i < 20; ++i) {
    const std::string body = "request " + std::to_string(i);
    ASSERT_TRUE(conn.Send(Post("/echo", body)));
    auto r = conn.ReadResponse();
    ASSERT_TRUE(r) << i;
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, body);
  }
  EXPECT_EQ(server_->accepted_connections(), 1u);
  EXPECT_EQ(server_->open_connections(), 1u);
}

TEST_F(ServerTest, PipelinedRequestsAreAnsweredInOrder) {
  StartServer();
  RawConn conn(port_);
  ASSERT_TRUE(conn.Send(Post("/echo", "one") + Get("/echo?two") + Post("/echo", "three")));
  auto r1 = conn.ReadResponse();
  auto r2 = conn.ReadResponse();
  auto r3 = conn.ReadResponse();
  ASSERT_TRUE(r1 && r2 && r3);
  EXPECT_EQ(r1->body, "one");
  EXPECT_EQ(r2->Header("x-query"), "two");
  EXPECT_EQ(r3->body, "three");
}

TEST_F(ServerTest, Http10ClosesAfterResponse) {
  StartServer();
  RawConn conn(port_);
  ASSERT_TRUE(conn.Send("GET /echo HTTP/1.0\r\n\r\n"));
  auto r = conn.ReadResponse();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->Header("connection"), "close");
  EXPECT_TRUE(conn.WaitClosed());
}

TEST_F(ServerTest, ConnectionCloseRequestIsHonoured) {
  StartServer();
  RawConn conn(port_);
  ASSERT_TRUE(conn.Send(Get("/echo", "Connection: close\r\n")));
  auto r = conn.ReadResponse();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->Header("connection"), "close");
  EXPECT_TRUE(conn.WaitClosed());
}

TEST_F(ServerTest, HeadHasNoBody) {
  StartServer();
  RawConn conn(port_);
  conn.set_head_only(true);
  ASSERT_TRUE(conn.Send("HEAD /big?n=100 HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto r = conn.ReadResponse();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->Header("content-length"), "100");
  // The next response follows immediately: no body bytes were sent.
  conn.set_head_only(false);
  ASSERT_TRUE(conn.Send(Post("/echo", "next")));
  auto next = conn.ReadResponse();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->body, "next");
}

TEST_F(ServerTest, ExpectContinue) {
  StartServer();
  RawConn conn(port_);
  ASSERT_TRUE(conn.Send(
      "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"));
  auto interim = conn.ReadResponse();
  ASSERT_TRUE(interim);
  EXPECT_EQ(interim->status, 100);
  ASSERT_TRUE(conn.Send("hello"));
  auto r = conn.ReadResponse();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello");
}

TEST_F(ServerTest, QueryParamsAreDecoded) {
  StartServer();
  auto r = RoundTrip(Get("/query?a=hello%20world&b=x+y%26z"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello world|x y&z|absent");
}

TEST_F(ServerTest, OversizedBodyGets413AndServerKeepsServing) {
  ServerOptions options;
  options.max_body_bytes = 1024;
  StartServer(options);
  RawConn conn(port_);
  ASSERT_TRUE(conn.Send(Post("/echo", std::string(4096, 'a'))));
  auto r = conn.ReadResponse();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(
      r->body,
      R"json({"message":"request body too large (limit 1024 bytes)","code":"TOO_LARGE"})json");
  EXPECT_EQ(r->Header("content-type"), "application/json");
  EXPECT_EQ(r->Header("connection"), "close");
  EXPECT_TRUE(conn.WaitClosed());

  // Exactly at the limit is fine, and the server still serves new connections.
  auto ok = RoundTrip(Post("/echo", std::string(1024, 'b')));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->body.size(), 1024u);
}

TEST_F(ServerTest, OversizedChunkedBodyGets413) {
  ServerOptions options;
  options.max_body_bytes = 10;
  StartServer(options);
  auto r = RoundTrip(
      "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
      "8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
}

TEST_F(ServerTest, OversizedHeaderGets431) {
  ServerOptions options;
  options.max_header_bytes = 1024;
  StartServer(options);
  RawConn conn(port_);
  ASSERT_TRUE(conn.Send(Get("/echo", "X-Big: " + std::string(2000, 'h') + "\r\n")));
  auto r = conn.ReadResponse();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 431);
  EXPECT_TRUE(conn.WaitClosed());
}

TEST_F(ServerTest, GarbageGets400) {
  StartServer();
  RawConn conn(port_);
  ASSERT_TRUE(conn.Send("THIS IS NOT HTTP\r\n\r\n"));
  auto r = conn.ReadResponse();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(r->body.find("INVALID_ARGUMENT"), std::string::npos);
  EXPECT_TRUE(conn.WaitClosed());

  auto bad_length = RoundTrip("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n");
  ASSERT_TRUE(bad_length);
  EXPECT_EQ(bad_length->status, 400);

  auto ok = RoundTrip(Get("/echo"));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

TEST_F(ServerTest, StalledClientGets408AndOthersAreServed) {
  ServerOptions options;
  options.read_timeout = 300ms;
  StartServer(options);

  RawConn stalled_body(port_);
  ASSERT_TRUE(
      stalled_body.Send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc"));
  RawConn stalled_header(port_);
  ASSERT_TRUE(stalled_header.Send("GET /echo HTTP/1.1\r\nHo"));
  const auto start = std::chrono::steady_clock::now();

  // Meanwhile other clients are served.
  auto ok = RoundTrip(Post("/echo", "not stalled"));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->body, "not stalled");

  for (RawConn* conn : {&stalled_body, &stalled_header}) {
    auto r = conn->ReadResponse(3000ms);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 408);
    EXPECT_TRUE(conn->WaitClosed(3000ms));
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, 250ms);
  EXPECT_LT(elapsed, 2500ms);
  auto after = RoundTrip(Post("/echo", "after"));
  ASSERT_TRUE(after);
  EXPECT_EQ(after->body, "after");
}

TEST_F(ServerTest, ClientClosingMidBodyIsDropped) {
  StartServer();
  {
    RawConn conn(port_);
    ASSERT_TRUE(conn.Send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc"));
    ASSERT_TRUE(WaitFor([&] { return server_->open_connections() == 1; }));
  }
  EXPECT_TRUE(WaitFor([&] { return server_->open_connections() == 0; }));
  EXPECT_EQ(handler_.calls.load(), 0u);
  auto ok = RoundTrip(Get("/echo"));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

TEST_F(ServerTest, IdleKeepAliveConnectionIsClosedSilently) {
  ServerOptions options;
  options.idle_timeout = 200ms;
  StartServer(options);
  RawConn conn(port_);
  ASSERT_TRUE(conn.Send(Get("/echo")));
  ASSERT_TRUE(conn.ReadResponse());
  EXPECT_TRUE(conn.WaitClosed(3000ms));
  EXPECT_TRUE(conn.buffered().empty());  // no 408 on an idle connection
  EXPECT_TRUE(WaitFor([&] { return server_->open_connections() == 0; }));
}

TEST_F(ServerTest, MaxConnectionsGets503) {
  ServerOptions options;
  options.max_connections = 2;
  StartServer(options);
  RawConn a(port_);
  RawConn b(port_);
  ASSERT_TRUE(WaitFor([&] { return server_->open_connections() == 2; }));

  RawConn c(port_);
  ASSERT_TRUE(c.Send(Get("/echo")));
  auto r = c.ReadResponse();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_NE(r->body.find("UNAVAILABLE"), std::string::npos);
  EXPECT_TRUE(c.WaitClosed());

  // The open ones are served; once one closes, a new connection is served again.
  ASSERT_TRUE(a.Send(Get("/echo")));
  auto ra = a.ReadResponse();
  ASSERT_TRUE(ra);
  EXPECT_EQ(ra->status, 200);
  b.Close();
  ASSERT_TRUE(WaitFor([&] { return server_->open_connections() == 1; }));
  auto d = RoundTrip(Get("/echo"));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->status, 200);
}

TEST_F(ServerTest, HandlerExceptionGets500) {
  StartServer();
  RawConn conn(port_);
  ASSERT_TRUE(conn.Send(Get("/throw")));
  auto r = conn.ReadResponse();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(r->body, R"({"message":"internal error: boom \"quoted\"","code":"INTERNAL"})");
  // The connection stays usable.
  ASSERT_TRUE(conn.Send(Get("/echo")));
  auto next = conn.ReadResponse();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200);
}

TEST_F(ServerTest, StatusWithoutBodyAndInvalidStatus) {
  StartServer();
  RawConn conn(port_);
  ASSERT_TRUE(conn.Send(Get("/status?code=204")));
  auto no_content = conn.ReadResponse();
  ASSERT_TRUE(no_content);
  EXPECT_EQ(no_content->status, 204);
  EXPECT_EQ(no_content->Header("content-length"), "");
  ASSERT_TRUE(conn.Send(Get("/status?code=42")));
  auto invalid = conn.ReadResponse();
  ASSERT_TRUE(invalid);
  EXPECT_EQ(invalid->status, 500);
  EXPECT_NE(invalid->body.find("invalid status 42"), std::string::npos);
  ASSERT_TRUE(conn.Send(Get("/status?code=599")));
  auto unusual = conn.ReadResponse();
  ASSERT_TRUE(unusual);
  EXPECT_EQ(unusual->status, 599);
  EXPECT_EQ(unusual->body, "status body");
}

TEST_F(ServerTest, StopClosesOpenConnectionsAndCancelsHandlers) {
  StartServer();
  RawConn idle(port_);
  ASSERT_TRUE(idle.Send(Get("/echo")));
  ASSERT_TRUE(idle.ReadResponse());
  RawConn busy(port_);
  ASSERT_TRUE(busy.Send(Get("/slow?ms=30000")));
  ASSERT_TRUE(WaitFor([&] { return handler_.in_flight.load() == 1; }));

  const auto start = std::chrono::steady_clock::now();
  server_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_EQ(server_->open_connections(), 0u);
  EXPECT_EQ(handler_.in_flight.load(), 0);
  EXPECT_TRUE(idle.WaitClosed(2000ms));
  EXPECT_TRUE(busy.WaitClosed(2000ms));
  server_->Stop();  // idempotent

  RawConn after(port_);
  EXPECT_FALSE(after.connected());
}

TEST_F(ServerTest, StartFailsWhenPortIsTaken) {
  StartServer();
  ServerOptions options;
  options.port = port_;
  Server second(*pool_, options, handler_);
  const Status status = second.Start();
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("cannot listen on 127.0.0.1:"), std::string::npos)
      << status.ToString();
}

TEST_F(ServerTest, StartFailsOnBadAddress) {
  pool_ = std::make_unique<runtime::IoPool>(1);
  ServerOptions options;
  options.host = "not an address";
  Server server(*pool_, options, handler_);
  const Status status = server.Start();
  EXPECT_EQ(status.code(), Code::kInvalidArgument) << status.ToString();
}

TEST_F(ServerTest, ManyConcurrentConnections) {
  StartServer();
  constexpr int kConnections = 50;
  std::vector<std::unique_ptr<RawConn>> conns;
  for (int i = 0; i < kConnections; ++i) {
    conns.push_back(std::make_unique<RawConn>(port_));
    ASSERT_TRUE(conns.back()->Send(Post("/echo", std::to_string(i))));
  }
  for (int i = 0; i < kConnections; ++i) {
    auto r = conns[static_cast<size_t>(i)]->ReadResponse();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, std::to_string(i));
  }
  EXPECT_EQ(server_->open_connections(), static_cast<size_t>(kConnections));
}

}  // namespace
}  // namespace dtx::http
