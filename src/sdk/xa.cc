// The application side of XA (include/dtx/xa.h, PROTOCOL.md §1.8).
#include "dtx/xa.h"

#include <boost/json.hpp>
#include <exception>
#include <mutex>
#include <utility>

#include "dtx/tcc.h"
#include "http/client.h"
#include "sdk/blocking_http.h"
#include "sdk/business_keys_internal.h"

namespace dtx {
namespace {

namespace json = boost::json;

constexpr std::chrono::milliseconds kDefaultActionTimeout{3000};
// The coordinator refuses a rollback_reason over 1024 bytes (PROTOCOL.md §2.5).
constexpr size_t kMaxRollbackReasonBytes = 1000;

Status ValidateOptions(const XaOptions& o) {
  for (const auto& [name, v] : {std::pair{"timeout_to_fail", o.timeout_to_fail_s},
                                std::pair{"retry_interval", o.retry_interval_s},
                                std::pair{"request_timeout", o.request_timeout_s}}) {
    if (v && *v < 0) return Status::InvalidArgument(std::string("xa: negative ") + name);
  }
  if (o.action_timeout.count() < 0) return Status::InvalidArgument("xa: negative action_timeout");
  if (Status s = CheckBusinessKeys(o.business_keys, o.on_busy); !s.ok()) {
    return Status::InvalidArgument("xa: " + s.message());
  }
  return Status::Ok();
}

std::chrono::milliseconds ActionTimeout(const XaOptions& o) {
  if (o.action_timeout.count() > 0) return o.action_timeout;
  if (o.request_timeout_s) return std::chrono::milliseconds(*o.request_timeout_s * 1000);
  return kDefaultActionTimeout;
}

}  // namespace

std::string BuildXaTransBody(XaPhase phase, const std::string& gid, const XaOptions& options,
                             const std::string& rollback_reason) {
  json::object body;
  body["gid"] = gid;
  body["trans_type"] = "xa";
  if (options.wait_result) body["wait_result"] = true;
  if (options.timeout_to_fail_s) body["timeout_to_fail"] = *options.timeout_to_fail_s;
  if (options.request_timeout_s) body["request_timeout"] = *options.request_timeout_s;
  if (options.retry_interval_s) body["retry_interval"] = *options.retry_interval_s;
  if (!options.branch_headers.empty()) {
    json::object headers;
    for (const auto& [k, v] : options.branch_headers) headers[k] = v;
    body["branch_headers"] = std::move(headers);
  }
  // A dtx extension, at prepare only: the prepare waits for the keys (docs/tcc.md "Business
  // keys"); the coordinator keeps them until the transaction is final.
  if (phase == XaPhase::kPrepare) {
    sdk_internal::AddBusinessKeys(body, options.business_keys, options.on_busy);
  }
  if (phase == XaPhase::kAbort && !rollback_reason.empty()) {
    body["rollback_reason"] = rollback_reason;
  }
  return json::serialize(body);
}

std::string BuildXaActionUrl(std::string_view url, const std::string& server_url,
                             const std::string& gid, const std::string& branch_id) {
  std::string out(url);
  if (out.find('?') == std::string::npos) {
    out.push_back('?');
  } else if (out.back() != '?' && out.back() != '&') {
    out.push_back('&');
  }
  // The phase-2 URL is the action URL itself (DTM's XaGlobalTransaction does the same).
  out += "branch_id=" + http::UrlEncode(branch_id);
  out += "&dtm=" + http::UrlEncode(server_url);
  out += "&gid=" + http::UrlEncode(gid);
  out += "&op=action&phase2_url=" + http::UrlEncode(std::string(url));
  out += "&trans_type=xa";
  return out;
}

struct Xa::Impl {
  std::string server_url;
  std::string gid;
  XaOptions options;
  std::mutex mu;  // guards ids and first_error
  BranchIdGenerator ids;
  std::optional<Status> first_error;

