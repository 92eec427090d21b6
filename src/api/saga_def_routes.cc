#include "api/saga_def_routes.h"

#include <fmt/format.h>

#include <boost/json.hpp>
#include <charconv>
#include <chrono>
#include <optional>

#include "api/codec.h"
#include "api/net_guard.h"
#include "api/routes.h"
#include "api/saga_defs.h"
#include "api/trans_build.h"
#include "util/clock.h"

// GCC 12 reports a false -Wmismatched-new-delete for Asio's awaitable frames (GCC bug 109224; see
// src/http/client.cc).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace dtx::api {

namespace json = boost::json;
using boost::asio::awaitable;

namespace {

constexpr int kPutAttempts = 8;

http::Response JsonAnswer(int status, std::string body) {
  http::Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The stored versions of one name: [{"version","create_time","definition"}], oldest first. A value
// that does not parse reads as no versions (it was written by this file, so that is a bug or a
// hand edit; the next PUT replaces it).
json::array StoredVersions(const std::string& v) {
  boost::system::error_code ec;
  json::value parsed = json::parse(v, ec);
  if (ec || !parsed.is_object()) return {};
  const json::value* versions = parsed.get_object().if_contains("versions");
  if (versions == nullptr || !versions->is_array()) return {};
  return versions->get_array();
}

int64_t VersionOf(const json::value& entry) {
  const json::value* v = entry.is_object() ? entry.get_object().if_contains("version") : nullptr;
  return v != nullptr && v->is_int64() ? v->get_int64() : 0;
}

awaitable<Result<std::optional<store::KvRow>>> ReadRow(engine::Engine& engine,
                                                       const std::string& name) {
  auto rows = co_await engine.QueryKv(kSagaDefCat, name);
  if (!rows.ok()) co_return rows.status();
  if (rows->empty()) co_return std::optional<store::KvRow>();
  co_return std::optional<store::KvRow>(std::move(rows->front()));
}

// The SSRF guard (--branch-url-allow) on every step's URLs: kInvalidArgument naming the step and
// the URL. Checked at PUT (a definition that could never run is refused) and again at every
// submit by name (the list may have changed since the PUT; a stored definition gets no pass).
Status CheckDefinitionUrls(const SagaDefinition& def, const http::UrlPolicy* policy) {
  if (policy == nullptr) return Status::Ok();
  for (const SagaDefStep& step : def.steps) {
    for (const std::string* url : {&step.action, &step.compensate}) {
      if (url->empty()) continue;
      if (Status s = policy->CheckUrl(*url); !s.ok()) {
        return Status::InvalidArgument(fmt::format("step {} {} url {}: {}", step.name,
                                                   url == &step.action ? "action" : "compensate",
                                                   *url, s.message()));
      }
    }
  }
  return Status::Ok();
}

awaitable<http::Response> Put(engine::Engine& engine, const std::string& name,
                              const std::string& body, const http::UrlPolicy* policy) {
  auto def = ParseSagaDefinition(body, engine.options().settings.max_retry_limit);
  if (!def.ok()) co_return ErrorResponse(def.status());
  if (Status s = CheckDefinitionUrls(*def, policy); !s.ok()) co_return ErrorResponse(s);
  json::value definition = json::parse(body);  // valid: ParseSagaDefinition parsed it
  for (int attempt = 0; attempt < kPutAttempts; ++attempt) {
    auto row = co_await ReadRow(engine, name);
    if (!row.ok()) co_return ErrorResponse(row.status());
    json::array versions = *row ? StoredVersions((**row).v) : json::array();
    const int64_t latest = versions.empty() ? 0 : VersionOf(versions.back());
    if (!versions.empty() && versions.back().as_object().if_contains("definition") != nullptr &&
        versions.back().as_object().at("definition") == definition) {
      co_return JsonAnswer(200, json::serialize(json::object{
                                    {"name", name}, {"version", latest}, {"changed", false}}));
    }
    versions.push_back(json::object{
        {"version", latest + 1}, {"create_time", NowMs()}, {"definition", definition}});
    while (versions.size() > kMaxSagaVersionsKept) versions.erase(versions.begin());
    std::string value = json::serialize(json::object{{"versions", std::move(versions)}});
    const int64_t expected = *row ? (**row).version : 0;
    Status s = co_await engine.PutKv(kSagaDefCat, name, std::move(value), expected);
    if (s.ok()) {
      co_return JsonAnswer(200, json::serialize(json::object{
                                    {"name", name}, {"version", latest + 1}, {"changed", true}}));
    }
    if (s.code() != Code::kConflict) co_return ErrorResponse(s);
  }
  co_return ErrorResponse(
      Status::Unavailable(fmt::format("saga {} keeps changing concurrently; retry", name)));
}

awaitable<http::Response> Get(engine::Engine& engine, const std::string& name) {
  auto row = co_await ReadRow(engine, name);
  if (!row.ok()) co_return ErrorResponse(row.status());
  json::array versions = *row ? StoredVersions((**row).v) : json::array();
  if (versions.empty()) {
    co_return ErrorResponse(Status::NotFound(fmt::format("no saga definition '{}'", name)));
  }
  co_return JsonAnswer(
      200, json::serialize(json::object{{"name", name}, {"versions", std::move(versions)}}));
}

Result<int64_t> QueryInt(const http::Request& req, std::string_view name, int64_t fallback,
                         int64_t lo, int64_t hi) {
  auto v = req.QueryParam(name);
  if (!v || v->empty()) return fallback;
  int64_t out = 0;
  auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (ec != std::errc() || end != v->data() + v->size() || out < lo || out > hi) {
    return Status::InvalidArgument(fmt::format("{} must be an integer in [{}, {}]", name, lo, hi));
  }
  return out;
}

awaitable<http::Response> List(engine::Engine& engine, const http::Request& req) {
  auto position = QueryInt(req, "position", 0, 1, INT64_MAX);
  if (!position.ok()) co_return ErrorResponse(position.status());
  auto limit = QueryInt(req, "limit", 100, 1, 1000);
  if (!limit.ok()) co_return ErrorResponse(limit.status());
  auto page = co_await engine.ScanKv(kSagaDefCat, *position, static_cast<int>(*limit));
  if (!page.ok()) co_return ErrorResponse(page.status());
  json::array sagas;
  for (const store::KvRow& row : page->rows) {
    json::array versions = StoredVersions(row.v);
    sagas.push_back(json::object{{"name", row.k},
                                 {"version", versions.empty() ? 0 : VersionOf(versions.back())},
                                 {"update_time", FormatTimeMs(row.update_time_ms)}});
  }
  std::string next = page->next_before_id > 0 ? std::to_string(page->next_before_id) : "";
  co_return JsonAnswer(
      200, json::serialize(json::object{{"sagas", std::move(sagas)}, {"next_position", next}}));
}

awaitable<http::Response> Submit(engine::Engine& engine, const std::string& name,
                                 const std::string& body, const http::UrlPolicy* policy) {
  auto row = co_await ReadRow(engine, name);
  if (!row.ok()) co_return ErrorResponse(row.status());
  json::array versions = *row ? StoredVersions((**row).v) : json::array();
  if (versions.empty()) {
    co_return ErrorResponse(Status::NotFound(fmt::format("no saga definition '{}'", name)));
  }
  const json::object& newest = versions.back().as_object();
  const int64_t version = VersionOf(newest);
  const json::value* stored = newest.if_contains("definition");
  const std::string text = stored != nullptr ? json::serialize(*stored) : std::string();
  auto def = ParseSagaDefinition(text, engine.options().settings.max_retry_limit);
  if (!def.ok()) {
    co_return ErrorResponse(Status::InvalidArgument(fmt::format(
        "saga {} version {} no longer validates: {}", name, version, def.status().message())));
  }
  if (Status s = CheckDefinitionUrls(*def, policy); !s.ok()) {
    co_return ErrorResponse(
        Status::InvalidArgument(fmt::format("saga {} version {}: {}", name, version, s.message())));
  }
  auto request = BuildSubmitByName(*def, name, version, body, NewGid());
  if (!request.ok()) co_return ErrorResponse(request.status());
  auto proposed = BuildSaga(*request);
  if (!proposed.ok()) co_return ErrorResponse(proposed.status(), request->gid);
  engine::Engine::SubmitRequest sr;
  sr.proposed = std::move(*proposed);
  sr.wait_result = request->options.wait_result;
  sr.custom_data = request->custom_data;
  const std::string gid = request->gid;
  Status s = co_await engine.Submit(std::move(sr));
  if (!s.ok()) co_return ErrorResponse(s, gid);
  co_return JsonAnswer(200, json::serialize(json::object{{"dtm_result", "SUCCESS"}, {"gid", gid}}));
}

}  // namespace

bool IsSagaDefPath(std::string_view path) {
  return path == kSagaDefPrefix ||
         (path.starts_with(kSagaDefPrefix) && path[kSagaDefPrefix.size()] == '/');
}

awaitable<http::Response> HandleSagaDefs(engine::Engine& engine, const http::Request& req,
                                         std::string& api, const http::UrlPolicy* url_policy) {
  std::string_view rest = std::string_view(req.path).substr(kSagaDefPrefix.size());
  // 405 with the Allow header RFC 9110 §15.5.6 requires.
  auto not_allowed = [&](std::string_view allow) {
    http::Response r =
        JsonAnswer(405, ErrorBody(fmt::format("{} is not allowed on {}", req.method, req.path),
                                  "METHOD_NOT_ALLOWED"));
    r.headers.emplace_back("Allow", std::string(allow));
    return r;
  };
  if (rest.empty() || rest == "/") {
    api = "sagas";
    if (req.method != "GET") co_return not_allowed("GET");
    co_return co_await List(engine, req);
  }
  rest.remove_prefix(1);
  bool submit = false;
  if (rest.ends_with("/submit")) {
    submit = true;
    rest.remove_suffix(std::string_view("/submit").size());
  }
  const std::string name = http::UrlDecode(rest);
  if (Status s = ValidateSagaName(name); !s.ok()) co_return ErrorResponse(s);
  if (submit) {
    api = "sagas/submit";
    if (req.method != "POST") co_return not_allowed("POST");
    co_return co_await Submit(engine, name, req.body, url_policy);
  }
  api = "sagas/name";
  if (req.method == "PUT") co_return co_await Put(engine, name, req.body, url_policy);
  if (req.method == "GET") co_return co_await Get(engine, name);
  co_return not_allowed("GET, PUT");
}

}  // namespace dtx::api
