#include "api/notify_routes.h"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <boost/json.hpp>
#include <charconv>
#include <cmath>
#include <ctime>
#include <set>
#include <tuple>

#include "api/codec.h"
#include "api/net_guard.h"
#include "api/routes.h"
#include "core/notify.h"
#include "http/client.h"
#include "util/webhook.h"

namespace dtx::api {

namespace json = boost::json;
using boost::asio::awaitable;

namespace {

constexpr size_t kMaxNotifyHeaders = 32;
constexpr size_t kMaxHeaderValueBytes = 1024;
constexpr size_t kMaxSecretKeyBytes = 64;

http::Response JsonAnswer(int status, std::string body) {
  http::Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

std::string Sha256Hex(std::string_view in) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(in.data(), in.size(), md, &len, EVP_sha256(), nullptr);
  std::string out;
  for (unsigned int i = 0; i < len; ++i) out += fmt::format("{:02x}", md[i]);
  return out;
}

std::string Rfc3339(int64_t ms) {
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
}

Status Bad(std::string m) { return Status::InvalidArgument(std::move(m)); }

// A JSON number of seconds (fractions allowed) as milliseconds; nullopt if not a number.
std::optional<double> Seconds(const json::value& v) {
  if (v.is_int64()) return static_cast<double>(v.get_int64());
  if (v.is_uint64()) return static_cast<double>(v.get_uint64());
  if (v.is_double() && std::isfinite(v.get_double())) return v.get_double();
  return std::nullopt;
}

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (!(std::isalnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) !=
                                 std::string_view::npos)) {
      return false;
    }
  }
  return true;
}

bool HasControl(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

Result<core::Headers> ParseHeaders(const json::value* v) {
  core::Headers out;
  if (!v || v->is_null()) return out;
  if (!v->is_object()) return Bad("headers: must be an object of strings");
  static const std::set<std::string> kReserved = {"content-length",    "host",
                                                  "transfer-encoding", "connection",
                                                  "webhook-id",        "webhook-timestamp",
                                                  "webhook-signature"};
  for (const auto& kv : v->get_object()) {
    std::string name(kv.key());
    std::string lower = name;
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!IsToken(name)) return Bad(fmt::format("headers: '{}' is not a header name", name));
    if (kReserved.contains(lower)) {
      return Bad(fmt::format("headers: '{}' is set by dtx and cannot be given", name));
    }
    if (!kv.value().is_string()) return Bad(fmt::format("headers.{}: must be a string", name));
    std::string value(kv.value().get_string());
    if (value.size() > kMaxHeaderValueBytes || HasControl(value)) {
      return Bad(fmt::format("headers.{}: over {} bytes or has control characters", name,
                             kMaxHeaderValueBytes));
    }
    out.emplace_back(std::move(name), std::move(value));
  }
  if (out.size() > kMaxNotifyHeaders) {
    return Bad(fmt::format("headers: more than {}", kMaxNotifyHeaders));
  }
  return out;
}

Status ParseSchedule(const json::value* v, core::NotifyState& st) {
  if (!v || v->is_null()) {
    st.preset = "wechat";
  } else if (v->is_string()) {
    st.preset = std::string(v->get_string());
  } else if (!v->is_array()) {
    return Bad("schedule: a preset name or an array of seconds");
  }
  if (!st.preset.empty()) {
    Result<std::vector<int64_t>> preset = core::NotifyPreset(st.preset);
    if (!preset.ok()) return preset.status();
    st.schedule_ms = std::move(*preset);
    return Status::Ok();
  }
  const json::array& a = v->get_array();
  if (a.empty()) return Bad("schedule: empty");
  if (a.size() > core::kMaxNotifySchedule) {
    return Bad(fmt::format("schedule: more than {} steps", core::kMaxNotifySchedule));
  }
  for (size_t i = 0; i < a.size(); ++i) {
    std::optional<double> s = Seconds(a[i]);
    if (!s) return Bad(fmt::format("schedule[{}]: not a number of seconds", i));
    const double ms = *s * 1000.0;
    if (ms < 0 || ms > static_cast<double>(core::kMaxNotifyDelayMs)) {
      return Bad(fmt::format("schedule[{}]: must be in [0, {}] seconds", i,
                             core::kMaxNotifyDelayMs / 1000));
    }
    st.schedule_ms.push_back(std::llround(ms));
  }
  return Status::Ok();
}

