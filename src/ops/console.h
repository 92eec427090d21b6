// The admin console's assets (issue 13), compiled into the binary from src/ops/console/ (plain
// HTML, JavaScript and CSS; no CDN, nothing fetched at run time). Served at /admin/ by the admin
// routes (api/admin_routes.cc); the page itself talks to the admin API with the operator's token.
#pragma once

#include <string_view>

namespace dtx::ops {

struct ConsoleAsset {
  std::string_view path;          // "/admin/app.js"; "/admin/" is the page
  std::string_view content_type;  // with charset
  std::string_view body;
};

// The asset served at `path` ("/admin" and "/admin/" are the page), or nullptr.
const ConsoleAsset* FindConsoleAsset(std::string_view path);

}  // namespace dtx::ops
