// The admin API's HTTP routes (issue 13) under /api/dtx/admin/: authentication (Bearer tokens,
// ops/auth.h), request decoding and JSON answers around ops::AdminService, which does the work.
//
//   GET  /api/dtx/admin/transactions?status=&trans_type=&gid_prefix=&stuck=1&resolved=0|1
//                                    &created_after=&created_before=&limit=&position=
//   GET  /api/dtx/admin/transactions/{gid}
//   POST /api/dtx/admin/transactions/{gid}/{retry|stop|abort|skip|resolve}
//        {"reason": "...", "expect_status": "submitted", "branch_id": "01", "op": "action"}
//   GET  /api/dtx/admin/notifications?status=&limit=&position=   (docs/notifications.md words)
//   GET  /api/dtx/admin/notifications/{id}
//   POST /api/dtx/admin/notifications/{id}/resend {"reason": "..."}
//   GET  /api/dtx/admin/audit?gid=&limit=&position=
//   GET  /api/dtx/admin/whoami
//   GET  /admin/  (the console's page and files, ops/console.h; no token needed to load them)
//
// No token configured: 403 on every admin route. A missing or wrong token: 401. Runs on the HTTP
// server's I/O threads and never blocks.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "http/server.h"
#include "ops/admin.h"
#include "ops/auth.h"

namespace dtx::api {

inline constexpr std::string_view kAdminPrefix = "/api/dtx/admin/";

class AdminRoutes {
 public:
  // Both must outlive the routes.
  AdminRoutes(ops::AdminService& service, const ops::TokenSet& tokens);

  // Whether `path` is an admin route (the API handler hands it over).
  static bool Owns(std::string_view path);
  // `api` is set to the route's name for metrics.
  boost::asio::awaitable<http::Response> Handle(const http::Request& request, std::string& api);

 private:
  boost::asio::awaitable<http::Response> Route(const http::Request& request, const std::string& who,
                                               std::string& api);
  static http::Response Console(const http::Request& request);
  boost::asio::awaitable<http::Response> Act(const http::Request& request, const std::string& who,
                                             std::string gid, std::string action);
  // /api/dtx/admin/notifications...; `parts` are the path's segments after the prefix.
  boost::asio::awaitable<http::Response> Notifications(const http::Request& request,
                                                       const std::string& who,
                                                       std::vector<std::string> parts,
                                                       std::string& api);

  ops::AdminService& service_;
  const ops::TokenSet& tokens_;
};

}  // namespace dtx::api
