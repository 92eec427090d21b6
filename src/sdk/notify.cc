// Best-effort notifications in the SDK (include/dtx/notify.h): the receiver's Standard Webhooks
// verifier with its replay guard, and the sender's Notification builder (create, two-phase with
// DoAndSubmit on the sub-transaction barrier, like dtx::Msg).
#include "dtx/notify.h"

#include <openssl/crypto.h>

#include <boost/json.hpp>
#include <cctype>
#include <deque>
#include <exception>
#include <mutex>
#include <unordered_map>

#include "dtx/assert.h"
#include "sdk/blocking_http.h"
#include "sdk/client_internal.h"
#include "util/webhook.h"

namespace dtx {

namespace json = boost::json;

namespace {

std::string_view HeaderOf(const std::vector<std::pair<std::string, std::string>>& headers,
                          std::string_view name) {
  for (const auto& [k, v] : headers) {
    if (sdk_internal::IEquals(k, name)) return v;
  }
  return {};
}

int64_t NowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::optional<std::string> SignWebhook(std::string_view secret, std::string_view id,
                                       int64_t timestamp_s, std::string_view body) {
  return util::WebhookSignature(secret, id, timestamp_s, body);
}

// ---------------------------------------------------------------------------------------------------
// The replay guard

struct WebhookReplayGuard::Impl {
  size_t max_ids;
  mutable std::mutex mu;
  std::unordered_map<std::string, int64_t> seen;  // id -> the time it passed
  std::deque<std::pair<int64_t, std::string>> order;
};

WebhookReplayGuard::WebhookReplayGuard(size_t max_ids) : impl_(std::make_unique<Impl>()) {
  DTX_ASSERT(max_ids > 0);
  impl_->max_ids = max_ids;
}
WebhookReplayGuard::~WebhookReplayGuard() = default;

bool WebhookReplayGuard::SeenBefore(const std::string& id, int64_t now_s, int64_t tolerance_s) {
  std::lock_guard lock(impl_->mu);
  // Forget what is older than twice the tolerance: its timestamp can no longer pass anyway.
  while (!impl_->order.empty() && impl_->order.front().first < now_s - 2 * tolerance_s) {
    auto it = impl_->seen.find(impl_->order.front().second);
    if (it != impl_->seen.end() && it->second == impl_->order.front().first) impl_->seen.erase(it);
    impl_->order.pop_front();
  }
  if (auto it = impl_->seen.find(id); it != impl_->seen.end()) return true;
  while (impl_->seen.size() >= impl_->max_ids && !impl_->order.empty()) {
    impl_->seen.erase(impl_->order.front().second);
    impl_->order.pop_front();
  }
  impl_->seen.emplace(id, now_s);
  impl_->order.emplace_back(now_s, id);
  return false;
}

size_t WebhookReplayGuard::size() const {
  std::lock_guard lock(impl_->mu);
  return impl_->seen.size();
}

Status VerifyWebhook(std::string_view secret,
                     const std::vector<std::pair<std::string, std::string>>& headers,
                     std::string_view body, std::chrono::seconds tolerance,
                     WebhookReplayGuard* seen, std::optional<int64_t> now_s) {
  const std::string id(HeaderOf(headers, "webhook-id"));
  const std::string ts_text(HeaderOf(headers, "webhook-timestamp"));
  const std::string_view signatures = HeaderOf(headers, "webhook-signature");
  if (id.empty() || ts_text.empty() || signatures.empty()) {
    return Status::InvalidArgument("webhook: missing webhook-id, -timestamp or -signature");
  }
  int64_t ts = 0;
  size_t pos = 0;
  try {
    ts = std::stoll(ts_text, &pos);
  } catch (...) {
    pos = 0;
  }
  if (pos == 0 || pos != ts_text.size()) {
    return Status::InvalidArgument("webhook: webhook-timestamp is not a number");
  }
  const int64_t now = now_s.value_or(NowSeconds());
  if (ts < now - tolerance.count() || ts > now + tolerance.count()) {
    return Status::InvalidArgument("webhook: timestamp outside the tolerance (stale or future)");
  }
  std::optional<std::string> expected = SignWebhook(secret, id, ts, body);
  if (!expected) return Status::InvalidArgument("webhook: the secret is not whsec_ + base64");
  bool match = false;
  std::string_view rest = signatures;
  while (!rest.empty() && !match) {  // space-separated "v1,..." entries (key rotation)
    const size_t sp = rest.find(' ');
    std::string_view one = rest.substr(0, sp);
    rest = sp == std::string_view::npos ? std::string_view() : rest.substr(sp + 1);
    match = one.size() == expected->size() &&
            CRYPTO_memcmp(one.data(), expected->data(), one.size()) == 0;
  }
  if (!match) return Status::InvalidArgument("webhook: no valid signature");
  if (seen != nullptr && seen->SeenBefore(id, now, tolerance.count())) {
    return Status::AlreadyExists("webhook: id " + id + " was already delivered (replay)");
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------------
// The sender

Notification::Notification(Client& client, std::string id, std::string url)
    : client_(client), id_(std::move(id)), url_(std::move(url)) {}

Notification& Notification::SetPayload(std::string payload) {
  payload_ = std::move(payload);
  return *this;
}
Notification& Notification::SetHeader(std::string name, std::string value) {
  headers_.emplace_back(std::move(name), std::move(value));
  return *this;
}
Notification& Notification::SetSchedule(std::string preset) {
  preset_ = std::move(preset);
  schedule_s_.clear();
  return *this;
}
Notification& Notification::SetSchedule(std::vector<double> seconds) {
  schedule_s_ = std::move(seconds);
  preset_.clear();
  return *this;
}
Notification& Notification::SuccessOn2xx() {
  success_kind_ = 0;
  return *this;
}
Notification& Notification::SuccessOnBody(std::string body) {
  success_kind_ = 1;
  success_value_ = std::move(body);
  return *this;
}
Notification& Notification::SuccessOnJson(std::string field, std::string equals) {
  success_kind_ = 2;
  success_field_ = std::move(field);
  success_value_ = std::move(equals);
  return *this;
}
Notification& Notification::SetTimeout(double seconds) {
  timeout_s_ = seconds;
  return *this;
}
Notification& Notification::SetSecret(std::string whsec) {
  secret_ = std::move(whsec);
  return *this;
}
Notification& Notification::SetTimeoutToFail(int64_t seconds) {
  timeout_to_fail_s_ = seconds;
  return *this;
}
Notification& Notification::SetHooks(MsgHooks hooks) {
  hooks_ = std::move(hooks);
  return *this;
}

std::string Notification::BuildBody(bool two_phase, const std::string& query_prepared) const {
  json::object o{{"id", id_}, {"url", url_}, {"payload", payload_}};
  if (!headers_.empty()) {
    json::object h;
    for (const auto& [k, v] : headers_) h[k] = v;
    o["headers"] = std::move(h);
  }
  if (!preset_.empty()) {
    o["schedule"] = preset_;
  } else if (!schedule_s_.empty()) {
    json::array a;
    for (double s : schedule_s_) a.emplace_back(s);
    o["schedule"] = std::move(a);
  }
  if (success_kind_ == 1) o["success"] = json::object{{"body", success_value_}};
  if (success_kind_ == 2) {
    o["success"] = json::object{{"json", success_field_}, {"equals", success_value_}};
  }
  if (timeout_s_) o["timeout"] = *timeout_s_;
  if (!secret_.empty()) o["secret"] = secret_;
  if (two_phase) {
    o["query_prepared"] = query_prepared;
    if (timeout_to_fail_s_) o["timeout_to_fail"] = *timeout_to_fail_s_;
  }
  return json::serialize(o);
}

Status Notification::Validate() const {
  if (id_.empty() || id_.size() > 128) return Status::InvalidArgument("notify: id 1..128 bytes");
  if (url_.empty()) return Status::InvalidArgument("notify: empty url");
  return Status::Ok();
}

Status Notification::Post(std::string_view path, const std::string& body) {
  // The coordinator's root: the client's API prefix without "/api/dtmsvr". Through the client's
  // connection, so its extra headers (an API token) and TLS settings apply.
  Client::Impl& impl = *client_.impl_;
  std::string root = impl.base_target;
  if (root.ends_with("/api/dtmsvr"))
    root.resize(root.size() - std::string_view("/api/dtmsvr").size());
  Result<sdk_internal::ClientAnswer> r =
      impl.Exchange("POST", root + "/api/dtx/notify" + std::string(path), body);
  if (!r.ok()) return r.status();
  return sdk_internal::StatusOfAnswer(r->status, r->body);
}

Status Notification::Send() {
  if (Status s = Validate(); !s.ok()) return s;
  return Post("", BuildBody(false));
}

Status Notification::Prepare(const std::string& query_prepared) {
  if (Status s = Validate(); !s.ok()) return s;
  if (query_prepared.empty()) return Status::InvalidArgument("notify: empty query_prepared");
  return Post("/prepare", BuildBody(true, query_prepared));
}

Status Notification::Submit() {
  return Post("/submit", json::serialize(json::object{{"id", id_}}));
}

Status Notification::Abort() { return Post("/abort", json::serialize(json::object{{"id", id_}})); }

Status Notification::DoAndSubmit(const std::string& query_prepared_url, BarrierDb& db,
                                 const std::function<Status()>& business) {
  DTX_ASSERT(business != nullptr);
  local_outcome_ = LocalOutcome::kNotRun;
  if (Status s = Validate(); !s.ok()) return s;
  auto barrier = BranchBarrier::Create("notify", id_, "00", "msg");
  if (!barrier.ok()) return Status::InvalidArgument("notify: " + barrier.status().message());
  if (Status s = Prepare(query_prepared_url); !s.ok()) return s;
  if (hooks_.after_prepare) hooks_.after_prepare();
  // After the local commit: submit. If the coordinator's check-back decided first it can only have
  // submitted it (the barrier row is committed), and a submit of a submitted one answers 200.
  auto submit = [&]() -> Status {
    local_outcome_ = LocalOutcome::kCommitted;
    if (hooks_.after_commit) hooks_.after_commit();
    return Submit();
  };
  auto abort = [&](const Status& why) -> Status {
    local_outcome_ = LocalOutcome::kRolledBack;
    Status a = Abort();
    if (!a.ok() && a.code() != Code::kConflict) {
      return Status(why.code(), why.message() + " (abort failed: " + a.ToString() +
                                    "; the coordinator's check-back drops it)");
    }
    return why;
  };
  auto resolve = [&](const Status& why) -> Status {
    Status checked = barrier->QueryPrepared(db);
    if (checked.ok()) return submit();
    if (checked.code() == Code::kConflict) return abort(why);
    local_outcome_ = LocalOutcome::kUnknown;
    return Status(why.code(), why.message() + " (the check-back could not tell: " +
                                  checked.ToString() + "; the coordinator decides later)");
  };
  auto run = [&]() -> Status {
    Status s = business();
    if (s.ok() && hooks_.before_commit) hooks_.before_commit();
    return s;
  };
  Status errb;
  try {
    errb = barrier->Call(db, run);
  } catch (...) {
    std::exception_ptr e = std::current_exception();
    (void)resolve(Status::Internal("notify: the business code threw"));
    std::rethrow_exception(e);
  }
  if (errb.ok()) return submit();
  if (errb.code() == Code::kConflict) return abort(errb);
  return resolve(errb);
}

Status Notification::DoAndSubmit(const std::string& query_prepared_url, SqliteDb& db,
                                 const std::function<Status(SqliteTx&)>& business) {
  DTX_ASSERT(business != nullptr);
  SqliteTx tx{db.handle()};
  return DoAndSubmit(query_prepared_url, static_cast<BarrierDb&>(db),
                     [&]() { return business(tx); });
}

}  // namespace dtx