Status ParseSuccess(const json::value* v, core::SuccessRule& rule) {
  if (!v || v->is_null()) return Status::Ok();  // 2xx
  const char* kForms =
      R"(success: one of {"status":"2xx"}, {"body":"..."}, {"json":"field","equals":...})";
  if (!v->is_object()) return Bad(kForms);
  const json::object& o = v->get_object();
  if (o.size() == 1 && o.contains("status")) {
    if (!o.at("status").is_string() || o.at("status").get_string() != "2xx") return Bad(kForms);
    return Status::Ok();
  }
  if (o.size() == 1 && o.contains("body") && o.at("body").is_string()) {
    rule.kind = core::SuccessRule::Kind::kBody;
    rule.value = std::string(o.at("body").get_string());
    return Status::Ok();
  }
  if (o.size() == 2 && o.contains("json") && o.contains("equals") && o.at("json").is_string() &&
      !o.at("json").get_string().empty()) {
    const json::value& eq = o.at("equals");
    if (eq.is_object() || eq.is_array() || eq.is_null()) return Bad(kForms);
    rule.kind = core::SuccessRule::Kind::kJson;
    rule.field = std::string(o.at("json").get_string());
    rule.value = eq.is_string() ? std::string(eq.get_string()) : json::serialize(eq);
    return Status::Ok();
  }
  return Bad(kForms);
}

std::string GetStr(const json::object& o, const char* key) {
  const json::value* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

Status CheckTypes(const json::object& o, bool two_phase) {
  static const std::set<std::string> kKeys = {"id",       "url",     "payload", "headers",
                                              "schedule", "success", "timeout", "secret"};
  for (const auto& kv : o) {
    std::string k(kv.key());
    const bool extra = two_phase && (k == "query_prepared" || k == "timeout_to_fail");
    if (!kKeys.contains(k) && !extra) return Bad(fmt::format("unknown field '{}'", k));
  }
  for (const char* k : {"id", "url", "payload", "secret", "query_prepared"}) {
    if (const json::value* v = o.if_contains(k); v && !v->is_string()) {
      return Bad(fmt::format("{}: must be a string", k));
    }
  }
  return Status::Ok();
}

Status CheckUrl(std::string_view field, const std::string& url) {
  if (url.empty()) return Bad(fmt::format("{} is required", field));
  if (url.size() > core::kMaxUrlBytes) {
    return Bad(fmt::format("{}: over {} bytes", field, core::kMaxUrlBytes));
  }
  if (!http::ParseHttpUrl(url).ok()) {
    return Bad(
        fmt::format("{}: '{}' is not an http:// or https:// URL", field, url.substr(0, 200)));
  }
  return Status::Ok();
}

Status ParseSecretAndTimeout(const json::object& o, int64_t default_timeout_ms,
                             core::NotifyState& st) {
  st.secret = GetStr(o, "secret");
  if (o.contains("secret")) {
    std::optional<std::string> key = util::WebhookSecretKey(st.secret);
    if (!key || key->size() > kMaxSecretKeyBytes) {
      return Bad(
          fmt::format("secret: must be 'whsec_' + base64 of 1..{} bytes", kMaxSecretKeyBytes));
    }
  }
  st.timeout_ms = default_timeout_ms;
  if (const json::value* v = o.if_contains("timeout"); v && !v->is_null()) {
    std::optional<double> s = Seconds(*v);
    if (!s || *s * 1000.0 < 1.0 || *s * 1000.0 > static_cast<double>(core::kMaxNotifyTimeoutMs)) {
      return Bad(fmt::format("timeout: seconds in (0, {}]", core::kMaxNotifyTimeoutMs / 1000));
    }
    st.timeout_ms = std::llround(*s * 1000.0);
  }
  return Status::Ok();
}

// The canonical form of a request (normalized values, fixed order): its hash decides whether a
// repeated id is the same notification.
std::string RequestHash(const core::TransSnapshot& snap, const core::NotifyState& st,
                        bool two_phase) {
  json::array headers;
  for (const auto& [k, v] : snap.global.options.branch_headers) headers.push_back({k, v});
  json::array sched;
  for (int64_t ms : st.schedule_ms) sched.emplace_back(ms);
  json::array canon{
      two_phase,          snap.branches[0].url,       snap.branches[0].bin_data,
      std::move(headers), std::move(sched),           static_cast<int>(st.success.kind),
      st.success.field,   st.success.value,           st.timeout_ms,
      st.secret,          snap.global.query_prepared, snap.global.options.timeout_to_fail_s};
  return Sha256Hex(json::serialize(canon));
}

}  // namespace

