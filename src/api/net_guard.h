// Network guards of the API (issue 13 item 6), in front of and beside ApiHandler:
//   GuardedHandler  one listener's view of the routes: with --admin-listen the main listener
//                   answers 404 for the admin API and console and the admin listener serves only
//                   those (plus /api/ping and /api/metrics); with --api-token the DTM routes
//                   (/api/dtmsvr/*, /api/dtx/* except the admin API) need
//                   "Authorization: Bearer TOKEN" (401 otherwise). Tokens are compared in
//                   constant time (ops::TokenSet) and never logged.
//   Check*Urls      the SSRF guard (http::UrlPolicy, --branch-url-allow) on what a request would
//                   store: branch URLs and query_prepared of submit/prepare/registerBranch, the
//                   subscriber of subscribe, the url and query_prepared of a notification. 400
//                   before anything is stored.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <string_view>

#include "core/model.h"
#include "http/server.h"
#include "http/url_policy.h"
#include "ops/auth.h"

namespace dtx::api {

enum class ListenerRole {
  kAll,    // one listener for everything (no --admin-listen)
  kApi,    // the main listener when --admin-listen is set: no admin API, no console
  kAdmin,  // the --admin-listen listener: the admin API, the console, ping and metrics
};

class GuardedHandler final : public http::Handler {
 public:
  // `api_tokens` may be null or empty (the DTM routes are open). Both must outlive the handler.
  GuardedHandler(http::Handler& inner, ListenerRole role, const ops::TokenSet* api_tokens)
      : inner_(inner), role_(role), api_tokens_(api_tokens) {}
  boost::asio::awaitable<http::Response> Handle(http::Request request) override;

 private:
  http::Handler& inner_;
  ListenerRole role_;
  const ops::TokenSet* api_tokens_;
};

// Whether `path` belongs to the admin API or the console.
bool IsAdminPath(std::string_view path);
// Whether `path` is a DTM-protocol route that --api-token protects.
bool IsProtectedApiPath(std::string_view path);

// kInvalidArgument naming the field when a URL of the transaction is refused.
Status CheckSnapshotUrls(const core::TransSnapshot& snapshot, const http::UrlPolicy& policy);
// The branch rows of a registerBranch.
Status CheckRowUrls(const std::vector<core::BranchRow>& rows, const http::UrlPolicy& policy);

}  // namespace dtx::api
