#include "ops/auth.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace dtx::ops {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

bool ValidName(std::string_view n) {
  if (n.empty() || n.size() > 64) return false;
  for (char c : n) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '@' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool ValidToken(std::string_view t) {
  if (t.size() < kMinAdminTokenBytes || t.size() > kMaxAdminTokenBytes) return false;
  for (char c : t) {
    if (c <= ' ' || c > '~') return false;
  }
  return true;
}

}  // namespace

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  // Walks the longer length whatever the contents; a length difference is folded in too.
  const size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff = static_cast<unsigned char>(diff | (x ^ y));
  }
  // volatile: keep the compiler from turning the loop into an early-exit comparison.
  volatile unsigned char result = diff;
  return result == 0;
}

Status TokenSet::Add(std::string_view spec) {
  spec = Trim(spec);
  const size_t eq = spec.find('=');
  if (eq == std::string_view::npos) {
    return Status::InvalidArgument("an admin token must be given as NAME=TOKEN");
  }
  const std::string_view name = Trim(spec.substr(0, eq));
  const std::string_view token = Trim(spec.substr(eq + 1));
  if (!ValidName(name)) {
    return Status::InvalidArgument(
        "admin token NAME must be 1-64 characters of A-Z a-z 0-9 _ . @ -");
  }
  if (!ValidToken(token)) {
    return Status::InvalidArgument(
        fmt::format("admin token '{}': the token must be {}-{} printable characters without spaces",
                    name, kMinAdminTokenBytes, kMaxAdminTokenBytes));
  }
  for (const Entry& e : tokens_) {
    if (e.name == name) {
      return Status::InvalidArgument(fmt::format("admin token '{}' is given twice", name));
    }
  }
  if (tokens_.size() >= kMaxAdminTokens) {
    return Status::InvalidArgument(fmt::format("at most {} admin tokens", kMaxAdminTokens));
  }
  tokens_.push_back(Entry{std::string(name), std::string(token)});
  return Status::Ok();
}

Status TokenSet::AddList(std::string_view specs) {
  while (!specs.empty()) {
    const size_t comma = specs.find(',');
    std::string_view one = specs.substr(0, comma);
    if (!Trim(one).empty()) {
      if (Status s = Add(one); !s.ok()) return s;
    }
    if (comma == std::string_view::npos) break;
    specs.remove_prefix(comma + 1);
  }
  return Status::Ok();
}

Status TokenSet::AddFile(const std::string& path) {
  errno = 0;
  std::ifstream in(path);
  if (!in) {
    return Status::InvalidArgument(fmt::format("cannot read admin token file '{}': {}", path,
                                               errno ? std::strerror(errno) : "unreadable"));
  }
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    std::string_view l = Trim(line);
    if (l.empty() || l.front() == '#') continue;
    if (Status s = Add(l); !s.ok()) {
      return Status::InvalidArgument(fmt::format("{}:{}: {}", path, line_no, s.message()));
    }
  }
  if (in.bad()) return Status::InvalidArgument(fmt::format("error reading '{}'", path));
  return Status::Ok();
}

std::optional<std::string> TokenSet::Authenticate(std::string_view authorization) const {
  authorization = Trim(authorization);
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.size() <= kBearer.size()) return std::nullopt;
  // The scheme is case-insensitive (RFC 9110 §11.1).
  for (size_t i = 0; i < kBearer.size() - 1; ++i) {
    if (std::tolower(static_cast<unsigned char>(authorization[i])) !=
        std::tolower(static_cast<unsigned char>(kBearer[i]))) {
      return std::nullopt;
    }
  }
  if (authorization[kBearer.size() - 1] != ' ') return std::nullopt;
  const std::string_view presented = Trim(authorization.substr(kBearer.size()));
  const Entry* match = nullptr;
  for (const Entry& e : tokens_) {  // no early exit: every token is compared
    if (ConstantTimeEquals(presented, e.token) && match == nullptr) match = &e;
  }
  if (match == nullptr) return std::nullopt;
  return match->name;
}

}  // namespace dtx::ops