json::object DescribeNotification(const core::TransSnapshot& snap, bool with_log) {
  const core::GlobalTrans& g = snap.global;
  Result<core::NotifyState> st = core::DecodeNotifyState(g.custom_data);
  json::object o;
  o["id"] = g.gid;
  o["url"] = snap.branches.empty() ? std::string() : snap.branches[0].url;
  o["status"] = core::NotifyApiStatus(g);
  o["created_time"] = Rfc3339(g.create_time_ms);
  o["attempt_count"] = st.ok() ? st->total_attempts : 0;
  json::value next = nullptr;
  if (st.ok() && g.status == core::GlobalStatus::kSubmitted &&
      static_cast<size_t>(st->cycle_attempts) < st->schedule_ms.size()) {
    const int64_t due = core::NotifyDueMs(*st, g.update_time_ms);
    next = Rfc3339(due);
    o["next_attempt_time_ms"] = due;
  }
  o["next_attempt_time"] = std::move(next);
  if (!with_log || !st.ok()) return o;
  if (!st->preset.empty()) o["preset"] = st->preset;
  json::array sched;
  for (int64_t ms : st->schedule_ms) {
    if (ms % 1000 == 0) {
      sched.emplace_back(ms / 1000);
    } else {
      sched.emplace_back(static_cast<double>(ms) / 1000.0);
    }
  }
  o["schedule"] = std::move(sched);
  o["signed"] = !st->secret.empty();
  json::array log;
  for (const core::NotifyAttempt& a : st->log) {
    log.emplace_back(json::object{{"n", a.n},
                                  {"time", Rfc3339(a.time_ms)},
                                  {"time_ms", a.time_ms},
                                  {"http_status", a.http_status},
                                  {"latency_ms", a.latency_ms},
                                  {"error", a.error},
                                  {"response", a.response}});
  }
  o["attempts"] = std::move(log);
  return o;
}

namespace {

http::Response Answer(const std::string& id, std::string_view status) {
  return JsonAnswer(200, json::serialize(json::object{{"id", id}, {"status", status}}));
}

Result<std::string> IdOf(std::string_view body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) return Bad("the body must be a JSON object {\"id\":\"...\"}");
  std::string id = GetStr(v.get_object(), "id");
  if (id.empty()) return Bad("id is required");
  return id;
}

