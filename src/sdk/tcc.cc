#include "dtx/tcc.h"

#include <boost/json.hpp>
#include <exception>
#include <mutex>
#include <optional>
#include <utility>

#include "http/client.h"
#include "http/server.h"
#include "sdk/blocking_http.h"
#include "sdk/business_keys_internal.h"
#include "sdk/client_internal.h"

namespace dtx {
namespace {

using sdk_internal::BlockingSend;
using sdk_internal::IEquals;

namespace json = boost::json;

constexpr std::chrono::milliseconds kDefaultTryTimeout{3000};
// The coordinator refuses a rollback_reason over 1024 bytes (PROTOCOL.md §2.5); keep some room.
constexpr size_t kMaxRollbackReasonBytes = 1000;
constexpr size_t kMaxBodyInMessage = 512;

std::string Shortened(std::string_view body) {
  if (body.size() <= kMaxBodyInMessage) return std::string(body);
  return TruncateUtf8(body, kMaxBodyInMessage) + "...";
}

// A coordinator answer to registerBranch (PROTOCOL.md §2.1): ok only for 200 with exactly
// {"dtm_result":"SUCCESS"}.
Status CoordinatorStatus(const http::ClientResponse& a, std::string_view what) {
  const std::string prefix = std::string(what) + ": ";
  if (a.status != 200) return sdk_internal::StatusOfAnswer(a.status, a.body, what);
  if (a.body.find("FAILURE") == std::string::npos) {
    json::error_code ec;
    json::value v = json::parse(a.body, ec);
    if (!ec && v.is_object()) {
      const json::value* r = v.as_object().if_contains("dtm_result");
      if (r && r->is_string() && r->as_string() == "SUCCESS") return Status::Ok();
    }
  }
  return Status::Internal(prefix + "unexpected answer: " + Shortened(a.body));
}

std::string ReasonOf(const Status& s) {
  return TruncateUtf8(s.ToString(), kMaxRollbackReasonBytes);
}

Status ValidateOptions(const TccOptions& o) {
  for (const auto& [name, v] : {std::pair{"timeout_to_fail", o.timeout_to_fail_s},
                                std::pair{"retry_interval", o.retry_interval_s},
                                std::pair{"request_timeout", o.request_timeout_s}}) {
    if (v && *v < 0) return Status::InvalidArgument(std::string("tcc: negative ") + name);
  }
  if (o.try_timeout.count() < 0 || o.register_timeout.count() <= 0) {
    return Status::InvalidArgument("tcc: try_timeout must be >= 0, register_timeout > 0");
  }
  if (Status s = CheckBusinessKeys(o.business_keys, o.on_busy); !s.ok()) {
    return Status::InvalidArgument("tcc: " + s.message());
  }
  return Status::Ok();
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Wire pieces

Result<std::string> BranchIdGenerator::Next() {
  // DTM's BranchIDGen.NewSubBranchID refuses the same two cases.
  if (issued_ >= 99) return Status::InvalidArgument("tcc: more than 99 branches in one scope");
  if (parent_.size() >= 20) {
    return Status::InvalidArgument("tcc: branch id '" + parent_ + "' too long to nest (>= 20)");
  }
  ++issued_;
  std::string id = parent_;
  id.push_back(static_cast<char>('0' + issued_ / 10));
  id.push_back(static_cast<char>('0' + issued_ % 10));
  return id;
}

std::string BuildTccTransBody(TccPhase phase, const std::string& gid, const TccOptions& options,
                              const std::string& rollback_reason) {
  json::object body;
  body["gid"] = gid;
  body["trans_type"] = "tcc";
  // The options go with every call, as DTM's SDK sends them (prepare stores them; on submit and
  // abort they override the stored ones for that round, PROTOCOL.md §1.7).
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
  if (phase == TccPhase::kPrepare) {
    sdk_internal::AddBusinessKeys(body, options.business_keys, options.on_busy);
  }
  if (phase == TccPhase::kAbort && !rollback_reason.empty()) {
    body["rollback_reason"] = rollback_reason;
  }
  return json::serialize(body);
}

std::string BuildTccRegisterBody(const std::string& gid, const std::string& branch_id,
                                 std::string_view payload, std::string_view confirm_url,
                                 std::string_view cancel_url) {
  // Every value a string (PROTOCOL.md §2.3).
  json::object body;
  body["gid"] = gid;
  body["trans_type"] = "tcc";
  body["branch_id"] = branch_id;
  body["data"] = payload;
  body["confirm"] = confirm_url;
  body["cancel"] = cancel_url;
  return json::serialize(body);
}

std::string BuildTccTryUrl(std::string_view try_url, const std::string& server_url,
                           const std::string& gid, const std::string& branch_id) {
  std::string url(try_url);
  if (url.find('?') == std::string::npos) {
    url.push_back('?');
  } else if (url.back() != '?' && url.back() != '&') {
    url.push_back('&');
  }
  // Sorted by name, as Go's url.Values.Encode (DTM's SDK) writes them.
  url += "branch_id=" + http::UrlEncode(branch_id);
  url += "&dtm=" + http::UrlEncode(server_url);
  url += "&gid=" + http::UrlEncode(gid);
  url += "&op=try&trans_type=tcc";
  return url;
}

Status ClassifyTryAnswer(int http_status, const std::string& body, std::string_view what) {
  // PROTOCOL.md §3.3, in its order: ONGOING, then FAILURE (status or body), then any non-200.
  auto message = [&] {
    return std::string(what) + " answered " + std::to_string(http_status) + ": " + Shortened(body);
  };
  if (http_status == 425 || body.find("ONGOING") != std::string::npos) {
    return Status::Ongoing(message());
  }
  if (http_status == 409 || body.find("FAILURE") != std::string::npos) {
    return Status::Conflict(message());
  }
  if (http_status == 200) return Status::Ok();
  if (http_status == 503) return Status::Unavailable(message());
  return Status::Internal(message());
}

std::string TruncateUtf8(std::string_view reason, size_t max_bytes) {
  if (reason.size() <= max_bytes) return std::string(reason);
  size_t end = max_bytes;
  // Step back over continuation bytes (10xxxxxx) so that no character is cut in two.
  while (end > 0 && (static_cast<unsigned char>(reason[end]) & 0xC0) == 0x80) --end;
  return std::string(reason.substr(0, end));
}

// ---------------------------------------------------------------------------------------------------
// Tcc

struct Tcc::Impl {
  std::string server_url;
  std::string gid;
  TccOptions options;

  std::mutex mu;  // guards everything below; held across a registration to keep the id order
  BranchIdGenerator ids;
  std::vector<std::string> registered;
  std::optional<Status> first_error;

  void RecordError(const Status& s) {
    std::lock_guard lock(mu);
    if (!first_error) first_error = s;
  }
};

Tcc::Tcc(std::string server_url, std::string gid, std::string parent_branch_id, TccOptions options)
    : impl_(std::make_unique<Impl>()) {
  while (!server_url.empty() && server_url.back() == '/') server_url.pop_back();
  impl_->server_url = std::move(server_url);
  impl_->gid = std::move(gid);
  impl_->options = std::move(options);
  impl_->ids = BranchIdGenerator(std::move(parent_branch_id));
}

Tcc::Tcc(Tcc&&) noexcept = default;
Tcc& Tcc::operator=(Tcc&&) noexcept = default;
Tcc::~Tcc() = default;

Result<Tcc> Tcc::FromRequest(const BranchRequest& request, TccOptions options) {
  std::optional<std::string> dtm = request.QueryParam("dtm");
  if (!dtm || dtm->empty() || request.gid.empty()) {
    return Status::InvalidArgument("tcc: not a TCC try call (missing dtm or gid parameter)");
  }
  if (request.trans_type != "tcc") {
    return Status::InvalidArgument("tcc: nested TCC inside a '" + request.trans_type + "' call");
  }
  if (Status s = ValidateOptions(options); !s.ok()) return s;
  return Tcc(std::move(*dtm), request.gid, request.branch_id, std::move(options));
}

const std::string& Tcc::gid() const { return impl_->gid; }
const std::string& Tcc::server_url() const { return impl_->server_url; }
const TccOptions& Tcc::options() const { return impl_->options; }

std::vector<std::string> Tcc::branch_ids() const {
  std::lock_guard lock(impl_->mu);
  return impl_->registered;
}

std::optional<Status> Tcc::first_try_error() const {
  std::lock_guard lock(impl_->mu);
  return impl_->first_error;
}

Result<std::string> Tcc::CallBranch(std::string_view payload, std::string_view try_url,
                                    std::string_view confirm_url, std::string_view cancel_url) {
  Impl& t = *impl_;
  std::string branch_id;
  {
    std::lock_guard lock(t.mu);
    auto fail = [&t](Status s) {
      if (!t.first_error) t.first_error = s;
      return s;
    };
    if (try_url.empty()) return fail(Status::InvalidArgument("tcc: empty try URL"));
    auto id = t.ids.Next();
    if (!id.ok()) return fail(id.status());
    branch_id = std::move(*id);

    // Registration first, so that the coordinator knows whom to cancel whatever the Try does.
    http::ClientRequest reg;
    reg.method = "POST";
    reg.url = t.server_url + "/registerBranch";
    reg.headers.emplace_back("Content-Type", "application/json");
    reg.body = BuildTccRegisterBody(t.gid, branch_id, payload, confirm_url, cancel_url);
    reg.timeout = t.options.register_timeout;
    const std::string what = "tcc: registerBranch " + branch_id + " of " + t.gid;
    auto answer = BlockingSend(std::move(reg));
    // A registration whose answer was lost may have been stored: the branch counts as registered
    // either way for the abort that follows (a cancel of a Try that never ran is harmless).
    if (!answer.ok()) {
      return fail(Status(answer.status().code(), what + ": " + answer.status().message()));
    }
    if (Status s = CoordinatorStatus(*answer, what); !s.ok()) return fail(s);
    t.registered.push_back(branch_id);
  }

  http::ClientRequest call;
  call.method = "POST";
  call.url = BuildTccTryUrl(try_url, t.server_url, t.gid, branch_id);
  bool has_content_type = false;
  for (const auto& [k, v] : t.options.branch_headers) {
    has_content_type = has_content_type || IEquals(k, "content-type");
    call.headers.emplace_back(k, v);
  }
  if (!has_content_type) call.headers.emplace_back("Content-Type", "application/json");
  call.body = std::string(payload);
  call.timeout = t.options.try_timeout.count() > 0 ? t.options.try_timeout
                 : t.options.request_timeout_s
                     ? std::chrono::milliseconds(*t.options.request_timeout_s * 1000)
                     : kDefaultTryTimeout;
  const std::string what = "try " + std::string(try_url) + " (branch " + branch_id + ")";
  auto answer = BlockingSend(std::move(call));
  if (!answer.ok()) {
    Status s(answer.status().code(), what + ": " + answer.status().message());
    t.RecordError(s);
    return s;
  }
  if (Status s = ClassifyTryAnswer(answer->status, answer->body, what); !s.ok()) {
    t.RecordError(s);
    return s;
  }
  return std::move(answer->body);
}

// ---------------------------------------------------------------------------------------------------
// The scope

Status TccGlobalTransaction(Client& client, std::string gid, TccOptions options,
                            const std::function<Status(Tcc&)>& body) {
  if (!body) return Status::InvalidArgument("tcc: no body");
  if (Status s = ValidateOptions(options); !s.ok()) return s;
  if (gid.empty()) {
    auto fresh = client.NewGid();
    if (!fresh.ok()) return fresh.status();
    gid = std::move(*fresh);
  }
  const std::string prepare = BuildTccTransBody(TccPhase::kPrepare, gid, options);
  const std::string abort_unanswered =
      BuildTccTransBody(TccPhase::kAbort, gid, options, "prepare without an answer");
  if (Status s = sdk_internal::PrepareMaybeWaiting(
          client, prepare, abort_unanswered, options.business_keys,
          options.timeout_to_fail_s.value_or(0), "tcc prepare of " + gid);
      !s.ok()) {
    // If the prepare was stored but its answer lost, the coordinator aborts the empty transaction
    // after timeout_to_fail (DTM's SDK behaves the same).
    return s;
  }
  Tcc tcc(client.server_url(), gid, "", options);
  auto abort = [&](const std::string& reason) {
    return client.Abort(BuildTccTransBody(TccPhase::kAbort, gid, options, reason));
  };

  Status result;
  try {
    result = body(tcc);
  } catch (const std::exception& e) {
    (void)abort(TruncateUtf8(std::string("exception: ") + e.what(), kMaxRollbackReasonBytes));
    throw;
  } catch (...) {
    (void)abort("exception: (not a std::exception)");
    throw;
  }
  if (result.ok()) {
    if (std::optional<Status> e = tcc.first_try_error()) {
      result =
          Status(e->code(), "a branch call failed but the TCC body returned ok: " + e->message());
    }
  }
  if (!result.ok()) {
    Status aborted = abort(ReasonOf(result));
    if (!aborted.ok()) {
      return Status(result.code(), result.message() + " (abort: " + aborted.ToString() + ")");
    }
    return result;
  }
  return client.Submit(BuildTccTransBody(TccPhase::kSubmit, gid, options));
}

}  // namespace dtx
