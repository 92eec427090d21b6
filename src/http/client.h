// An asynchronous HTTP/1.1 client with a keep-alive connection pool per host:port, used by the
// coordinator to call participants. One Client belongs to one executor (one IoPool context) and
// must only be used from it; create one per context.
//
// Every request has a deadline covering connect, write and read. Errors are values:
//   kTimeout      the deadline passed
//   kUnavailable  connection refused/reset, DNS failure, or the per-host connection limit stayed
//   full
//                 until the deadline
//   kTooLarge     the response body exceeded max_response_bytes
//   kInvalidArgument  the URL is not http[s]://host[:port][/path][?query]
//   kUnavailable  also: the TLS handshake failed (the message says why, e.g. "certificate verify
//                 failed")
// https:// URLs are verified against ClientOptions::tls (or, when null, the system's trust store),
// host name included (SNI is sent for names); pooled connections are reused as for http.
// An HTTP answer of any status (200, 409, 500, ...) is a success at this level.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "http/server.h"
#include "http/tls.h"
#include "http/url_policy.h"
#include "util/status.h"

namespace dtx::http {

struct ClientOptions {
  size_t max_connections_per_host = 256;  // a request waits (within its deadline) for a free slot
  size_t max_idle_per_host = 64;          // kept-alive connections held for reuse
  size_t max_response_bytes = 4 * 1024 * 1024;
  int max_redirects = 10;  // 301/302/303/307/308 with Location are followed
  // A pooled connection idle longer than this is closed instead of reused: many servers close idle
  // connections after a while, and a request on such a connection would pay for a failed attempt.
  std::chrono::milliseconds max_idle{30'000};
  // Peer verification for https (MakeClientTlsContext); null = the system's trust store, built on
  // the first https request.
  std::shared_ptr<TlsContext> tls;
  // The SSRF guard (url_policy.h): checked on the URL of each request and of every redirect hop
  // (a refused redirect is not followed), and on every address a host resolves to before
  // connecting. A refusal is kInvalidArgument. Null = no checks.
  std::shared_ptr<const UrlPolicy> url_policy;
};

struct ClientRequest {
  std::string method = "GET";
  std::string url;  // http://host:port/path?query
  HeaderList headers;
  std::string body;
  std::chrono::milliseconds timeout{3000};
};

struct ClientResponse {
  int status = 0;
  std::string body;
  HeaderList headers;
};

struct ParsedUrl {
  bool tls = false;  // https
  std::string host;
  uint16_t port = 80;  // 443 by default for https
  std::string target;  // path + '?' + query, at least "/"
};
Result<ParsedUrl> ParseHttpUrl(std::string_view url);

class Client {
 public:
  Client(boost::asio::any_io_executor executor, ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  boost::asio::awaitable<Result<ClientResponse>> Send(ClientRequest request);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace dtx::http
