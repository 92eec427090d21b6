// An asynchronous HTTP/1.1 server (Boost.Beast, C++20 coroutines). One coroutine per connection on
// an IoPool context, no thread per request; keep-alive; the handler is awaited per request.
//
// Limits (each answered explicitly, then the connection is closed where noted):
//   body larger than max_body_bytes       -> 413 {"message":...,"code":"TOO_LARGE"}, close
//   header larger than max_header_bytes   -> 431, close
//   malformed request / truncated body    -> 400, close
//   no complete request within read_timeout (a client that stalls) -> 408, close
//   more than max_connections open        -> the new connection gets 503 and is closed
// A connection that sends no byte of a request (a new one within read_timeout, a kept-alive one
// within idle_timeout) is closed without an answer; so is one that closes between requests.
//
// TLS (ServerOptions::tls): the same coroutine per connection over an ssl::stream; the handshake
// must finish within read_timeout.
//
// Thread-safety: Start/Stop from the controlling thread. The handler is called concurrently from
// every IoPool thread and must be thread-safe.
#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/tls.h"
#include "runtime/io_pool.h"
#include "util/status.h"

namespace dtx::http {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path plus query, as received
  std::string path;    // decoded-free path part of target
  std::string query;   // raw query string without '?'
  HeaderList headers;
  std::string body;

  // Case-insensitive header lookup; empty if absent.
  std::string_view Header(std::string_view name) const;
  // Percent-decoded value of the first query parameter `name`; nullopt if absent.
  std::optional<std::string> QueryParam(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  HeaderList headers;
};

class Handler {
 public:
  virtual ~Handler() = default;
  // Called on an IoPool thread; must not block. Exceptions escaping it become a 500.
  virtual boost::asio::awaitable<Response> Handle(Request request) = 0;
};

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;                        // 0 = pick a free port (see Server::port())
  size_t max_body_bytes = 4 * 1024 * 1024;  // larger bodies get 413
  size_t max_header_bytes = 64 * 1024;
  std::chrono::milliseconds read_timeout{10'000};  // for one whole request, headers and body
  std::chrono::milliseconds write_timeout{10'000};
  std::chrono::milliseconds idle_timeout{60'000};  // keep-alive connection without a request
  size_t max_connections = 10'000;
  // Serve HTTPS with this context (MakeServerTlsContext); null = plain HTTP. The handshake counts
  // against read_timeout; a connection beyond max_connections is answered 503 after it.
  std::shared_ptr<TlsContext> tls;
};

class Server {
 public:
  Server(runtime::IoPool& pool, ServerOptions options, Handler& handler);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts accepting. Fails with a clear message if the address is in use or invalid.
  Status Start();
  // The bound port (after Start).
  uint16_t port() const;
  // Stops accepting and closes open connections; handlers still running are cancelled (their
  // pending asynchronous operation completes with operation_aborted). When called from the
  // controlling thread while the pool runs, waits (up to 5 s) until every connection coroutine has
  // finished. Idempotent. Stop (or destroy) the Server before stopping the IoPool.
  void Stop();
  size_t open_connections() const;
  // Connections accepted since Start, including those answered 503 (for metrics and tests).
  uint64_t accepted_connections() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// Percent-decoding of a query component ('+' is a space). Used by Request::QueryParam.
std::string UrlDecode(std::string_view s);
// RFC 9110: a token (method, header name) and a header field value (no CR, LF or NUL). Used by the
// server and client to refuse header injection, and by the API to validate branch_headers.
bool IsHttpToken(std::string_view s);
bool IsHttpFieldValue(std::string_view s);
// Stricter, for header values that callers hand to dtx to send (branch_headers, the SDK's
// extra_headers): no control character at all except horizontal tab (what Go's net/http accepts).
bool IsPlainHeaderValue(std::string_view s);
// Headers a caller may not set on a request dtx sends: Host (it would aim the request at another
// virtual host than its URL) and the hop-by-hop and framing headers of RFC 9110 §7.6.1 (connection
// management and framing belong to dtx's client). Case-insensitive.
bool IsReservedRequestHeader(std::string_view name);
std::string UrlEncode(std::string_view s);

}  // namespace dtx::http
