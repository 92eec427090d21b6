// Test helpers shared by server_test.cc and client_test.cc: a handler with a few endpoints and a
// raw blocking TCP client (POSIX sockets with poll-bounded reads) to send exactly the bytes a test
// wants. Test-only; not part of dtx_http.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cctype>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#include "http/server.h"

namespace dtx::http::testing {

using namespace std::chrono_literals;

// Endpoints:
//   /echo             body = request body; X-Method, X-Path, X-Query, X-Header (= header X-Test)
//   /query            "<a>|<b>|<missing?>" from the query parameters
//   /throw            throws
//   /slow?ms=N        waits N ms on a timer, tracks concurrency
//   /redirect?code=C&to=T   answers C (default 302) with Location T (default /echo)
//   /status?code=C    answers C with a body (a handler that returns a bad status)
//   /loop             redirects to itself
//   /big?n=N          N bytes of 'x'
class TestHandler : public Handler {
 public:
  boost::asio::awaitable<Response> Handle(Request request) override {
    ++calls;
    if (server != nullptr) Max(max_open, server->open_connections());
    Response r;
    if (request.path == "/echo") {
      r.content_type = "text/plain";
      r.body = request.body;
      r.headers = {{"X-Method", request.method},
                   {"X-Path", request.path},
                   {"X-Query", request.query},
                   {"X-Header", std::string(request.Header("x-test"))}};
    } else if (request.path == "/query") {
      r.body = request.QueryParam("a").value_or("<none>") + "|" +
               request.QueryParam("b").value_or("<none>") + "|" +
               (request.QueryParam("missing") ? "present" : "absent");
    } else if (request.path == "/throw") {
      throw std::runtime_error("boom \"quoted\"");
    } else if (request.path == "/slow") {
      const int ms = std::stoi(request.QueryParam("ms").value_or("100"));
      const int now = ++in_flight;
      Max(max_in_flight, static_cast<size_t>(now));
      boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
      timer.expires_after(std::chrono::milliseconds(ms));
      try {
        co_await timer.async_wait(boost::asio::use_awaitable);
      } catch (...) {
        --in_flight;
        throw;
      }
      --in_flight;
      r.body = "slept";
    } else if (request.path == "/redirect") {
      r.status = std::stoi(request.QueryParam("code").value_or("302"));
      r.headers = {{"Location", request.QueryParam("to").value_or("/echo")}};
    } else if (request.path == "/status") {
      r.status = std::stoi(request.QueryParam("code").value_or("200"));
      r.body = "status body";
    } else if (request.path == "/loop") {
      r.status = 302;
      r.headers = {{"Location", "/loop"}};
    } else if (request.path == "/big") {
      r.body.assign(std::stoul(request.QueryParam("n").value_or("0")), 'x');
    } else {
      r.status = 404;
      r.body = R"({"message":"not found"})";
    }
    co_return r;
  }

  static void Max(std::atomic<size_t>& target, size_t value) {
    size_t seen = target.load();
    while (value > seen && !target.compare_exchange_weak(seen, value)) {
    }
  }

  Server* server = nullptr;
  std::atomic<size_t> calls{0};
  std::atomic<int> in_flight{0};
  std::atomic<size_t> max_in_flight{0};
  std::atomic<size_t> max_open{0};
};

struct RawResponse {
  int status = 0;
  std::string head;  // status line and headers
  std::string body;

  // Case-insensitive header lookup; empty if absent.
  std::string Header(std::string_view name) const {
    size_t pos = head.find("\r\n");
    while (pos != std::string::npos && pos + 2 < head.size()) {
      const size_t start = pos + 2;
      const size_t end = head.find("\r\n", start);
      const std::string_view line(head.data() + start,
                                  (end == std::string::npos ? head.size() : end) - start);
      const size_t colon = line.find(':');
      if (colon != std::string_view::npos && colon == name.size() &&
          std::equal(name.begin(), name.end(), line.begin(), [](char a, char b) {
            return std::tolower(static_cast<unsigned char>(a)) ==
                   std::tolower(static_cast<unsigned char>(b));
          })) {
        std::string_view value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        return std::string(value);
      }
      pos = end;
    }
    return {};
  }
};

// A blocking client on 127.0.0.1 whose reads are bounded by poll().
class RawConn {
 public:
  explicit RawConn(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~RawConn() { Close(); }
  RawConn(const RawConn&) = delete;
  RawConn& operator=(const RawConn&) = delete;

  bool connected() const { return fd_ >= 0; }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  void ShutdownWrite() { ::shutdown(fd_, SHUT_WR); }

  bool Send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // One response, framed by Content-Length (no body when absent). nullopt on EOF, error or timeout.
  std::optional<RawResponse> ReadResponse(std::chrono::milliseconds timeout = 5000ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    size_t header_end;
    while ((header_end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill(deadline)) return std::nullopt;
    }
    RawResponse r;
    r.head = buf_.substr(0, header_end);
    if (r.head.size() < 12 || r.head.compare(0, 5, "HTTP/") != 0) return std::nullopt;
    r.status = std::stoi(r.head.substr(9, 3));
    const std::string length = r.Header("content-length");
    const size_t body_size = length.empty() || head_only_ ? 0 : std::stoul(length);
    while (buf_.size() < header_end + 4 + body_size) {
      if (!Fill(deadline)) return std::nullopt;
    }
    r.body = buf_.substr(header_end + 4, body_size);
    buf_.erase(0, header_end + 4 + body_size);
    return r;
  }

  // True when the server closes the connection (EOF or reset) within timeout. Data is discarded.
  bool WaitClosed(std::chrono::milliseconds timeout = 5000ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (Fill(deadline)) {
    }
    return closed_;
  }

  void set_head_only(bool v) { head_only_ = v; }
  const std::string& buffered() const { return buf_; }

 private:
  // Reads some bytes; false on EOF/error (closed_ = true) or timeout.
  bool Fill(std::chrono::steady_clock::time_point deadline) {
    if (fd_ < 0) {
      closed_ = true;
      return false;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char chunk[65536];
    const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n <= 0) {
      closed_ = true;
      return false;
    }
    buf_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  std::string buf_;
  bool closed_ = false;
  bool head_only_ = false;
};

// A port on 127.0.0.1 with nothing listening (bound, then closed).
inline uint16_t ClosedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// Polls `condition` until it holds or `timeout` passes.
template <class F>
bool WaitFor(F condition, std::chrono::milliseconds timeout = 5000ms) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

}  // namespace dtx::http::testing
