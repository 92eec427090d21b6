// Which participant URLs the coordinator may call (the SSRF guard of `--branch-url-allow`,
// issue 13). Patterns:
//   host             a name (any port), case-insensitive: payments.internal
//   host:port        a name or an IP address on one port: payments.internal:8080, 10.0.0.7:80,
//                    [fd00::7]:8080
//   *.suffix         any name below suffix (not suffix itself), any port: *.svc.cluster.local
//                    (*.suffix:port: on one port)
//   CIDR             addresses (any port): 10.0.0.0/8, 192.168.1.7/32, fd00::/8, [fd00::]/8
//   an IP address    that address (any port): 10.0.0.7, ::1
//
// The checks:
//   CheckUrl/CheckTarget (when a request names a URL, and before every call and redirect hop):
//     with patterns, a URL whose host is a name must match a name pattern, one whose host is an
//     IP address a CIDR or address pattern; without patterns every host passes, except:
//   always: an IP address in the link-local ranges 169.254.0.0/16 and fe80::/10 (cloud metadata
//     services live there) is refused unless a CIDR or address pattern contains it.
//   CheckAddress (at connect time, for every address a name resolved to — DNS rebinding):
//     link-local as above; and, with patterns, an address in a non-public range (loopback,
//     private, unique-local, CGNAT, unspecified, multicast) is refused unless a CIDR or address
//     pattern contains it: a name admitted by a name pattern cannot be pointed at an internal
//     address afterwards.
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are checked as the IPv4 address. Immutable after
// Parse; thread-safe.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace dtx::http {

struct ParsedUrl;

class UrlPolicy {
 public:
  // kInvalidArgument naming the first bad pattern. An empty list is a policy with no patterns
  // (only the link-local rule applies).
  static Result<std::shared_ptr<const UrlPolicy>> Parse(const std::vector<std::string>& patterns);

  bool restricted() const { return !names_.empty() || !nets_.empty(); }

  // A URL as given in a request: kInvalidArgument "... is not allowed by --branch-url-allow ..."
  // when refused (or when it is not an http(s) URL).
  Status CheckUrl(std::string_view url) const;
  // The same for a parsed URL.
  Status CheckTarget(const ParsedUrl& url) const;
  // An address `url`'s host resolved to (or the host itself when it is an address).
  Status CheckAddress(const ParsedUrl& url, const boost::asio::ip::address& address) const;

 private:
  struct NamePattern {
    std::string name;  // lower case; for a wildcard the suffix with its leading dot
    bool wildcard = false;
    uint16_t port = 0;  // 0 = any
  };
  struct NetPattern {
    boost::asio::ip::address network;
    unsigned prefix = 0;
    uint16_t port = 0;  // 0 = any (only exact addresses with a port set it)
  };
  bool NetAllows(const boost::asio::ip::address& a, uint16_t port) const;

  std::vector<NamePattern> names_;
  std::vector<NetPattern> nets_;
};

// Whether `a` (IPv4-mapped unwrapped) is in 169.254.0.0/16 or fe80::/10.
bool IsLinkLocal(const boost::asio::ip::address& a);
// Loopback, private (RFC 1918), CGNAT 100.64/10, unique-local fc00::/7, unspecified, multicast,
// link-local, 0.0.0.0/8: addresses a public name has no business resolving to.
bool IsNonPublic(const boost::asio::ip::address& a);

}  // namespace dtx::http
