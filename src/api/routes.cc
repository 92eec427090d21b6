#include "api/routes.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <chrono>
#include <limits>

#include "api/browser_guard.h"
#include "api/codec.h"
#include "api/input_checks.h"
#include "api/net_guard.h"
#include "api/notify_routes.h"
#include "api/saga_def_routes.h"
#include "api/trans_build.h"
#include "api/wording.h"
#include "core/business_keys.h"

// GCC 12 reports a false -Wmismatched-new-delete for Asio's awaitable frames (GCC bug 109224; see
// src/http/client.cc).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace dtx::api {

namespace asio = boost::asio;
namespace json = boost::json;
using asio::awaitable;

namespace {

constexpr std::string_view kPrefix = "/api/dtmsvr/";

http::Response Json(int status, std::string body) {
  http::Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

http::Response Ok() { return Json(200, SuccessBody()); }

std::string QueryOr(const http::Request& req, std::string_view name, std::string fallback = {}) {
  auto v = req.QueryParam(name);
  return v ? *v : std::move(fallback);
}

Result<int64_t> ParseInt(std::string_view name, const std::string& s) {
  if (s.empty()) return Status::InvalidArgument(fmt::format("{} must be an integer", name));
  size_t pos = 0;
  int64_t v = 0;
  try {
    v = std::stoll(s, &pos);
  } catch (...) {
    pos = 0;
  }
  if (pos != s.size()) {
    return Status::InvalidArgument(fmt::format("{} must be an integer, got '{}'", name, s));
  }
  return v;
}

}  // namespace

http::Response ErrorResponse(const Status& status, std::string_view gid) {
  std::string code(CodeName(status.code()));
  const std::string message = WireMessage(status);
  switch (status.code()) {
    case Code::kConflict:
    case Code::kAlreadyExists: {
      json::object o{{"dtm_result", "FAILURE"}, {"message", message}, {"code", code}};
      if (!gid.empty()) o["gid"] = gid;
      return Json(409, json::serialize(o));
    }
    case Code::kOngoing: {
      json::object o{{"dtm_result", "ONGOING"}, {"message", message}, {"code", code}};
      if (!gid.empty()) o["gid"] = gid;
      return Json(425, json::serialize(o));
    }
    case Code::kInvalidArgument:
      return Json(400, ErrorBody(message, code, gid));
    case Code::kNotFound:
      return Json(404, ErrorBody(message, code, gid));
    case Code::kTooLarge:
      return Json(413, ErrorBody(message, code, gid));
    case Code::kUnavailable:
      return Json(503, ErrorBody(message, code, gid));
    case Code::kUnimplemented:
      return Json(501, ErrorBody(message, code, gid));
    default:
      return Json(500, ErrorBody(message, code, gid));
  }
}

ApiHandler::ApiHandler(engine::Engine& engine, ops::Metrics& metrics)
    : engine_(engine), metrics_(metrics) {}

awaitable<http::Response> ApiHandler::Handle(http::Request request) {
  auto start = std::chrono::steady_clock::now();
  std::string api;
  http::Response response = co_await Route(request, api);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  metrics_.RecordApi(api.empty() ? "unknown" : api, response.status == 200, seconds);
  co_return response;
}

namespace {

// The route functions below answer /api/dtmsvr/{api}; `api` is already set (the metrics label).
// They run in Route's order: each name is matched by exactly one of them.

http::Response NoRoute(const http::Request& req) {
  return Json(404, ErrorBody(fmt::format("no route for {} {}", req.method, req.path), "NOT_FOUND"));
}

// 405 with the Allow header RFC 9110 §15.5.6 requires: the one method the route answers.
http::Response MethodNotAllowed(const http::Request& req, std::string_view allow) {
  http::Response r =
      Json(405, ErrorBody(fmt::format("{} is not allowed on {}", req.method, req.path),
                          "METHOD_NOT_ALLOWED"));
  r.headers.emplace_back("Allow", std::string(allow));
  return r;
}

// GET query?gid=
awaitable<http::Response> RouteQuery(engine::Engine& engine, const http::Request& req) {
  if (req.method != "GET") co_return MethodNotAllowed(req, "GET");
  auto gid = req.QueryParam("gid");
  if (!gid || gid->empty()) co_return ErrorResponse(Status::InvalidArgument("no gid specified"));
  auto r = co_await engine.Query(*gid);
  if (!r.ok()) co_return ErrorResponse(r.status(), *gid);
  if (r->has_value()) RedactNotify((**r).global);
  // Business keys: whether it holds them, or the gid it waits for.
  std::optional<core::KeyState> keys;
  if (r->has_value()) {
    Result<std::optional<core::KeyState>> state = co_await engine.KeyStateOf((**r).global);
    if (state.ok()) keys = std::move(*state);
  }
  co_return Json(200, EncodeQueryAnswer(r->has_value() ? &**r : nullptr, keys ? &*keys : nullptr));
}

// The filters of GET all (position, limit, createTimeStart/End), or the 400 answer.
std::optional<http::Response> ParseListQuery(const http::Request& req, store::ListQuery& q) {
  q.gid = QueryOr(req, "gid");
  q.status = QueryOr(req, "status");
  q.trans_type = QueryOr(req, "transType");
  if (std::string p = QueryOr(req, "position"); !p.empty()) {
    auto v = ParseInt("position", p);
    if (!v.ok() || *v <= 0) {
      return ErrorResponse(Status::InvalidArgument("position: not a cursor returned by all"));
    }
    q.before_id = *v;
  }
  if (std::string l = QueryOr(req, "limit"); !l.empty()) {
    auto v = ParseInt("limit", l);
    if (!v.ok()) return ErrorResponse(v.status());
    if (*v < 1 || *v > 1000)
      return ErrorResponse(Status::InvalidArgument("limit must be in [1, 1000]"));
    q.limit = static_cast<int>(*v);
  }
  for (auto [name, field] : {std::pair{"createTimeStart", &q.create_time_start_ms},
                             std::pair{"createTimeEnd", &q.create_time_end_ms}}) {
    if (std::string t = QueryOr(req, name); !t.empty()) {
      auto v = ParseInt(name, t);
      if (!v.ok()) return ErrorResponse(v.status());
      // Compared at second precision, like DTM (saturating near the int64 maximum).
      constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
      *field = (*v / 1000) * 1000;
      if (std::string_view(name) == "createTimeEnd")
        *field = *field > kMax - 999 ? kMax : *field + 999;
    }
  }
  return std::nullopt;
}

// GET all?gid=&status=&transType=&position=&limit=&createTimeStart=&createTimeEnd=
awaitable<http::Response> RouteAll(engine::Engine& engine, const http::Request& req) {
  if (req.method != "GET") co_return MethodNotAllowed(req, "GET");
  store::ListQuery q;
  if (auto refused = ParseListQuery(req, q)) co_return std::move(*refused);
  auto r = co_await engine.List(std::move(q));
  if (!r.ok()) co_return ErrorResponse(r.status());
  for (core::GlobalTrans& g : r->transactions) RedactNotify(g);
  std::string next = r->next_before_id > 0 ? std::to_string(r->next_before_id) : std::string();
  co_return Json(200, EncodeAllAnswer(r->transactions, next));
}

// GET resetCronTime?timeout=&limit=
awaitable<http::Response> RouteResetCronTime(engine::Engine& engine, const http::Request& req) {
  if (req.method != "GET") co_return MethodNotAllowed(req, "GET");
  int64_t timeout_s = 3 * engine.options().settings.timeout_to_fail_ms / 1000;
  int64_t limit = 100;
  if (std::string t = QueryOr(req, "timeout"); !t.empty()) {
    auto v = ParseInt("timeout", t);
    if (!v.ok() || *v < 0)
      co_return ErrorResponse(Status::InvalidArgument("timeout must be a non-negative integer"));
    timeout_s = *v;
  }
  if (std::string l = QueryOr(req, "limit"); !l.empty()) {
    auto v = ParseInt("limit", l);
    if (!v.ok() || *v < 1 || *v > 10000)
      co_return ErrorResponse(Status::InvalidArgument("limit must be in [1, 10000]"));
    limit = *v;
  }
  // Saturating: any timeout beyond int64 milliseconds means "never" (the store adds it to now).
  const int64_t timeout_ms = timeout_s > std::numeric_limits<int64_t>::max() / 1000
                                 ? std::numeric_limits<int64_t>::max()
                                 : timeout_s * 1000;
  auto r = co_await engine.ResetCronTime(timeout_ms, static_cast<int>(limit));
  if (!r.ok()) co_return ErrorResponse(r.status());
  co_return Json(
      200, json::serialize(json::object{{"has_remaining", *r == limit}, {"succeed_count", *r}}));
}

// GET subscribe|unsubscribe?topic=&url=&remark=
awaitable<http::Response> RouteSubscribe(engine::Engine& engine, const http::Request& req,
                                         const std::string& api,
                                         const http::UrlPolicy* url_policy) {
  if (req.method != "GET") co_return MethodNotAllowed(req, "GET");
  std::string topic = QueryOr(req, "topic");
  std::string url = QueryOr(req, "url");
  std::string remark = QueryOr(req, "remark");
  Status s = Status::Ok();
  // The SSRF guard (net_guard.h); an empty url keeps DTM's own answer ("empty url").
  if (api == "subscribe" && url_policy && !url.empty()) {
    if (Status c = url_policy->CheckUrl(url); !c.ok()) {
      co_return ErrorResponse(Status::InvalidArgument("url: " + c.message()));
    }
  }
  if (api == "subscribe") {
    s = co_await engine.Subscribe(std::move(topic), std::move(url), std::move(remark));
  } else {
    s = co_await engine.Unsubscribe(std::move(topic), std::move(url));
  }
  co_return s.ok() ? Ok() : ErrorResponse(s);
}

// DELETE topic/{name}
awaitable<http::Response> RouteDeleteTopic(engine::Engine& engine, const http::Request& req,
                                           const std::string& api) {
  if (req.method != "DELETE") co_return MethodNotAllowed(req, "DELETE");
  std::string topic = http::UrlDecode(std::string_view(api).substr(6));
  Status s = co_await engine.DeleteTopic(std::move(topic));
  co_return s.ok() ? Ok() : ErrorResponse(s);
}

// GET scanKV?cat=&position=&limit=
awaitable<http::Response> RouteScanKv(engine::Engine& engine, const http::Request& req) {
  if (req.method != "GET") co_return MethodNotAllowed(req, "GET");
  int64_t before_id = 0;
  int limit = 100;
  if (std::string p = QueryOr(req, "position"); !p.empty()) {
    auto v = ParseInt("position", p);
    if (!v.ok() || *v <= 0) {
      co_return ErrorResponse(Status::InvalidArgument("position: not a cursor returned by scanKV"));
    }
    before_id = *v;
  }
  if (std::string l = QueryOr(req, "limit"); !l.empty()) {
    auto v = ParseInt("limit", l);
    if (!v.ok()) co_return ErrorResponse(v.status());
    if (*v < 1 || *v > 1000)
      co_return ErrorResponse(Status::InvalidArgument("limit must be in [1, 1000]"));
    limit = static_cast<int>(*v);
  }
  std::string cat = QueryOr(req, "cat");
  auto r = co_await engine.ScanKv(std::move(cat), before_id, limit);
  if (!r.ok()) co_return ErrorResponse(r.status());
  std::string next = r->next_before_id > 0 ? std::to_string(r->next_before_id) : std::string();
  co_return Json(200, EncodeKvAnswer(r->rows, &next));
}

// GET queryKV?cat=&key=
awaitable<http::Response> RouteQueryKv(engine::Engine& engine, const http::Request& req) {
  if (req.method != "GET") co_return MethodNotAllowed(req, "GET");
  std::string cat = QueryOr(req, "cat");
  std::string key = QueryOr(req, "key");
  auto r = co_await engine.QueryKv(std::move(cat), std::move(key));
  if (!r.ok()) co_return ErrorResponse(r.status());
  co_return Json(200, EncodeKvAnswer(*r, nullptr));
}

// POST registerBranch|registerTccBranch|registerXaBranch (a JSON object of strings)
awaitable<http::Response> RouteRegisterBranch(engine::Engine& engine, const http::Request& req,
                                              const http::UrlPolicy* url_policy) {
  if (req.method != "POST") co_return MethodNotAllowed(req, "POST");
  auto kv = DecodeStringMap(req.body);
  if (!kv.ok()) co_return ErrorResponse(kv.status());
  std::string gid;
  core::TransType type = core::TransType::kTcc;
  auto rows = BuildRegisteredRows(*kv, gid, type);
  if (!rows.ok()) co_return ErrorResponse(rows.status(), gid);
  if (url_policy) {
    if (Status s = CheckRowUrls(*rows, *url_policy); !s.ok()) co_return ErrorResponse(s, gid);
  }
  Status s = co_await engine.RegisterBranch(gid, type, std::move(*rows));
  co_return s.ok() ? Ok() : ErrorResponse(s, gid);
}

// The msg that `tr` would create (prepare or submit), its topics expanded from the store.
awaitable<Result<core::TransSnapshot>> ProposeMsg(engine::Engine& engine, TransRequest& tr,
                                                  const std::string& api) {
  // Topics are read from the store (not a cache) so that a subscription change applies to the
  // next message created on every coordinator (§5 #17).
  TopicMap topics;
  for (const StepSpec& step : tr.steps) {
    if (!step.action.starts_with(kTopicScheme)) continue;
    std::string name = step.action.substr(kTopicScheme.size());
    if (topics.contains(name)) continue;
    auto subs = co_await engine.TopicSubscribers(name);
    if (!subs.ok()) co_return subs.status();
    topics.emplace(std::move(name), std::move(subs).value());
  }
  Result<core::TransSnapshot> proposed = BuildMsg(tr, topics);
  if (!proposed.ok() && api == "submit" && proposed.status().message() == "topic not found") {
    // The SDKs resend the steps with the submit of a prepared msg, whose rows were expanded at
    // prepare and are what runs: a topic emptied since then must not refuse that submit.
    auto existing = co_await engine.Query(tr.gid);
    if (existing.ok() && existing->has_value()) {
      tr.steps.clear();
      tr.payloads.reset();
      proposed = BuildMsg(tr, topics);
    }
  }
  co_return proposed;
}

// The tcc/xa that `tr` would create: the global row only (branches are registered later).
Result<core::TransSnapshot> ProposeGlobalOnly(const TransRequest& tr, core::TransType type) {
  core::TransSnapshot snap;
  snap.global.gid = tr.gid;
  snap.global.trans_type = type;
  snap.global.protocol = "http";
  snap.global.options = tr.options;
  snap.global.options.wait_result = false;
  // tcc/xa keep their custom_data (DTM stores it); business_keys live there (keys_prepare.cc).
  snap.global.custom_data = tr.custom_data;
  if (Status s = CheckProtocol(tr.protocol); !s.ok()) return s;
  return snap;
}

// POST prepare|submit of a saga, msg, tcc or xa: validated and checked by the SSRF guard before
// anything is stored.
awaitable<http::Response> RouteCreate(engine::Engine& engine, TransRequest& tr,
                                      const std::string& api, const http::UrlPolicy* url_policy) {
  if (!tr.trans_type) {
    co_return ErrorResponse(Status::InvalidArgument("trans_type is required"), tr.gid);
  }
  const core::TransType type = *tr.trans_type;
  if (type == core::TransType::kWorkflow) {
    co_return ErrorResponse(Status::Unimplemented("workflow is not supported yet"), tr.gid);
  }
  if (type == core::TransType::kNotify) {
    co_return ErrorResponse(
        Status::InvalidArgument("a notification is created through POST /api/dtx/notify"), tr.gid);
  }
  // The transaction as it would be created by this request (validated before anything is stored).
  Result<core::TransSnapshot> proposed = Status::Internal("unset");
  if (type == core::TransType::kSaga) {
    proposed = BuildSaga(tr);
  } else if (type == core::TransType::kMsg) {
    proposed = co_await ProposeMsg(engine, tr, api);
  } else {
    proposed = ProposeGlobalOnly(tr, type);
  }
  if (!proposed.ok()) co_return ErrorResponse(proposed.status(), tr.gid);
  if (url_policy) {  // the SSRF guard (net_guard.h)
    if (Status s = CheckSnapshotUrls(*proposed, *url_policy); !s.ok()) {
      co_return ErrorResponse(s, tr.gid);
    }
  }
  if (api == "prepare") {
    if (type == core::TransType::kMsg && proposed->global.query_prepared.empty()) {
      co_return ErrorResponse(
          Status::InvalidArgument("query_prepared is required to prepare a msg"), tr.gid);
    }
    Status s = co_await engine.Prepare(std::move(*proposed));
    co_return s.ok() ? Ok() : ErrorResponse(s, tr.gid);
  }
  engine::Engine::SubmitRequest sr;
  sr.proposed = std::move(*proposed);
  sr.wait_result = tr.options.wait_result;
  sr.patch = PatchFrom(tr);
  sr.custom_data = tr.custom_data;
  Status s = co_await engine.Submit(std::move(sr));
  co_return s.ok() ? Ok() : ErrorResponse(s, tr.gid);
}

// POST prepare|submit|abort|forceStop|resetNextCronTime (DTM's transaction body).
awaitable<http::Response> RouteTransBody(engine::Engine& engine, const http::Request& req,
                                         const std::string& api,
                                         const http::UrlPolicy* url_policy) {
  if (req.method != "POST") co_return MethodNotAllowed(req, "POST");
  Result<TransRequest> decoded = DecodeTransRequest(req.body);
  if (!decoded.ok()) co_return ErrorResponse(decoded.status());
  TransRequest& tr = *decoded;
  if (Status s = CheckTransRequest(tr, api, engine.options().settings); !s.ok()) {
    co_return ErrorResponse(s, tr.gid);
  }
  if (api == "forceStop") {
    Status s = co_await engine.ForceStop(tr.gid);
    co_return s.ok() ? Ok() : ErrorResponse(s, tr.gid);
  }
  if (api == "resetNextCronTime") {
    Status s = co_await engine.ResetNextCronTime(tr.gid);
    co_return s.ok() ? Ok() : ErrorResponse(s, tr.gid);
  }
  if (api == "abort") {
    std::optional<bool> wait;
    if (tr.has_wait_result) wait = tr.options.wait_result;
    Status s = co_await engine.Abort(tr.gid, wait, tr.rollback_reason, PatchFrom(tr));
    co_return s.ok() ? Ok() : ErrorResponse(s, tr.gid);
  }
  co_return co_await RouteCreate(engine, tr, api, url_policy);
}

// Everything under /api/dtmsvr/: `api` is the path after the prefix; `label` (the metrics label,
// set by the caller to the route's name) becomes "unknown" when no route matches.
awaitable<http::Response> RouteDtmsvr(engine::Engine& engine, const http::Request& req,
                                      const std::string& api, std::string& label,
                                      const http::UrlPolicy* url_policy) {
  if (api == "newGid") {
    co_return Json(200,
                   json::serialize(json::object{{"gid", NewGid()}, {"dtm_result", "SUCCESS"}}));
  }
  if (api == "version") {
    co_return Json(200, json::serialize(json::object{{"version", kVersion},
                                                     {"dtm_compat", kDtmCompatVersion}}));
  }
  if (api == "query") co_return co_await RouteQuery(engine, req);
  if (api == "all") co_return co_await RouteAll(engine, req);
  if (api == "resetCronTime") co_return co_await RouteResetCronTime(engine, req);
  if (api == "subscribe" || api == "unsubscribe") {
    co_return co_await RouteSubscribe(engine, req, api, url_policy);
  }
  if (api.starts_with("topic/")) co_return co_await RouteDeleteTopic(engine, req, api);
  if (api == "scanKV") co_return co_await RouteScanKv(engine, req);
  if (api == "queryKV") co_return co_await RouteQueryKv(engine, req);
  // The remaining routes take a JSON body.
  if (api == "prepareWorkflow") {
    co_return ErrorResponse(Status::Unimplemented(fmt::format("{} is not supported yet", api)));
  }
  if (api == "registerBranch" || api == "registerTccBranch" || api == "registerXaBranch") {
    co_return co_await RouteRegisterBranch(engine, req, url_policy);
  }
  if (api == "prepare" || api == "submit" || api == "abort" || api == "forceStop" ||
      api == "resetNextCronTime") {
    co_return co_await RouteTransBody(engine, req, api, url_policy);
  }
  label = "unknown";
  co_return NoRoute(req);
}

}  // namespace

awaitable<http::Response> ApiHandler::Route(const http::Request& req, std::string& api) {
  const std::string& path = req.path;
  // Every route: a web page on another origin must not drive the coordinator (browser_guard.h).
  if (auto refused = RefuseCrossSite(req, allowed_origins_)) {
    api = "refused";
    co_return std::move(*refused);
  }
  if (Status s = CheckRequestText(req); !s.ok()) co_return ErrorResponse(s);
  if (path == "/api/ping") {
    api = "ping";
    co_return Json(200, R"({"msg":"pong"})");
  }
  if (path == "/api/metrics") {
    api = "metrics";
    co_await engine_.RefreshMonitoring();  // gauges that need a store read (bounded, <= 1/s)
    http::Response r = Json(200, metrics_.Render());
    r.content_type = "text/plain; version=0.0.4";
    co_return r;
  }
  if (admin_ != nullptr && AdminRoutes::Owns(path)) co_return co_await admin_->Handle(req, api);
  if (path == "/api/json-rpc") {
    api = "json-rpc";
    co_return ErrorResponse(Status::Unimplemented("JSON-RPC is not supported yet"));
  }
  if (IsNotifyPath(path)) {  // notify_routes.cc
    co_return co_await HandleNotify(engine_, req, api, url_policy_.get());
  }
  if (IsSagaDefPath(path))
    co_return co_await HandleSagaDefs(engine_, req, api, url_policy_.get());  // saga_def_routes.cc
  if (path.rfind(kPrefix, 0) != 0) co_return NoRoute(req);
  const std::string name = path.substr(kPrefix.size());
  // The metrics label is the route's name or template, never request text (a topic's name, an
  // unknown path): its values stay a fixed set (metrics.h).
  api = name.starts_with("topic/") ? std::string("topic/{name}") : name;
  co_return co_await RouteDtmsvr(engine_, req, name, api, url_policy_.get());
}

}  // namespace dtx::api
