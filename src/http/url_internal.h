// URL helpers shared by the client's files (url.cc defines them); not part of the API.
#pragma once

#include <string>
#include <string_view>

#include "http/client.h"

namespace dtx::http::detail {

bool StartsWithNoCase(std::string_view s, std::string_view prefix);
// The Host header (and the authority of redirect targets): IPv6 literals in brackets, the port
// when it is not the scheme's default.
std::string Authority(const ParsedUrl& url);
// scheme://authority
std::string Origin(const ParsedUrl& url);
// The pool key: http and https connections to one host:port are different connections.
std::string HostKey(const ParsedUrl& url);
// A Location header relative to the URL that answered it.
std::string ResolveLocation(const ParsedUrl& base, std::string_view location);

}  // namespace dtx::http::detail
