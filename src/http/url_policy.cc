#include "http/url_policy.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>

#include "http/client.h"

namespace dtx::http {

namespace ip = boost::asio::ip;

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool ValidName(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
  });
}

// ::ffff:a.b.c.d as a.b.c.d; everything else unchanged.
ip::address Unmapped(const ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return ip::make_address_v4(ip::v4_mapped, a.to_v6());
  }
  return a;
}

// Whether the first `prefix` bits of `a` and `network` agree (same family).
bool InNet(const ip::address& a, const ip::address& network, unsigned prefix) {
  if (a.is_v4() != network.is_v4()) return false;
  std::array<unsigned char, 16> x{};
  std::array<unsigned char, 16> y{};
  size_t n = 0;
  if (a.is_v4()) {
    const auto ax = a.to_v4().to_bytes();
    const auto ny = network.to_v4().to_bytes();
    std::copy(ax.begin(), ax.end(), x.begin());
    std::copy(ny.begin(), ny.end(), y.begin());
    n = 4;
  } else {
    x = a.to_v6().to_bytes();
    y = network.to_v6().to_bytes();
    n = 16;
  }
  for (size_t i = 0; i < n && prefix > 0; ++i) {
    const unsigned bits = std::min(prefix, 8u);
    const auto mask = static_cast<unsigned char>(0xFF << (8 - bits));
    if ((x[i] & mask) != (y[i] & mask)) return false;
    prefix -= bits;
  }
  return true;
}

bool InNet(const ip::address& a, std::string_view network, unsigned prefix) {
  return InNet(a, ip::make_address(std::string(network)), prefix);
}

Result<uint16_t> ParsePort(std::string_view p, std::string_view pattern) {
  unsigned v = 0;
  if (p.empty() || p.size() > 5) {
    return Status::InvalidArgument(
        fmt::format("--branch-url-allow: bad pattern '{}': bad port", pattern));
  }
  for (char c : p) {
    if (c < '0' || c > '9') {
      return Status::InvalidArgument(
          fmt::format("--branch-url-allow: bad pattern '{}': bad port", pattern));
    }
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v == 0 || v > 65535) {
    return Status::InvalidArgument(
        fmt::format("--branch-url-allow: bad pattern '{}': port out of range", pattern));
  }
  return static_cast<uint16_t>(v);
}

}  // namespace

bool IsLinkLocal(const ip::address& raw) {
  const ip::address a = Unmapped(raw);
  return a.is_v4() ? InNet(a, "169.254.0.0", 16) : InNet(a, "fe80::", 10);
}

bool IsNonPublic(const ip::address& raw) {
  const ip::address a = Unmapped(raw);
  if (a.is_unspecified() || a.is_loopback() || a.is_multicast() || IsLinkLocal(a)) return true;
  if (a.is_v4()) {
    return InNet(a, "0.0.0.0", 8) || InNet(a, "10.0.0.0", 8) || InNet(a, "172.16.0.0", 12) ||
           InNet(a, "192.168.0.0", 16) || InNet(a, "100.64.0.0", 10) || InNet(a, "127.0.0.0", 8);
  }
  return InNet(a, "fc00::", 7);
}

