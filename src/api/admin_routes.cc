#include "api/admin_routes.h"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <optional>
#include <vector>

#include "api/codec.h"
#include "api/notify_routes.h"
#include "ops/console.h"

// GCC 12: a false -Wmismatched-new-delete for Asio's awaitable frames (see engine_internal.h).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace dtx::api {

namespace json = boost::json;
using boost::asio::awaitable;

namespace {

http::Response JsonAnswer(int status, const json::value& v) {
  http::Response r;
  r.status = status;
  r.body = json::serialize(v);
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

http::Response Error(int status, std::string_view code, std::string_view message) {
  return JsonAnswer(status, json::object{{"code", code}, {"message", message}});
}

// 405 with the Allow header RFC 9110 §15.5.6 requires.
http::Response NotAllowed(std::string_view allow, std::string_view message) {
  http::Response r = Error(405, "METHOD_NOT_ALLOWED", message);
  r.headers.emplace_back("Allow", std::string(allow));
  return r;
}

http::Response FromStatus(const Status& s) {
  switch (s.code()) {
    case Code::kInvalidArgument:
      return Error(400, "INVALID_ARGUMENT", s.message());
    case Code::kNotFound:
      return Error(404, "NOT_FOUND", s.message());
    case Code::kConflict:
    case Code::kAlreadyExists:
      return Error(409, "CONFLICT", s.message());
    case Code::kUnavailable:
      return Error(503, "UNAVAILABLE", s.message());
    default:
      return Error(500, CodeName(s.code()), s.message());
  }
}

// Percent-decoding of one path segment ('+' stays '+').
std::optional<std::string> DecodeSegment(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    const int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

Result<int64_t> IntParam(const http::Request& req, std::string_view name, int64_t fallback) {
  auto v = req.QueryParam(name);
  if (!v || v->empty()) return fallback;
  size_t pos = 0;
  int64_t out = 0;
  try {
    out = std::stoll(*v, &pos);
  } catch (...) {
    pos = 0;
  }
  if (pos != v->size()) {
    return Status::InvalidArgument(fmt::format("{} must be an integer", name));
  }
  return out;
}

json::object TransJson(const ops::AdminRow& row) {
  const core::GlobalTrans& g = row.trans;
  json::object o{{"id", g.id},
                 {"gid", g.gid},
                 {"trans_type", core::ToString(g.trans_type)},
                 {"status", core::ToString(g.status)},
                 {"create_time_ms", g.create_time_ms},
                 {"update_time_ms", g.update_time_ms},
                 {"finish_time_ms", g.finish_time_ms},
                 {"rollback_time_ms", g.rollback_time_ms},
                 {"next_cron_time_ms", g.next_cron_time_ms},
                 {"next_cron_interval_ms", g.next_cron_interval_ms},
                 {"lease_until_ms", g.lease_until_ms},
                 {"owner", g.owner},
                 {"rollback_reason", g.rollback_reason},
                 {"custom_data", g.custom_data},
                 {"retries", row.retries},
                 {"stuck", row.stuck},
                 {"resolved", row.resolved}};
  // Its business keys: held, or the gid it waits for (the same object as GET query's).
  if (auto keys = BusinessKeysJson(g, row.keys ? &*row.keys : nullptr)) {
    o["business_keys"] = std::move(*keys);
  }
  return o;
}

json::object BranchJson(const core::BranchRow& b) {
  return json::object{{"branch_id", b.branch_id},
                      {"op", b.op},
                      {"url", b.url},
                      {"status", core::ToString(b.status)},
                      {"attempts", b.attempts},
                      {"last_error", b.last_error},
                      {"payload_bytes", b.bin_data.size()},
                      {"create_time_ms", b.create_time_ms},
                      {"update_time_ms", b.update_time_ms},
                      {"finish_time_ms", b.finish_time_ms}};
}

json::object AuditJson(const ops::AuditRecord& r) {
  json::object o{{"id", r.id},
                 {"time_ms", r.time_ms},
                 {"who", r.who},
                 {"gid", r.gid},
                 {"action", r.action},
                 {"reason", r.reason},
                 {"status_before", r.status_before},
                 {"status_after", r.status_after}};
  if (!r.branch_id.empty()) o["branch_id"] = r.branch_id;
  if (!r.op.empty()) o["op"] = r.op;
  return o;
}

json::array AuditArray(const std::vector<ops::AuditRecord>& records) {
  json::array a;
  for (const auto& r : records) a.push_back(AuditJson(r));
  return a;
}

}  // namespace

AdminRoutes::AdminRoutes(ops::AdminService& service, const ops::TokenSet& tokens)
    : service_(service), tokens_(tokens) {}

bool AdminRoutes::Owns(std::string_view path) {
  return path.starts_with(kAdminPrefix) || path == "/api/dtx/admin" || path == "/admin" ||
         path.starts_with("/admin/");
}

http::Response AdminRoutes::Console(const http::Request& req) {
  if (req.method != "GET" && req.method != "HEAD") {
    return NotAllowed("GET, HEAD", "the console is read with GET");
  }
  const ops::ConsoleAsset* asset = ops::FindConsoleAsset(req.path);
  if (asset == nullptr) return Error(404, "NOT_FOUND", "no such console page");
  http::Response r;
  r.status = 200;
  r.content_type = std::string(asset->content_type);
  if (req.method == "GET") r.body = std::string(asset->body);
  // The page loads only its own files and talks only to this server; no framing (clickjacking).
  r.headers.emplace_back("Content-Security-Policy",
                         "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                         "form-action 'self'; object-src 'none'");
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.headers.emplace_back("X-Frame-Options", "DENY");
  r.headers.emplace_back("Referrer-Policy", "no-referrer");
  r.headers.emplace_back("Cache-Control", "no-cache");
  return r;
}

awaitable<http::Response> AdminRoutes::Handle(const http::Request& req, std::string& api) {
  if (!req.path.starts_with("/api/")) {
    api = "console";
    co_return Console(req);  // static files: no data in them, no token needed to load them
  }
  api = "admin";
  if (tokens_.empty()) {
    co_return Error(403, "FORBIDDEN",
                    "the admin API is disabled: start dtx server with --admin-token NAME=TOKEN "
                    "(or DTX_ADMIN_TOKEN, or --admin-token-file)");
  }
  std::optional<std::string> who = tokens_.Authenticate(req.Header("Authorization"));
  if (!who) {
    http::Response r =
        Error(401, "UNAUTHENTICATED", "a valid 'Authorization: Bearer TOKEN' header is required");
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"dtx-admin\"");
    co_return r;
  }
  co_return co_await Route(req, *who, api);
}

awaitable<http::Response> AdminRoutes::Route(const http::Request& req, const std::string& who,
                                             std::string& api) {
  std::vector<std::string> parts;
  std::string_view rest = std::string_view(req.path);
  rest.remove_prefix(std::min(rest.size(), kAdminPrefix.size()));
  while (!rest.empty()) {
    const size_t slash = rest.find('/');
    auto seg = DecodeSegment(rest.substr(0, slash));
    if (!seg) co_return Error(400, "INVALID_ARGUMENT", "bad percent-encoding in the path");
    parts.push_back(std::move(*seg));
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  const bool get = req.method == "GET";
  auto not_allowed = [&](std::string_view allow) {
    return NotAllowed(allow, fmt::format("{} is not allowed here", req.method));
  };
  if (parts.size() == 1 && parts[0] == "whoami") {
    api = "admin_whoami";
    co_return JsonAnswer(200, json::object{{"who", who}});
  }
  if (parts.size() == 1 && parts[0] == "transactions") {
    api = "admin_list";
    if (!get) co_return not_allowed("GET");
    ops::AdminListQuery q;
    q.status = req.QueryParam("status").value_or("");
    q.trans_type = req.QueryParam("trans_type").value_or("");
    q.gid_prefix = req.QueryParam("gid_prefix").value_or("");
    q.stuck = req.QueryParam("stuck").value_or("") == "1";
    if (auto r = req.QueryParam("resolved"); r && !r->empty()) q.resolved = *r == "1";
    q.waiting = req.QueryParam("waiting").value_or("") == "1";
    for (auto [name, field, fallback] :
         {std::tuple{"created_after", &q.created_after_ms, int64_t{0}},
          std::tuple{"created_before", &q.created_before_ms, int64_t{0}},
          std::tuple{"position", &q.position, int64_t{0}}}) {
      auto v = IntParam(req, name, fallback);
      if (!v.ok()) co_return FromStatus(v.status());
      *field = *v;
    }
    auto limit = IntParam(req, "limit", 50);
    if (!limit.ok()) co_return FromStatus(limit.status());
    if (*limit < 1 || *limit > ops::kMaxAdminListLimit) {
      co_return Error(400, "INVALID_ARGUMENT",
                      fmt::format("limit must be 1..{}", ops::kMaxAdminListLimit));
    }
    q.limit = static_cast<int>(*limit);
    auto page = co_await service_.List(std::move(q));
    if (!page.ok()) co_return FromStatus(page.status());
    json::array rows;
    json::object counts;
    for (const ops::AdminRow& row : page->rows) {
      rows.push_back(TransJson(row));
      const std::string_view st = core::ToString(row.trans.status);
      counts[st] = (counts.contains(st) ? counts[st].as_int64() : 0) + 1;
    }
    co_return JsonAnswer(200, json::object{{"transactions", std::move(rows)},
                                           {"status_counts", std::move(counts)},
                                           {"next_position", page->next_position},
                                           {"scanned", page->scanned},
                                           {"key_reads", page->key_reads}});
  }
  if (parts.size() == 2 && parts[0] == "transactions") {
    api = "admin_show";
    if (!get) co_return not_allowed("GET");
    auto d = co_await service_.Show(parts[1]);
    if (!d.ok()) co_return FromStatus(d.status());
    if (!d->has_value()) {
      co_return Error(404, "NOT_FOUND", fmt::format("no transaction with gid '{}'", parts[1]));
    }
    json::array branches;
    for (size_t i = 0; i < (*d)->branches.size(); ++i) {
      json::object b = BranchJson((*d)->branches[i]);
      json::array calls;
      for (const core::CallAttempt& a : (*d)->attempts[i]) {
        calls.push_back(json::object{{"seq", a.seq},
                                     {"time_ms", a.time_ms},
                                     {"http_status", a.http_status},
                                     {"latency_ms", a.latency_ms},
                                     {"result", a.result},
                                     {"error", a.error}});
      }
      b["calls"] = std::move(calls);  // the newest kMaxAttemptLog; "attempts" counts them all
      branches.push_back(std::move(b));
    }
    json::object o{{"transaction", TransJson((*d)->row)},
                   {"branches", std::move(branches)},
                   {"audit", AuditArray((*d)->audit)}};
    if ((*d)->resolved) o["resolved"] = AuditJson(*(*d)->resolved);
    co_return JsonAnswer(200, o);
  }
  if (parts.size() == 3 && parts[0] == "transactions") {
    // The metrics label: a known action's name, never the request's text.
    const bool known = parts[2] == "retry" || parts[2] == "stop" || parts[2] == "abort" ||
                       parts[2] == "skip" || parts[2] == "resolve";
    api = "admin_" + (known ? parts[2] : std::string("action"));
    if (req.method != "POST") co_return not_allowed("POST");
    co_return co_await Act(req, who, std::move(parts[1]), std::move(parts[2]));
  }
  if (!parts.empty() && parts[0] == "notifications") {
    co_return co_await Notifications(req, who, std::move(parts), api);
  }
  if (parts.size() == 1 && parts[0] == "audit") {
    api = "admin_audit";
    if (!get) co_return not_allowed("GET");
    auto limit = IntParam(req, "limit", 100);
    if (!limit.ok()) co_return FromStatus(limit.status());
    auto position = IntParam(req, "position", 0);
    if (!position.ok()) co_return FromStatus(position.status());
    if (*limit < 1 || *limit > ops::kMaxAuditLimit) {
      co_return Error(400, "INVALID_ARGUMENT",
                      fmt::format("limit must be 1..{}", ops::kMaxAuditLimit));
    }
    auto records = co_await service_.Audit(req.QueryParam("gid").value_or(""),
                                           static_cast<int>(*limit), *position);
    if (!records.ok()) co_return FromStatus(records.status());
    const int64_t next = static_cast<int64_t>(records->size()) == *limit && !records->empty()
                             ? records->back().id
                             : 0;
    co_return JsonAnswer(200,
                         json::object{{"audit", AuditArray(*records)}, {"next_position", next}});
  }
  api = "admin_unknown";
  co_return Error(404, "NOT_FOUND", fmt::format("no admin route for {} {}", req.method, req.path));
}

awaitable<http::Response> AdminRoutes::Act(const http::Request& req, const std::string& who,
                                           std::string gid, std::string action) {
  ops::ActionRequest r;
  r.who = who;
  r.gid = std::move(gid);
  r.action = std::move(action);
  if (!req.body.empty()) {
    boost::system::error_code ec;
    json::value v = json::parse(req.body, ec);
    if (ec || !v.is_object()) {
      co_return Error(400, "INVALID_ARGUMENT", "the body must be a JSON object");
    }
    const json::object& o = v.get_object();
    for (auto [key, field] : {std::pair{"reason", &r.reason}, std::pair{"branch_id", &r.branch_id},
                              std::pair{"op", &r.op}}) {
      if (const json::value* x = o.if_contains(key)) {
        if (!x->is_string()) {
          co_return Error(400, "INVALID_ARGUMENT", fmt::format("{} must be a string", key));
        }
        *field = std::string(x->get_string());
      }
    }
    if (const json::value* x = o.if_contains("expect_status"); x && !x->is_null()) {
      if (!x->is_string()) {
        co_return Error(400, "INVALID_ARGUMENT", "expect_status must be a string");
      }
      r.expect_status = std::string(x->get_string());
    }
  }
  const std::string gid_copy = r.gid;
  auto out = co_await service_.Act(std::move(r));
  if (out.ok()) {
    co_return JsonAnswer(200, json::object{{"gid", gid_copy},
                                           {"status_before", out->status_before},
                                           {"status_after", out->status_after}});
  }
  http::Response resp = FromStatus(out.status());
  if (resp.status == 409) {
    // The operator acted on a state that is gone: show the current one.
    auto d = co_await service_.Show(gid_copy);
    if (d.ok() && d->has_value()) {
      json::object o{{"code", "CONFLICT"},
                     {"message", out.status().message()},
                     {"current", TransJson((*d)->row)}};
      resp = JsonAnswer(409, o);
    }
  }
  co_return resp;
}

awaitable<http::Response> AdminRoutes::Notifications(const http::Request& req,
                                                     const std::string& who,
                                                     std::vector<std::string> parts,
                                                     std::string& api) {
  const bool get = req.method == "GET";
  if (parts.size() == 1) {
    api = "admin_notify_list";
    if (!get) co_return NotAllowed("GET", "notifications are listed with GET");
    ops::NotifyListQuery q;
    q.status = req.QueryParam("status").value_or("");
    auto limit = IntParam(req, "limit", 50);
    if (!limit.ok()) co_return FromStatus(limit.status());
    auto position = IntParam(req, "position", 0);
    if (!position.ok()) co_return FromStatus(position.status());
    if (*limit < 1 || *limit > ops::kMaxAdminListLimit) {
      co_return Error(400, "INVALID_ARGUMENT",
                      fmt::format("limit must be 1..{}", ops::kMaxAdminListLimit));
    }
    q.limit = static_cast<int>(*limit);
    q.position = *position;
    auto page = co_await service_.ListNotifications(std::move(q));
    if (!page.ok()) co_return FromStatus(page.status());
    json::array rows;
    json::object counts;
    for (ops::AdminRow& row : page->rows) {
      core::TransSnapshot snap;
      snap.global = std::move(row.trans);
      json::object o = DescribeNotification(snap, false);
      const std::string st(o["status"].as_string());
      counts[st] = (counts.contains(st) ? counts[st].as_int64() : 0) + 1;
      rows.push_back(std::move(o));
    }
    co_return JsonAnswer(200, json::object{{"notifications", std::move(rows)},
                                           {"status_counts", std::move(counts)},
                                           {"next_position", page->next_position},
                                           {"scanned", page->scanned}});
  }
  if (parts.size() == 2) {
    api = "admin_notify_show";
    if (!get) co_return NotAllowed("GET", "a notification is read with GET");
    auto d = co_await service_.ShowNotification(parts[1]);
    if (!d.ok()) co_return FromStatus(d.status());
    if (!d->has_value()) {
      co_return Error(404, "NOT_FOUND", fmt::format("no notification with id '{}'", parts[1]));
    }
    core::TransSnapshot snap;
    snap.global = std::move((*d)->row.trans);
    snap.branches = std::move((*d)->branches);
    json::object o{{"notification", DescribeNotification(snap, true)},
                   {"audit", AuditArray((*d)->audit)}};
    co_return JsonAnswer(200, o);
  }
  if (parts.size() == 3 && parts[2] == "resend") {
    api = "admin_notify_resend";
    if (req.method != "POST") {
      co_return NotAllowed("POST", "a notification is resent with POST");
    }
    std::string reason;
    boost::system::error_code ec;
    json::value v = json::parse(req.body.empty() ? std::string_view("{}") : req.body, ec);
    if (ec || !v.is_object()) {
      co_return Error(400, "INVALID_ARGUMENT", "the body must be a JSON object");
    }
    if (const json::value* x = v.get_object().if_contains("reason")) {
      if (!x->is_string()) co_return Error(400, "INVALID_ARGUMENT", "reason must be a string");
      reason = std::string(x->get_string());
    }
    const std::string id = parts[1];
    auto out = co_await service_.Resend(who, std::move(parts[1]), std::move(reason));
    if (!out.ok()) co_return FromStatus(out.status());
    co_return JsonAnswer(200, json::object{{"id", id},
                                           {"status_before", out->status_before},
                                           {"status_after", out->status_after}});
  }
  api = "admin_unknown";
  co_return Error(404, "NOT_FOUND", fmt::format("no admin route for {} {}", req.method, req.path));
}

}  // namespace dtx::api