  Status Record(Status s) {
    std::lock_guard lock(mu);
    if (!first_error) first_error = s;
    return s;
  }
};

Xa::Xa(std::string server_url, std::string gid, XaOptions options)
    : impl_(std::make_unique<Impl>()) {
  while (!server_url.empty() && server_url.back() == '/') server_url.pop_back();
  impl_->server_url = std::move(server_url);
  impl_->gid = std::move(gid);
  impl_->options = std::move(options);
}
Xa::Xa(Xa&&) noexcept = default;
Xa& Xa::operator=(Xa&&) noexcept = default;
Xa::~Xa() = default;

const std::string& Xa::gid() const { return impl_->gid; }
const std::string& Xa::server_url() const { return impl_->server_url; }
std::optional<Status> Xa::first_error() const {
  std::lock_guard lock(impl_->mu);
  return impl_->first_error;
}

Result<std::string> Xa::CallBranch(std::string_view payload, std::string_view url) {
  Impl& x = *impl_;
  if (url.empty()) return x.Record(Status::InvalidArgument("xa: empty branch URL"));
  std::string branch_id;
  {
    std::lock_guard lock(x.mu);
    auto id = x.ids.Next();
    if (!id.ok()) {
      if (!x.first_error) x.first_error = id.status();
      return id.status();
    }
    branch_id = std::move(*id);
  }
  http::ClientRequest call;
  call.method = "POST";  // always POST for xa (PROTOCOL.md §3.2)
  call.url = BuildXaActionUrl(url, x.server_url, x.gid, branch_id);
  bool has_content_type = false;
  for (const auto& [k, v] : x.options.branch_headers) {
    has_content_type = has_content_type || sdk_internal::IEquals(k, "content-type");
    call.headers.emplace_back(k, v);
  }
  if (!has_content_type) call.headers.emplace_back("Content-Type", "application/json");
  call.body = std::string(payload);
  call.timeout = ActionTimeout(x.options);
  const std::string what = "xa action " + std::string(url) + " (branch " + branch_id + ")";
  auto answer = sdk_internal::BlockingSend(std::move(call));
  if (!answer.ok()) {
    return x.Record(Status(answer.status().code(), what + ": " + answer.status().message()));
  }
  if (Status s = ClassifyTryAnswer(answer->status, answer->body, what); !s.ok()) {
    return x.Record(s);
  }
  return std::move(answer->body);
}

Status XaGlobalTransaction(Client& client, std::string gid, XaOptions options,
                           const std::function<Status(Xa&)>& body) {
  if (!body) return Status::InvalidArgument("xa: no body");
  if (Status s = ValidateOptions(options); !s.ok()) return s;
  if (gid.empty()) {
    auto fresh = client.NewGid();
    if (!fresh.ok()) return fresh.status();
    gid = std::move(*fresh);
  }
  const std::string prepare = BuildXaTransBody(XaPhase::kPrepare, gid, options);
  const std::string abort_unanswered =
      BuildXaTransBody(XaPhase::kAbort, gid, options, "prepare without an answer");
  if (Status s = sdk_internal::PrepareMaybeWaiting(
          client, prepare, abort_unanswered, options.business_keys,
          options.timeout_to_fail_s.value_or(0), "xa prepare of " + gid);
      !s.ok()) {
    return s;
  }
  Xa xa(client.server_url(), gid, options);
  auto abort = [&](const std::string& reason) {
    return client.Abort(BuildXaTransBody(XaPhase::kAbort, gid, options,
                                         TruncateUtf8(reason, kMaxRollbackReasonBytes)));
  };
  Status result;
  try {
    result = body(xa);
  } catch (const std::exception& e) {
    (void)abort(std::string("exception: ") + e.what());
    throw;
  } catch (...) {
    (void)abort("exception: (not a std::exception)");
    throw;
  }
  if (result.ok()) {
    if (std::optional<Status> e = xa.first_error()) {
      result = Status(e->code(), "a branch failed but the XA body returned ok: " + e->message());
    }
  }
  if (!result.ok()) {
    Status aborted = abort(result.ToString());
    if (!aborted.ok()) {
      return Status(result.code(), result.message() + " (abort: " + aborted.ToString() + ")");
    }
    return result;
  }
  return client.Submit(BuildXaTransBody(XaPhase::kSubmit, gid, options));
}

}  // namespace dtx
