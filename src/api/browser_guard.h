// Refusal of browser cross-site requests (issue 13, found by a security probe): a web page the
// operator visits must not be able to drive a coordinator it can reach (a text/plain POST needs no
// CORS preflight). Browsers say where a request comes from (Origin, Sec-Fetch-Site); clients that
// are not browsers (the SDKs, curl, the dtx CLI) send neither and are not affected.
//
// A request is refused when Sec-Fetch-Site is present and is neither "same-origin" nor "none", or
// when Origin is present and is neither the server's own origin (scheme://Host) nor one of the
// allowed origins (--allow-origin). An allowed origin also passes the Sec-Fetch-Site check.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "http/server.h"

namespace dtx::api {

// nullopt: let the request through; else the 403 answer.
std::optional<http::Response> RefuseCrossSite(const http::Request& request,
                                              const std::vector<std::string>& allowed_origins);

}  // namespace dtx::api
