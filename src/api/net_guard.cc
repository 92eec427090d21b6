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

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
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

Status CheckNotifyUrls(std::string_view body, const http::UrlPolicy& policy) {
  boost::system::error_code ec;
  const json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) return Status::Ok();
  for (const auto& [key, value] : v.get_object()) {
    if (!value.is_string() || value.get_string().empty()) continue;
    if (IEquals(key, "url") || IEquals(key, "query_prepared")) {
      if (Status s = policy.CheckUrl(std::string_view(value.get_string())); !s.ok()) {
        return Refused(key, s);
      }
    }
  }
  return Status::Ok();
}

}  // namespace dtx::api
