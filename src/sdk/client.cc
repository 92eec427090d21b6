#include "dtx/client.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <optional>
#include <thread>
#include <utility>

#include "http/client.h"
#include "http/server.h"
#include "http/tls.h"
#include "http/url_internal.h"
#include "sdk/client_internal.h"

// GCC 12 reports a false -Wmismatched-new-delete for Asio's awaitable frames (GCC bug 109224; see
// src/http/client.cc).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace dtx {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;
using Answer = sdk_internal::ClientAnswer;

std::string Truncated(std::string_view s, size_t max = 512) {
  if (s.size() <= max) return std::string(s);
  return std::string(s.substr(0, max)) + "...";
}

// The "message" member of a JSON error body, else the body itself.
std::string ErrorMessage(const std::string& body) {
  json::error_code ec;
  json::value v = json::parse(body, ec);
  if (!ec && v.is_object()) {
    if (const json::value* m = v.as_object().if_contains("message"); m && m->is_string()) {
      return std::string(m->as_string());
    }
  }
  return Truncated(body);
}

// The "code" member of a JSON error body ("UNAUTHENTICATED"), else empty.
std::string ErrorCodeOf(const std::string& body) {
  json::error_code ec;
  json::value v = json::parse(body, ec);
  if (!ec && v.is_object()) {
    if (const json::value* c = v.as_object().if_contains("code"); c && c->is_string()) {
      return std::string(c->as_string());
    }
  }
  return {};
}

// A 200 answer to prepare/submit/abort must be exactly {"dtm_result":"SUCCESS"} (§2.1: SDKs treat a
// body containing FAILURE as an error).
Status CheckSuccessBody(const Answer& a) {
  if (a.body.find("FAILURE") == std::string::npos) {
    json::error_code ec;
    json::value v = json::parse(a.body, ec);
    if (!ec && v.is_object()) {
      const json::value* r = v.as_object().if_contains("dtm_result");
      if (r && r->is_string() && r->as_string() == "SUCCESS") return Status::Ok();
    }
  }
  return Status::Internal("unexpected answer to a 200: " + Truncated(a.body));
}

std::string StringField(const json::object& o, std::string_view key, Status& error) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return {};
  if (!v->is_string()) {
    error = Status::Internal("query answer: '" + std::string(key) + "' is not a string");
    return {};
  }
  return std::string(v->as_string());
}

}  // namespace

Result<TransactionInfo> ParseQueryAnswer(const std::string& body) {
  json::error_code ec;
  json::value root = json::parse(body, ec);
  if (ec) return Status::Internal("query answer is not JSON: " + ec.message());
  if (!root.is_object()) return Status::Internal("query answer is not an object");
  const json::value* t = root.as_object().if_contains("transaction");
  if (t == nullptr) return Status::Internal("query answer has no 'transaction'");
  if (t->is_null()) return Status::NotFound("no transaction with this gid");
  if (!t->is_object()) return Status::Internal("query answer: 'transaction' is not an object");
  const json::object& to = t->as_object();
  Status error;
  TransactionInfo info;
  info.gid = StringField(to, "gid", error);
  info.trans_type = StringField(to, "trans_type", error);
  info.status = StringField(to, "status", error);
  info.rollback_reason = StringField(to, "rollback_reason", error);
  info.custom_data = StringField(to, "custom_data", error);
  if (const json::value* b = root.as_object().if_contains("branches"); b && !b->is_null()) {
    if (!b->is_array()) return Status::Internal("query answer: 'branches' is not an array");
    for (const json::value& e : b->as_array()) {
      if (!e.is_object()) return Status::Internal("query answer: a branch is not an object");
      const json::object& bo = e.as_object();
      BranchInfo branch;
      branch.branch_id = StringField(bo, "branch_id", error);
      branch.op = StringField(bo, "op", error);
      branch.status = StringField(bo, "status", error);
      branch.url = StringField(bo, "url", error);
      info.branches.push_back(std::move(branch));
    }
  }
  if (!error.ok()) return error;
  if (info.status.empty()) return Status::Internal("query answer: transaction without status");
  return info;
}

namespace {

// Runs one http::Client exchange to completion on `ioc` (the caller holds Impl::mu).
asio::awaitable<void> SendInto(http::Client* client, http::ClientRequest request,
                               std::optional<Result<http::ClientResponse>>* out) {
  out->emplace(co_await client->Send(std::move(request)));
}

}  // namespace