Result<std::shared_ptr<const UrlPolicy>> UrlPolicy::Parse(
    const std::vector<std::string>& patterns) {
  auto policy = std::make_shared<UrlPolicy>();
  for (const std::string& raw : patterns) {
    const std::string_view p = raw;
    auto bad = [&](std::string_view why) {
      return Status::InvalidArgument(
          fmt::format("--branch-url-allow: bad pattern '{}': {}", raw, why));
    };
    boost::system::error_code ec;
    if (const size_t slash = p.find('/'); slash != std::string_view::npos) {  // CIDR
      std::string_view addr = p.substr(0, slash);
      if (addr.size() >= 2 && addr.front() == '[' && addr.back() == ']') {
        addr = addr.substr(1, addr.size() - 2);
      }
      const ip::address network = ip::make_address(std::string(addr), ec);
      if (ec) return bad("not an IP address before '/'");
      const std::string_view len = p.substr(slash + 1);
      unsigned prefix = 0;
      if (len.empty() || len.size() > 3 ||
          !std::all_of(len.begin(), len.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return bad("the prefix length must be a number");
      }
      prefix = static_cast<unsigned>(std::stoul(std::string(len)));
      if (prefix > (network.is_v4() ? 32u : 128u)) return bad("prefix length too long");
      policy->nets_.push_back({Unmapped(network), prefix, 0});
      continue;
    }
    if (p.starts_with("[")) {  // [v6] or [v6]:port
      const size_t close = p.find(']');
      if (close == std::string_view::npos) return bad("unterminated '['");
      const ip::address a = ip::make_address(std::string(p.substr(1, close - 1)), ec);
      if (ec) return bad("not an IPv6 address in brackets");
      uint16_t port = 0;
      if (close + 1 < p.size()) {
        if (p[close + 1] != ':') return bad("expected ':' after ']'");
        auto parsed = ParsePort(p.substr(close + 2), raw);
        if (!parsed.ok()) return parsed.status();
        port = *parsed;
      }
      policy->nets_.push_back({Unmapped(a), a.is_v4() ? 32u : 128u, port});
      continue;
    }
    if (const ip::address a = ip::make_address(raw, ec); !ec) {  // a bare address (v4 or v6)
      policy->nets_.push_back({Unmapped(a), Unmapped(a).is_v4() ? 32u : 128u, 0});
      continue;
    }
    std::string_view host = p;
    uint16_t port = 0;
    if (const size_t colon = p.rfind(':'); colon != std::string_view::npos) {
      auto parsed = ParsePort(p.substr(colon + 1), raw);
      if (!parsed.ok()) return parsed.status();
      port = *parsed;
      host = p.substr(0, colon);
    }
    if (const ip::address a = ip::make_address(std::string(host), ec); !ec && a.is_v4()) {
      policy->nets_.push_back({a, 32u, port});
      continue;
    }
    NamePattern np;
    np.port = port;
    if (host.starts_with("*.")) {
      np.wildcard = true;
      host.remove_prefix(1);  // keeps the dot: ".suffix"
      if (!ValidName(host.substr(1))) return bad("not a host name after '*.'");
    } else if (!ValidName(host)) {
      return bad("not a host name, host:port, *.suffix, IP address or CIDR");
    }
    np.name = Lower(host);
    policy->names_.push_back(std::move(np));
  }
  return std::shared_ptr<const UrlPolicy>(std::move(policy));
}

bool UrlPolicy::NetAllows(const ip::address& raw, uint16_t port) const {
  const ip::address a = Unmapped(raw);
  return std::any_of(nets_.begin(), nets_.end(), [&](const NetPattern& n) {
    return (n.port == 0 || n.port == port) && InNet(a, n.network, n.prefix);
  });
}

Status UrlPolicy::CheckUrl(std::string_view url) const {
  auto parsed = ParseHttpUrl(url);
  if (!parsed.ok()) return parsed.status();
  return CheckTarget(*parsed);
}

Status UrlPolicy::CheckTarget(const ParsedUrl& url) const {
  boost::system::error_code ec;
  const ip::address a = ip::make_address(url.host, ec);
  if (!ec) {
    if (IsLinkLocal(a) && !NetAllows(a, url.port)) {
      return Status::InvalidArgument(fmt::format(
          "url host {} is a link-local address (cloud metadata range): refused unless a "
          "--branch-url-allow CIDR contains it",
          url.host));
    }
    if (restricted() && !NetAllows(a, url.port)) {
      return Status::InvalidArgument(fmt::format(
          "url host {} port {} is not allowed by --branch-url-allow", url.host, url.port));
    }
    return Status::Ok();
  }
  if (!restricted()) return Status::Ok();
  const std::string host = Lower(url.host);
  const bool allowed = std::any_of(names_.begin(), names_.end(), [&](const NamePattern& n) {
    if (n.port != 0 && n.port != url.port) return false;
    if (!n.wildcard) return host == n.name;
    return host.size() > n.name.size() && host.ends_with(n.name);
  });
  if (!allowed) {
    return Status::InvalidArgument(fmt::format(
        "url host {} port {} is not allowed by --branch-url-allow", url.host, url.port));
  }
  return Status::Ok();
}

Status UrlPolicy::CheckAddress(const ParsedUrl& url, const ip::address& address) const {
  if (NetAllows(address, url.port)) return Status::Ok();
  if (IsLinkLocal(address)) {
    return Status::InvalidArgument(fmt::format(
        "{} resolves to the link-local address {} (cloud metadata range): refused unless a "
        "--branch-url-allow CIDR contains it",
        url.host, address.to_string()));
  }
  boost::system::error_code ec;
  ip::make_address(url.host, ec);
  const bool is_name = static_cast<bool>(ec);
  if (restricted() && is_name && IsNonPublic(address)) {
    return Status::InvalidArgument(fmt::format(
        "{} resolves to the non-public address {}: refused unless a --branch-url-allow CIDR "
        "contains it",
        url.host, address.to_string()));
  }
  return Status::Ok();
}

}  // namespace dtx::http
