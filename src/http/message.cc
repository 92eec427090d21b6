// Request helpers, URL coding, and the server's message helpers (error bodies, the response head,
// the Request built from a parsed message). Split from server.cc, which keeps the connections.
#include <spdlog/spdlog.h>

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/status.hpp>
#include <charconv>

#include "http/server.h"
#include "http/server_internal.h"

namespace dtx::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using ErrorCode = boost::system::error_code;

// ---------------------------------------------------------------------------------------------------
// Request helpers and URL coding.

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string UrlDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 && HexValue(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2])));
      i += 2;
    } else {
      out.push_back(c);  // a stray '%' is kept as is
    }
  }
  return out;
}

std::string UrlEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') || (u >= '0' && u <= '9') || u == '-' ||
        u == '.' || u == '_' || u == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xF]);
    }
  }
  return out;
}

std::string_view Request::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (beast::iequals(key, name)) return value;
  }
  return {};
}

std::optional<std::string> Request::QueryParam(std::string_view name) const {
  std::string_view rest = query;
  while (!rest.empty()) {
    const size_t amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    const std::string_view key = pair.substr(0, eq);
    const std::string_view value =
        eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    // Keys are compared decoded only when they need it, which keeps the common case
    // allocation-free.
    const bool match =
        key.find_first_of("%+") == std::string_view::npos ? key == name : UrlDecode(key) == name;
    if (match) return UrlDecode(value);
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------------
// Message helpers of the server (server_internal.h).

namespace detail {

namespace {

void AppendJsonEscaped(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += "\\u00";
          out.push_back(kHex[(c >> 4) & 0xF]);
          out.push_back(kHex[c & 0xF]);
        } else {
          out.push_back(c);
        }
    }
  }
}

void AppendNumber(std::string& out, uint64_t n) {
  char digits[24];
  const auto [end, ec] = std::to_chars(std::begin(digits), std::end(digits), n);
  out.append(digits, end);
}

bool IsTokenImpl(std::string_view s) {
  if (s.empty()) return false;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7F || c == ':' || c == '(' || c == ')' || c == ',' || c == '/' ||
        c == ';' || c == '<' || c == '=' || c == '>' || c == '?' || c == '@' || c == '[' ||
        c == '\\' || c == ']' || c == '{' || c == '}' || c == '"') {
      return false;
    }
  }
  return true;
}

bool IsFieldValueImpl(std::string_view s) {
  return s.find_first_of("\r\n", 0) == std::string_view::npos &&
         s.find('\0') == std::string_view::npos;
}

bool HasCloseToken(std::string_view value) {
  // "Connection: close" or a list containing it.
  for (size_t i = 0; i + 5 <= value.size(); ++i) {
    if (beast::iequals(value.substr(i, 5), "close")) return true;
  }
  return false;
}

// A handler may answer any final status; anything else is a bug and becomes a 500.
}  // namespace

std::string ErrorJson(std::string_view message, std::string_view code) {
  std::string out = R"({"message":")";
  AppendJsonEscaped(out, message);
  out += R"(","code":")";
  out += code;
  out += "\"}";
  return out;
}

bool ValidStatus(int status) { return status >= 200 && status <= 999; }

// Whether a response with this status carries no body (RFC 9110 6.4.1).
bool StatusHasNoBody(int status) { return status < 200 || status == 204 || status == 304; }

// Writes the status line and headers of `response` into `out` (reused per connection). Returns the
// effective keep-alive: a handler may close the connection with its own "Connection: close".
// `response.status` must be valid (see ValidStatus).
bool SerializeHead(std::string& out, const Response& response, bool keep_alive, bool http10) {
  const int status = response.status;
  std::string_view reason =
      bhttp::obsolete_reason(bhttp::int_to_status(static_cast<unsigned>(status)));
  if (bhttp::int_to_status(static_cast<unsigned>(status)) == bhttp::status::unknown)
    reason = "Unknown";
  const bool no_body = StatusHasNoBody(status);

  out.clear();
  out += "HTTP/1.1 ";
  AppendNumber(out, static_cast<uint64_t>(status));
  out += ' ';
  out += reason;
  out += "\r\n";
  if (!response.content_type.empty() && IsHttpFieldValue(response.content_type)) {
    out += "Content-Type: ";
    out += response.content_type;
    out += "\r\n";
  }
  for (const auto& [name, value] : response.headers) {
    if (!IsHttpToken(name) || !IsHttpFieldValue(value)) {
      spdlog::warn("http server: handler returned an invalid header '{}'; dropped", name);
      continue;
    }
    if (beast::iequals(name, "content-length") || beast::iequals(name, "transfer-encoding"))
      continue;
    if (!response.content_type.empty() && beast::iequals(name, "content-type")) continue;
    if (beast::iequals(name, "connection")) {
      if (HasCloseToken(value)) keep_alive = false;
      continue;
    }
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  if (!no_body) {
    out += "Content-Length: ";
    AppendNumber(out, response.body.size());
    out += "\r\n";
  }
  if (!keep_alive) {
    out += "Connection: close\r\n";
  } else if (http10) {
    out += "Connection: keep-alive\r\n";
  }
  out += "\r\n";
  return keep_alive;
}

bool ExpectsContinue(const bhttp::request<bhttp::string_body>& msg) {
  if (msg.version() < 11) return false;
  const auto it = msg.find(bhttp::field::expect);
  return it != msg.end() && beast::iequals(it->value(), "100-continue");
}

bool IsBeastHttpError(const ErrorCode& ec) {
  return ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category();
}

Request MakeRequest(bhttp::request<bhttp::string_body>&& msg) {
  Request req;
  req.method = std::string(msg.method_string());
  req.target = std::string(msg.target());
  std::string_view path = req.target;
  // absolute-form (a request meant for a proxy): drop the scheme and authority
  if (path.size() > 7 && beast::iequals(path.substr(0, 7), "http://")) {
    const size_t slash = path.find_first_of("/?", 7);
    path = slash == std::string_view::npos ? std::string_view("/") : path.substr(slash);
  }
  const size_t q = path.find('?');
  if (q == std::string_view::npos) {
    req.path = std::string(path);
  } else {
    req.path = std::string(path.substr(0, q));
    req.query = std::string(path.substr(q + 1));
  }
  if (req.path.empty()) req.path = "/";
  size_t count = 0;
  for (auto it = msg.begin(); it != msg.end(); ++it) ++count;
  req.headers.reserve(count);
  for (const auto& field : msg) {
    req.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  req.body = std::move(msg.body());
  return req;
}

Response InternalError(std::string_view what) {
  Response r;
  r.status = 500;
  r.body = ErrorJson(std::string("internal error: ") + std::string(what), "INTERNAL");
  return r;
}

}  // namespace detail

bool IsHttpToken(std::string_view s) { return detail::IsTokenImpl(s); }
bool IsHttpFieldValue(std::string_view s) { return detail::IsFieldValueImpl(s); }

bool IsPlainHeaderValue(std::string_view s) {
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t') || c == 0x7F) return false;
  }
  return true;
}

bool IsReservedRequestHeader(std::string_view name) {
  static constexpr std::string_view kReserved[] = {
      "host",   "connection",        "keep-alive", "proxy-connection", "transfer-encoding",
      "te",     "trailer",           "upgrade",    "content-length",   "proxy-authorization",
      "expect", "proxy-authenticate"};
  for (std::string_view r : kReserved) {
    if (beast::iequals(name, r)) return true;
  }
  return false;
}

}  // namespace dtx::http
