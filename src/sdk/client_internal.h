// dtx::Client's implementation (include/dtx/client.h), shared with the SDK's other calls to the
// coordinator (dtx::Notification posts to /api/dtx/notify through it, so it carries the same
// extra headers and TLS settings). One http::Client — keep-alive, https verified against the
// system's trust store plus ClientOptions::ca_file — on a private io_context that the calling
// thread runs for one exchange at a time (`mu`). Not for use from an Asio I/O thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "dtx/client.h"
#include "http/client.h"

namespace dtx {

namespace sdk_internal {
// An HTTP answer of the coordinator.
struct ClientAnswer {
  int status = 0;
  std::string body;
};

// The Status of a coordinator's answer other than 200 (PROTOCOL.md §2.1; include/dtx/client.h
// lists the mapping), the message prefixed with `context` + ": " when `context` is not empty:
// 409 kConflict, 425 kOngoing, 400 kInvalidArgument, 404 kNotFound, 413 kTooLarge, 503
// kUnavailable; 401 and 403 kInvalidArgument (the request as configured is refused: no or a wrong
// API token; not retryable until the client's options change); anything else kInternal. 401, 403
// and the others carry an ErrorInfo: the server's error code (or HTTP_<status>) as the reason and
// the fact http_status. Used by Client, Notification and the TCC branch registration.
Status StatusOfAnswer(int http_status, const std::string& body, std::string_view context = {});
}  // namespace sdk_internal

inline constexpr size_t kMaxClientExtraHeaders = 64;
inline constexpr size_t kMaxClientHeaderBytes = 8 * 1024;  // one header's name + value

struct Client::Impl {
  using Answer = sdk_internal::ClientAnswer;

  // Parses the server URL and checks the options; a problem is kept in `config_status` and
  // returned by every Exchange.
  Impl(const std::string& server_url, ClientOptions options);
  ~Impl();

  // One exchange with the coordinator. `target` is the path from the server's root
  // ("/api/dtmsvr/submit", "/api/dtx/notify"), with its query. Any HTTP status is a success here;
  // transport failures are kUnavailable/kTimeout/kTooLarge, bad options kInvalidArgument.
  // `timeout` 0: options.request_timeout.
  Result<Answer> Exchange(std::string_view method, const std::string& target, std::string body,
                          std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  // POST base_target/<op> whose only good answer is 200 {"dtm_result":"SUCCESS"} (PROTOCOL.md
  // §2.1).
  Status Post(std::string_view op, const std::string& body,
              std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  // The coordinator's root target: base_target without its "/api/dtmsvr" ("" for the usual URL),
  // where the dtx extension routes (/api/dtx/...) live.
  std::string RootTarget() const;

  ClientOptions options;
  Status config_status;
  std::string origin;        // "https://host:port"
  std::string base_target;   // "/api/dtmsvr", no trailing '/'
  http::HeaderList headers;  // Content-Type, User-Agent and the extra headers

  std::mutex mu;  // one exchange at a time; guards ioc and http
  boost::asio::io_context ioc{1};
  std::unique_ptr<http::Client> http;  // on ioc; destroyed before it
};

// The SDK's access to a Client's connection (friend of Client).
struct ClientInternals {
  static Client::Impl& Of(Client& client) { return *client.impl_; }
};

// Checks one of ClientOptions::extra_headers: kInvalidArgument naming the header.
Status CheckExtraHeader(std::string_view name, std::string_view value);

}  // namespace dtx