awaitable<http::Response> List(engine::Engine& engine, const http::Request& req) {
  store::ListQuery q;
  q.trans_type = "notify";
  const std::string status = req.QueryParam("status").value_or("");
  if (!status.empty()) {
    std::optional<core::GlobalStatus> stored = core::NotifyStoredStatus(status);
    if (!stored) {
      co_return ErrorResponse(Bad("status: one of pending, delivered, failed, aborted, prepared"));
    }
    q.status = std::string(core::ToString(*stored));
  }
  for (auto [name, lo, hi] : {std::tuple{"limit", 1, 1000}, std::tuple{"position", 1, 0}}) {
    std::optional<std::string> v = req.QueryParam(name);
    if (!v || v->empty()) continue;
    int64_t n = 0;
    auto [p, err] = std::from_chars(v->data(), v->data() + v->size(), n);
    if (err != std::errc() || p != v->data() + v->size() || n < lo || (hi > 0 && n > hi)) {
      co_return ErrorResponse(Bad(fmt::format("{}: not a valid value", name)));
    }
    if (std::string_view(name) == "limit") {
      q.limit = static_cast<int>(n);
    } else {
      q.before_id = n;
    }
  }
  auto page = co_await engine.List(std::move(q));
  if (!page.ok()) co_return ErrorResponse(page.status());
  json::array items;
  for (const core::GlobalTrans& g : page->transactions) {
    core::TransSnapshot snap;
    snap.global = g;
    json::object o = DescribeNotification(snap, false);
    o.erase("url");
    if (!status.empty() && o["status"].as_string() != status) continue;
    items.push_back(std::move(o));
  }
  json::object out{{"notifications", std::move(items)}};
  out["position"] = page->next_before_id > 0 ? std::to_string(page->next_before_id) : "";
  co_return JsonAnswer(200, json::serialize(out));
}

}  // namespace

Result<NotifyCreate> BuildNotify(std::string_view body, bool two_phase,
                                 int64_t default_timeout_ms) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) return Bad("the body must be a JSON object");
  const json::object& o = v.get_object();
  if (Status s = CheckTypes(o, two_phase); !s.ok()) return s;
  core::TransSnapshot snap;
  core::GlobalTrans& g = snap.global;
  g.gid = GetStr(o, "id");
  if (g.gid.empty()) return Bad("id is required");
  if (g.gid.size() > core::kMaxGidBytes || HasControl(g.gid)) {
    return Bad(fmt::format("id: 1..{} bytes without control characters", core::kMaxGidBytes));
  }
  g.trans_type = core::TransType::kNotify;
  g.status = two_phase ? core::GlobalStatus::kPrepared : core::GlobalStatus::kSubmitted;
  core::BranchRow& row = snap.branches.emplace_back();
  row.gid = g.gid;
  row.url = GetStr(o, "url");
  row.branch_id = std::string(core::kNotifyBranchId);
  row.op = std::string(core::kNotifyOp);
  if (Status s = CheckUrl("url", row.url); !s.ok()) return s;
  row.bin_data = GetStr(o, "payload");
  if (row.bin_data.size() > core::kMaxBinDataBytes) {
    return Status::TooLarge(fmt::format("payload: over {} bytes", core::kMaxBinDataBytes));
  }
  Result<core::Headers> headers = ParseHeaders(o.if_contains("headers"));
  if (!headers.ok()) return headers.status();
  g.options.branch_headers = std::move(*headers);
  core::NotifyState st;
  if (Status s = ParseSchedule(o.if_contains("schedule"), st); !s.ok()) return s;
  if (Status s = ParseSuccess(o.if_contains("success"), st.success); !s.ok()) return s;
  if (Status s = ParseSecretAndTimeout(o, default_timeout_ms, st); !s.ok()) return s;
  g.options.request_timeout_s = (st.timeout_ms + 999) / 1000;  // the lease covers the attempt
  if (two_phase) {
    g.query_prepared = GetStr(o, "query_prepared");
    if (Status s = CheckUrl("query_prepared", g.query_prepared); !s.ok()) return s;
    if (const json::value* t = o.if_contains("timeout_to_fail"); t && !t->is_null()) {
      if (!t->is_int64() || t->get_int64() <= 0 || t->get_int64() > 86400) {
        return Bad("timeout_to_fail: whole seconds in [1, 86400]");
      }
      g.options.timeout_to_fail_s = t->get_int64();
    }
  }
  st.request_hash = RequestHash(snap, st, two_phase);
  return NotifyCreate{std::move(snap), std::move(st)};
}

bool IsNotifyPath(std::string_view path) {
  return path == kNotifyPrefix ||
         (path.starts_with(kNotifyPrefix) && path[kNotifyPrefix.size()] == '/');
}