Status CheckExtraHeader(std::string_view name, std::string_view value) {
  const std::string shown(name.substr(0, 64));
  if (!http::IsHttpToken(name)) {
    return Status::InvalidArgument("ClientOptions::extra_headers: '" + shown +
                                   "' is not a valid header name");
  }
  if (!http::IsPlainHeaderValue(value)) {
    return Status::InvalidArgument("ClientOptions::extra_headers: the value of '" + shown +
                                   "' contains CR, LF or another control character");
  }
  if (http::IsReservedRequestHeader(name)) {
    return Status::InvalidArgument("ClientOptions::extra_headers: '" + shown +
                                   "' is set by the client itself (Host and hop-by-hop headers "
                                   "cannot be given)");
  }
  if (name.size() + value.size() > kMaxClientHeaderBytes) {
    return Status::InvalidArgument("ClientOptions::extra_headers: '" + shown + "' is larger than " +
                                   std::to_string(kMaxClientHeaderBytes) + " bytes");
  }
  return Status::Ok();
}

Client::Impl::Impl(const std::string& server_url, ClientOptions opts) : options(std::move(opts)) {
  auto parsed = http::ParseHttpUrl(server_url);
  if (!parsed.ok()) {
    config_status = Status::InvalidArgument("coordinator URL '" + server_url +
                                            "': " + parsed.status().message());
    return;
  }
  if (parsed->target.find('?') != std::string::npos) {
    config_status =
        Status::InvalidArgument("coordinator URL '" + server_url + "' must not have a query");
    return;
  }
  origin = http::detail::Origin(*parsed);
  base_target = parsed->target == "/" ? std::string() : parsed->target;
  while (!base_target.empty() && base_target.back() == '/') base_target.pop_back();

  if (options.extra_headers.size() > kMaxClientExtraHeaders) {
    config_status = Status::InvalidArgument("ClientOptions::extra_headers: more than " +
                                            std::to_string(kMaxClientExtraHeaders) + " headers");
    return;
  }
  headers.emplace_back("Content-Type", "application/json");
  headers.emplace_back("User-Agent", "libdtx");
  for (const auto& [name, value] : options.extra_headers) {
    if (Status s = CheckExtraHeader(name, value); !s.ok()) {
      config_status = s;
      return;
    }
    headers.emplace_back(name, value);
  }

  http::ClientOptions http_options;
  http_options.max_connections_per_host = 1;  // one exchange at a time (mu)
  http_options.max_idle_per_host = 1;
  http_options.max_response_bytes = options.max_response_bytes;
  http_options.max_redirects = 0;  // the coordinator does not redirect; an answer is an answer
  http_options.max_idle = options.max_idle;
  if (!options.ca_file.empty()) {
    auto tls = http::MakeClientTlsContext(options.ca_file);
    if (!tls.ok()) {
      config_status = Status::InvalidArgument("ClientOptions::ca_file: " + tls.status().message());
      return;
    }
    http_options.tls = std::move(tls).value();
  }  // else: the system's trust store, built on the first https request
  http = std::make_unique<http::Client>(ioc.get_executor(), std::move(http_options));
}

Client::Impl::~Impl() {
  http.reset();  // closes the pooled connection; nothing runs on ioc any more
}

Result<Answer> Client::Impl::Exchange(std::string_view method, const std::string& target,
                                      std::string body, std::chrono::milliseconds timeout) {
  if (!config_status.ok()) return config_status;
  http::ClientRequest request;
  request.method = std::string(method);
  request.url = origin + target;
  request.headers = headers;
  request.body = std::move(body);
  request.timeout = timeout.count() > 0 ? timeout : options.request_timeout;

  std::lock_guard lock(mu);
  std::optional<Result<http::ClientResponse>> out;
  std::optional<Status> failure;
  asio::co_spawn(ioc, SendInto(http.get(), std::move(request), &out),
                 [&failure](const std::exception_ptr& e) {
                   if (!e) return;
                   try {
                     std::rethrow_exception(e);
                   } catch (const std::exception& ex) {
                     failure.emplace(Status::Internal(std::string("client: ") + ex.what()));
                   } catch (...) {
                     failure.emplace(Status::Internal("client: unknown exception"));
                   }
                 });
  ioc.restart();
  ioc.run();
  if (failure) return *failure;
  if (!out) return Status::Internal("client: exchange did not complete");
  if (!out->ok()) return out->status();
  return Answer{(*out)->status, std::move((*out)->body)};
}

Status Client::Impl::Post(std::string_view op, const std::string& body,
                          std::chrono::milliseconds timeout) {
  auto a = Exchange("POST", base_target + "/" + std::string(op), body, timeout);
  if (!a.ok()) return a.status();
  if (Status s = sdk_internal::StatusOfAnswer(a->status, a->body); !s.ok()) return s;
  return CheckSuccessBody(*a);
}

