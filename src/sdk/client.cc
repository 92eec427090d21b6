#include "dtx/client.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "http/client.h"
#include "http/server.h"

namespace dtx {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

struct Answer {
  int status = 0;
  std::string body;
};

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

// Non-200 answers -> Status (PROTOCOL.md §2.1).
Status StatusOfAnswer(const Answer& a) {
  switch (a.status) {
    case 200:
      return Status::Ok();
    case 409:
      return Status::Conflict(ErrorMessage(a.body));
    case 425:
      return Status::Ongoing(ErrorMessage(a.body));
    case 400:
      return Status::InvalidArgument(ErrorMessage(a.body));
    case 404:
      return Status::NotFound(ErrorMessage(a.body));
    case 413:
      return Status::TooLarge(ErrorMessage(a.body));
    case 503:
      return Status::Unavailable(ErrorMessage(a.body));
    default:
      return Status::Internal("HTTP " + std::to_string(a.status) + ": " + ErrorMessage(a.body));
  }
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

struct Client::Impl {
  ClientOptions options;
  Status url_status;
  std::string host;
  uint16_t port = 0;
  std::string base_target;  // "/api/dtmsvr", no trailing '/'

  std::mutex mu;  // one exchange at a time; guards everything below
  asio::io_context ioc{1};
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;
  Clock::time_point last_used{};

  void Close() {
    if (stream) {
      beast::error_code ignored;
      stream->socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
      stream->socket().close(ignored);
      stream.reset();
    }
    buffer.clear();
  }

  // One attempt on the current (or a new) connection. `stale` is set when the failure looks like a
  // kept-alive connection that the server had already closed (nothing was answered).
  static asio::awaitable<Result<Answer>> Attempt(Impl* self, bhttp::verb verb, std::string target,
                                                 std::string body, Clock::time_point deadline,
                                                 bool* stale) {
    *stale = false;
    if (!self->stream) {
      asio::ip::tcp::resolver resolver(self->ioc);
      self->stream.emplace(self->ioc);
      self->stream->expires_at(deadline);
      // The resolver has no deadline of its own; numeric hosts (the normal case) resolve at once.
      auto [rec, results] =
          co_await resolver.async_resolve(self->host, std::to_string(self->port), kUseTuple);
      if (rec) co_return Status::Unavailable("resolve " + self->host + ": " + rec.message());
      auto [cec, endpoint] = co_await self->stream->async_connect(results, kUseTuple);
      (void)endpoint;
      if (cec == beast::error::timeout) co_return Status::Timeout("connect: deadline passed");
      if (cec) {
        co_return Status::Unavailable("connect to " + self->host + ":" +
                                      std::to_string(self->port) + ": " + cec.message());
      }
      self->stream->socket().set_option(asio::ip::tcp::no_delay(true));
    }
    bhttp::request<bhttp::string_body> req{verb, target, 11};
    req.set(bhttp::field::host, self->host + ":" + std::to_string(self->port));
    req.set(bhttp::field::user_agent, "libdtx");
    req.set(bhttp::field::content_type, "application/json");
    req.keep_alive(true);
    if (verb != bhttp::verb::get || !body.empty()) req.body() = std::move(body);
    req.prepare_payload();

    self->stream->expires_at(deadline);
    auto [wec, written] = co_await bhttp::async_write(*self->stream, req, kUseTuple);
    (void)written;
    if (wec) {
      *stale = wec != beast::error::timeout;
      if (wec == beast::error::timeout) co_return Status::Timeout("write: deadline passed");
      co_return Status::Unavailable("write: " + wec.message());
    }
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(self->options.max_response_bytes);
    auto [rec, read] = co_await bhttp::async_read(*self->stream, self->buffer, parser, kUseTuple);
    (void)read;
    if (rec) {
      if (rec == beast::error::timeout) co_return Status::Timeout("read: deadline passed");
      if (rec == bhttp::error::body_limit) {
        co_return Status::TooLarge("answer larger than " +
                                   std::to_string(self->options.max_response_bytes) + " bytes");
      }
      *stale = rec == bhttp::error::end_of_stream || rec == asio::error::connection_reset ||
               rec == asio::error::eof;
      co_return Status::Unavailable("read: " + rec.message());
    }
    Answer answer;
    answer.status = static_cast<int>(parser.get().result_int());
    bool keep_alive = parser.get().keep_alive();
    answer.body = std::move(parser.get().body());
    if (!keep_alive) self->Close();
    co_return answer;
  }

  // co_spawn needs a default-constructible result, which Result<T> is not: the answer goes to
  // `out`.
  static asio::awaitable<void> AttemptInto(Impl* self, bhttp::verb verb, std::string target,
                                           std::string body, Clock::time_point deadline,
                                           bool* stale, std::optional<Result<Answer>>* out) {
    out->emplace(co_await Attempt(self, verb, std::move(target), std::move(body), deadline, stale));
  }

  // Runs one attempt to completion on the private io_context (the caller holds `mu`).
  Result<Answer> RunAttempt(bhttp::verb verb, const std::string& target, const std::string& body,
                            Clock::time_point deadline, bool* stale) {
    std::optional<Result<Answer>> out;
    std::optional<Status> failure;
    asio::co_spawn(ioc, AttemptInto(this, verb, target, body, deadline, stale, &out),
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
    return std::move(*out);
  }

  Result<Answer> Exchange(bhttp::verb verb, const std::string& target, const std::string& body) {
    if (!url_status.ok()) return url_status;
    std::lock_guard lock(mu);
    const auto deadline = Clock::now() + options.request_timeout;
    for (int attempt = 0;; ++attempt) {
      if (stream && Clock::now() - last_used > options.max_idle) Close();
      const bool reused = stream.has_value();
      bool stale = false;
      Result<Answer> r = RunAttempt(verb, target, body, deadline, &stale);
      if (r.ok()) {
        last_used = Clock::now();
        return r;
      }
      Close();
      // A kept-alive connection closed by the server just before we used it: the server never saw
      // the request, so one retry on a fresh connection is safe.
      if (!(reused && stale && attempt == 0 && Clock::now() < deadline)) return r;
    }
  }

  // POST /<op> whose only good answer is 200 {"dtm_result":"SUCCESS"}.
  Status Post(std::string_view op, const std::string& body) {
    auto a = Exchange(bhttp::verb::post, base_target + "/" + std::string(op), body);
    if (!a.ok()) return a.status();
    if (Status s = StatusOfAnswer(*a); !s.ok()) return s;
    return CheckSuccessBody(*a);
  }
};

Client::Client(std::string server_url, ClientOptions options)
    : server_url_(std::move(server_url)), impl_(std::make_unique<Impl>()) {
  while (!server_url_.empty() && server_url_.back() == '/') server_url_.pop_back();
  impl_->options = options;
  auto parsed = http::ParseHttpUrl(server_url_);
  if (!parsed.ok()) {
    impl_->url_status = Status::InvalidArgument("coordinator URL '" + server_url_ +
                                                "': " + parsed.status().message());
    return;
  }
  if (parsed->target.find('?') != std::string::npos) {
    impl_->url_status =
        Status::InvalidArgument("coordinator URL '" + server_url_ + "' must not have a query");
    return;
  }
  impl_->host = parsed->host;
  impl_->port = parsed->port;
  impl_->base_target = parsed->target == "/" ? std::string() : parsed->target;
  while (!impl_->base_target.empty() && impl_->base_target.back() == '/') {
    impl_->base_target.pop_back();
  }
}

Client::~Client() = default;

Result<std::string> Client::NewGid() {
  auto a = impl_->Exchange(bhttp::verb::get, impl_->base_target + "/newGid", {});
  if (!a.ok()) return a.status();
  if (Status s = StatusOfAnswer(*a); !s.ok()) return s;
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
  auto a = impl_->Exchange(bhttp::verb::get,
                           impl_->base_target + "/query?gid=" + http::UrlEncode(gid), {});
  if (!a.ok()) return a.status();
  if (Status s = StatusOfAnswer(*a); !s.ok()) return s;
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

}  // namespace dtx
