#include "api/net_guard.h"

#include <boost/json.hpp>
#include <string>

#include "api/admin_routes.h"
#include "api/notify_routes.h"

// GCC 12 reports a false -Wmismatched-new-delete for Asio's awaitable frames (GCC bug 109224).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace dtx::api {

namespace json = boost::json;

namespace {

http::Response Refusal(int status, std::string_view code, std::string_view message) {
  http::Response r;
  r.status = status;
  json::object o{{"message", message}, {"code", code}};
  if (status == 404) o["dtm_result"] = "FAILURE";
  r.body = json::serialize(o);
  if (status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

Status Refused(std::string_view field, const Status& why) {
  return Status::InvalidArgument(std::string(field) + ": " + why.message());
}

}  // namespace

bool IsAdminPath(std::string_view path) { return AdminRoutes::Owns(path); }

bool IsProtectedApiPath(std::string_view path) {
  if (path.starts_with("/api/dtmsvr/") || path == "/api/dtmsvr") return true;
  return (path.starts_with("/api/dtx/") || path == "/api/dtx") && !IsAdminPath(path);
}

boost::asio::awaitable<http::Response> GuardedHandler::Handle(http::Request request) {
  const std::string_view path = request.path;
  const bool admin = IsAdminPath(path);
  if (role_ == ListenerRole::kApi && admin) {
    co_return Refusal(404, "NOT_FOUND",
                      "the admin API and console are served on the --admin-listen address");
  }
  if (role_ == ListenerRole::kAdmin && !admin && path != "/api/ping" && path != "/api/metrics") {
    co_return Refusal(404, "NOT_FOUND",
                      "this is the admin listener: only the admin API, the console, /api/ping and "
                      "/api/metrics are served here");
  }
  if (api_tokens_ != nullptr && !api_tokens_->empty() && IsProtectedApiPath(path) &&
      !api_tokens_->Authenticate(request.Header("authorization"))) {
    co_return Refusal(401, "UNAUTHENTICATED",
                      "a valid 'Authorization: Bearer TOKEN' header is required (--api-token)");
  }
  co_return co_await inner_.Handle(std::move(request));
}

Status CheckSnapshotUrls(const core::TransSnapshot& snap, const http::UrlPolicy& policy) {
  for (const core::BranchRow& row : snap.branches) {
    if (row.url.empty()) continue;  // an empty action is a success without a call
    if (Status s = policy.CheckUrl(row.url); !s.ok()) return Refused(row.op + " url", s);
  }
  if (!snap.global.query_prepared.empty()) {
    if (Status s = policy.CheckUrl(snap.global.query_prepared); !s.ok()) {
      return Refused("query_prepared", s);
    }
  }
  return Status::Ok();
}

Status CheckRowUrls(const std::vector<core::BranchRow>& rows, const http::UrlPolicy& policy) {
  for (const core::BranchRow& row : rows) {
    if (row.url.empty()) continue;
    if (Status s = policy.CheckUrl(row.url); !s.ok()) return Refused(row.op + " url", s);
  }
  return Status::Ok();
}

}  // namespace dtx::api