std::string Client::Impl::RootTarget() const {
  std::string root = base_target;
  if (root.ends_with("/api/dtmsvr"))
    root.resize(root.size() - std::string_view("/api/dtmsvr").size());
  return root;
}

Client::Client(std::string server_url, ClientOptions options) : server_url_(std::move(server_url)) {
  while (!server_url_.empty() && server_url_.back() == '/') server_url_.pop_back();
  impl_ = std::make_unique<Impl>(server_url_, std::move(options));
}

Client::~Client() = default;

Result<std::string> Client::NewGid() {
  auto a = impl_->Exchange("GET", impl_->base_target + "/newGid", {});
  if (!a.ok()) return a.status();
  if (Status s = sdk_internal::StatusOfAnswer(a->status, a->body); !s.ok()) return s;
  json::error_code ec;
  json::value v = json::parse(a->body, ec);
  if (!ec && v.is_object()) {
    const json::value* g = v.as_object().if_contains("gid");
    if (g && g->is_string() && !g->as_string().empty()) return std::string(g->as_string());
  }
  return Status::Internal("newGid: unexpected answer: " + Truncated(a->body));
}

Status Client::Submit(const std::string& json_body) { return impl_->Post("submit", json_body); }
Status Client::Prepare(const std::string& json_body) { return impl_->Post("prepare", json_body); }
Status Client::Abort(const std::string& json_body) { return impl_->Post("abort", json_body); }
Status Client::RegisterBranch(const std::string& json_body) {
  return impl_->Post("registerBranch", json_body);
}

Result<TransactionInfo> Client::Query(const std::string& gid) {
  if (gid.empty()) return Status::InvalidArgument("query: empty gid");
  auto a = impl_->Exchange("GET", impl_->base_target + "/query?gid=" + http::UrlEncode(gid), {});
  if (!a.ok()) return a.status();
  if (Status s = sdk_internal::StatusOfAnswer(a->status, a->body); !s.ok()) return s;
  auto info = ParseQueryAnswer(a->body);
  if (!info.ok() && info.status().code() == Code::kNotFound) {
    return Status::NotFound("no transaction with gid '" + gid + "'");
  }
  return info;
}

Result<TransactionInfo> Client::WaitFinal(const std::string& gid, std::chrono::milliseconds timeout,
                                          std::chrono::milliseconds poll_interval) {
  const auto deadline = Clock::now() + timeout;
  if (poll_interval <= std::chrono::milliseconds(0)) poll_interval = std::chrono::milliseconds(1);
  std::string last = "no answer";
  for (;;) {
    auto r = Query(gid);
    if (r.ok()) {
      if (r->is_final()) return r;
      last = "status '" + r->status + "'";
    } else if (r.status().retryable()) {
      last = r.status().ToString();
    } else {
      return r;
    }
    auto now = Clock::now();
    if (now >= deadline) break;
    std::this_thread::sleep_for(std::min<Clock::duration>(poll_interval, deadline - now));
  }
  return Status::Timeout("transaction '" + gid + "' not final after " +
                         std::to_string(timeout.count()) + " ms (last: " + last + ")");
}

Status sdk_internal::StatusOfAnswer(int http_status, const std::string& body,
                                    std::string_view context) {
  const std::string prefix = context.empty() ? std::string() : std::string(context) + ": ";
  const std::string message = prefix + ErrorMessage(body);
  switch (http_status) {
    case 200:
      return Status::Ok();
    case 409:
      return Status::Conflict(message);
    case 425:
      return Status::Ongoing(message);
    case 400:
      return Status::InvalidArgument(message);
    case 404:
      return Status::NotFound(message);
    case 413:
      return Status::TooLarge(message);
    case 503:
      return Status::Unavailable(message);
    default:
      break;
  }
  std::string reason = ErrorCodeOf(body);
  if (reason.empty()) reason = "HTTP_" + std::to_string(http_status);
  ErrorInfo info{std::move(reason), {{"http_status", std::to_string(http_status)}}};
  const std::string head = prefix + "HTTP " + std::to_string(http_status);
  if (http_status == 401) {
    return Status::InvalidArgument(head +
                                   " (unauthenticated: the coordinator wants an API token; "
                                   "pass it in ClientOptions::extra_headers as Authorization: "
                                   "Bearer TOKEN): " +
                                   ErrorMessage(body))
        .WithInfo(std::move(info));
  }
  if (http_status == 403) {
    return Status::InvalidArgument(head + " (forbidden): " + ErrorMessage(body))
        .WithInfo(std::move(info));
  }
  return Status::Internal(head + ": " + ErrorMessage(body)).WithInfo(std::move(info));
}

}  // namespace dtx
