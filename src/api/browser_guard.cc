#include "api/browser_guard.h"

#include <fmt/format.h>

#include "api/codec.h"

namespace dtx::api {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

http::Response Forbidden(std::string_view why) {
  http::Response r;
  r.status = 403;
  r.body = ErrorBody(fmt::format("cross-site browser request refused ({}); start dtx server with "
                                 "--allow-origin ORIGIN to allow a web page at ORIGIN",
                                 why),
                     "FORBIDDEN");
  return r;
}

}  // namespace

std::optional<http::Response> RefuseCrossSite(const http::Request& req,
                                              const std::vector<std::string>& allowed_origins) {
  const std::string origin = Lower(req.Header("Origin"));
  bool allowed = false;
  if (!origin.empty()) {
    for (const std::string& a : allowed_origins) {
      if (origin == Lower(a)) allowed = true;
    }
    const std::string host = Lower(req.Header("Host"));
    const bool own = !host.empty() && (origin == "http://" + host || origin == "https://" + host);
    if (!allowed && !own) return Forbidden(fmt::format("Origin {}", origin.substr(0, 200)));
  }
  const std::string site = Lower(req.Header("Sec-Fetch-Site"));
  if (!site.empty() && site != "same-origin" && site != "none" && !allowed) {
    return Forbidden(fmt::format("Sec-Fetch-Site {}", site.substr(0, 32)));
  }
  return std::nullopt;
}

}  // namespace dtx::api
