// The coordinator's HTTP API (PROTOCOL.md §2.3): routing, request validation (via codec.h, before
// anything is persisted), the engine calls, and the mapping of Status codes to DTM's envelope and
// dtx's stricter 4xx codes (§2.1, §5 #9). Runs on the HTTP server's I/O threads and never blocks.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <string>
#include <vector>

#include "api/admin_routes.h"
#include "api/codec.h"
#include "engine/engine.h"
#include "http/server.h"
#include "http/url_policy.h"
#include "ops/metrics.h"

namespace dtx::api {

inline constexpr const char* kVersion = "dtx-0.1.0";
inline constexpr const char* kDtmCompatVersion = "v1.19.0";

class ApiHandler final : public http::Handler {
 public:
  ApiHandler(engine::Engine& engine, ops::Metrics& metrics);
  boost::asio::awaitable<http::Response> Handle(http::Request request) override;
  // Hands /api/dtx/admin/ to the admin routes (issue 13); unset, those paths answer 404. Set before
  // the server starts.
  void SetAdmin(AdminRoutes* admin) { admin_ = admin; }
  // Origins whose web pages may call this server (browser_guard.h); others are refused with 403.
  void SetAllowedOrigins(std::vector<std::string> origins) {
    allowed_origins_ = std::move(origins);
  }
  // The SSRF guard of --branch-url-allow (net_guard.h): URLs a request would store are checked
  // against it (400 before anything is stored). Null = no check. Set before the server starts.
  void SetUrlPolicy(std::shared_ptr<const http::UrlPolicy> policy) {
    url_policy_ = std::move(policy);
  }

 private:
  boost::asio::awaitable<http::Response> Route(const http::Request& request, std::string& api);

  engine::Engine& engine_;
  ops::Metrics& metrics_;
  AdminRoutes* admin_ = nullptr;
  std::vector<std::string> allowed_origins_;
  std::shared_ptr<const http::UrlPolicy> url_policy_;
};

// Maps a non-ok Status to the HTTP answer of §2.1 (409 FAILURE, 425 ONGOING, 400, 404, 413, 501,
// 503, 500).
http::Response ErrorResponse(const Status& status, std::string_view gid = {});

}  // namespace dtx::api
