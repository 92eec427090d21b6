// URLs of the HTTP client: parsing (ParseHttpUrl), the authority and pool key of a URL, and
// redirect targets. Split from client.cc.
#include <boost/beast/core/string.hpp>
#include <string>

#include "http/client.h"
#include "http/url_internal.h"

namespace dtx::http {

namespace beast = boost::beast;

namespace detail {

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && beast::iequals(s.substr(0, prefix.size()), prefix);
}

// The Host header (and the authority of redirect targets): IPv6 literals in brackets, port when
// not 80.
std::string Authority(const ParsedUrl& url) {
  std::string out;
  if (url.host.find(':') != std::string::npos) {
    out = "[" + url.host + "]";
  } else {
    out = url.host;
  }
  if (url.port != (url.tls ? 443 : 80)) out += ":" + std::to_string(url.port);
  return out;
}

std::string Origin(const ParsedUrl& url) {
  return (url.tls ? "https://" : "http://") + Authority(url);
}

// The pool key: http and https connections to one host:port are different connections.
std::string HostKey(const ParsedUrl& url) {
  return (url.tls ? "https:" : "http:") + url.host + ":" + std::to_string(url.port);
}

// A Location header relative to the URL that answered it.
std::string ResolveLocation(const ParsedUrl& base, std::string_view location) {
  if (StartsWithNoCase(location, "http://") || StartsWithNoCase(location, "https://")) {
    return std::string(location);
  }
  if (location.starts_with("//")) return (base.tls ? "https:" : "http:") + std::string(location);
  const std::string origin = Origin(base);
  if (location.starts_with("/")) return origin + std::string(location);
  const std::string_view target = base.target;
  const std::string_view path = target.substr(0, target.find('?'));
  if (location.starts_with("?")) return origin + std::string(path) + std::string(location);
  const size_t slash = path.rfind('/');
  return origin + std::string(path.substr(0, slash + 1)) + std::string(location);
}

}  // namespace detail

using detail::StartsWithNoCase;

Result<ParsedUrl> ParseHttpUrl(std::string_view url) {
  const bool tls = StartsWithNoCase(url, "https://");
  if (!tls && !StartsWithNoCase(url, "http://")) {
    return Status::InvalidArgument("url must start with http:// or https://: '" + std::string(url) +
                                   "'");
  }
  const std::string_view rest = url.substr(tls ? 8 : 7);
  const size_t authority_end = rest.find_first_of("/?#");
  const std::string_view authority = rest.substr(0, authority_end);
  std::string_view target =
      authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);
  target = target.substr(0, target.find('#'));  // a fragment is never sent

  ParsedUrl out;
  out.tls = tls;
  out.port = tls ? 443 : 80;
  if (authority.find('@') != std::string_view::npos) {
    return Status::InvalidArgument("credentials in the url are not supported: '" +
                                   std::string(url) + "'");
  }
  std::string_view port;
  if (authority.starts_with("[")) {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return Status::InvalidArgument("unterminated IPv6 literal in url: '" + std::string(url) +
                                     "'");
    }
    out.host = std::string(authority.substr(1, close - 1));
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') {
        return Status::InvalidArgument("bad authority in url: '" + std::string(url) + "'");
      }
      port = after.substr(1);
      if (port.empty()) {
        return Status::InvalidArgument("empty port in url: '" + std::string(url) + "'");
      }
    }
  } else {
    const size_t colon = authority.find(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) {
        return Status::InvalidArgument("empty port in url: '" + std::string(url) + "'");
      }
    }
  }
  if (out.host.empty()) {
    return Status::InvalidArgument("missing host in url: '" + std::string(url) + "'");
  }
  for (const char c : out.host) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7F || c == '/' || c == '\\' || c == '[' || c == ']') {
      return Status::InvalidArgument("bad host in url: '" + std::string(url) + "'");
    }
  }
  if (!port.empty()) {
    unsigned value = 0;
    for (const char c : port) {
      if (c < '0' || c > '9' || value > 65535) {
        return Status::InvalidArgument("bad port in url: '" + std::string(url) + "'");
      }
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value == 0 || value > 65535) {
      return Status::InvalidArgument("port out of range in url: '" + std::string(url) + "'");
    }
    out.port = static_cast<uint16_t>(value);
  }
  for (const char c : target) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7F) {
      return Status::InvalidArgument("the url path contains a space or control character: '" +
                                     std::string(url) + "'");
    }
  }
  if (target.empty()) {
    out.target = "/";
  } else if (target[0] == '?') {
    out.target = "/" + std::string(target);
  } else {
    out.target = std::string(target);
  }
  return out;
}

}  // namespace dtx::http