void RedactNotify(core::GlobalTrans& g) { core::RedactNotifySecret(g); }

awaitable<http::Response> HandleNotify(engine::Engine& engine, const http::Request& req,
                                       std::string& api, const http::UrlPolicy* url_policy) {
  const bool is_get = req.method == "GET";
  const bool is_post = req.method == "POST";
  std::string_view rest = std::string_view(req.path).substr(kNotifyPrefix.size());
  if (!rest.empty()) rest.remove_prefix(1);  // the '/'
  // 405 with the Allow header RFC 9110 §15.5.6 requires.
  auto not_allowed = [&](std::string_view allow) {
    http::Response r =
        JsonAnswer(405, ErrorBody(fmt::format("{} is not allowed on {}", req.method, req.path),
                                  "METHOD_NOT_ALLOWED"));
    r.headers.emplace_back("Allow", std::string(allow));
    return r;
  };
  if (rest.empty()) {
    api = is_get ? "notify_list" : "notify";
    if (is_get) co_return co_await List(engine, req);
    if (!is_post) co_return not_allowed("GET, POST");
  }
  if (rest.empty() || rest == "prepare") {
    api = rest.empty() ? "notify" : "notify_prepare";
    if (!is_post) co_return not_allowed("POST");
    const bool two_phase = !rest.empty();
    Result<NotifyCreate> create =
        BuildNotify(req.body, two_phase, engine.options().settings.request_timeout_ms);
    if (!create.ok()) co_return ErrorResponse(create.status());
    if (url_policy != nullptr) {  // the SSRF guard (net_guard.h)
      if (Status s = CheckSnapshotUrls(create->snap, *url_policy); !s.ok()) {
        co_return ErrorResponse(s);
      }
    }
    const std::string id = create->snap.global.gid;
    Status s = co_await engine.CreateNotify(std::move(create->snap), std::move(create->state));
    if (!s.ok()) co_return ErrorResponse(s, id);
    co_return Answer(id, two_phase ? "prepared" : "pending");
  }
  if (rest == "submit" || rest == "abort") {
    api = rest == "submit" ? "notify_submit" : "notify_abort";
    if (!is_post) co_return not_allowed("POST");
    Result<std::string> id = IdOf(req.body);
    if (!id.ok()) co_return ErrorResponse(id.status());
    // (No co_await inside a conditional expression: GCC 12 miscompiles it.)
    std::string name = *id;
    Status s = Status::Ok();
    if (rest == "submit") {
      s = co_await engine.SubmitNotify(std::move(name));
    } else {
      s = co_await engine.AbortNotify(std::move(name));
    }
    if (!s.ok()) co_return ErrorResponse(s, *id);
    co_return Answer(*id, rest == "submit" ? "pending" : "aborted");
  }
  const size_t slash = rest.find('/');
  const std::string id = http::UrlDecode(rest.substr(0, slash));
  const std::string_view action = slash == std::string_view::npos ? "" : rest.substr(slash + 1);
  if (action == "resend") {
    api = "notify_resend";
    if (!is_post) co_return not_allowed("POST");
    Status s = co_await engine.ResendNotify(id);
    if (!s.ok()) co_return ErrorResponse(s, id);
    co_return Answer(id, "pending");
  }
  if (!action.empty()) {
    co_return JsonAnswer(404, ErrorBody(fmt::format("no route for {}", req.path), "NOT_FOUND"));
  }
  api = "notify_get";
  if (!is_get) co_return not_allowed("GET");
  auto r = co_await engine.Query(id);
  if (!r.ok()) co_return ErrorResponse(r.status(), id);
  if (!r->has_value() || (*r)->global.trans_type != core::TransType::kNotify) {
    co_return ErrorResponse(Status::NotFound(fmt::format("no notification with id '{}'", id)), id);
  }
  co_return JsonAnswer(200, json::serialize(DescribeNotification(**r, true)));
}

}  // namespace dtx::api
