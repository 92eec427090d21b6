/// @file
/// Best-effort notifications (docs/notifications.md), both sides:
///
/// Sender (the service whose local transaction commits, e.g. a payment gateway); the coordinator
/// then calls the URL on the schedule until the success mark; the check-back endpoint of a
/// two-phase notification is dtx::QueryPrepared (dtx/msg.h), as for a msg:
/// @code
///   const std::string merchant_url = "http://127.0.0.1:8090/notify";
///   const std::string secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
///   dtx::Client client("http://127.0.0.1:36789/api/dtmsvr");
///   dtx::Notification n(client, "pay-42", merchant_url);
///   n.SetPayload(R"({"order":"42","paid":30})").SetSchedule("alipay").SuccessOnBody("success");
///   n.SetSecret(secret);
///   dtx::Status s = n.Send();            // or n.DoAndSubmit(query_prepared_url, db, business)
/// @endcode
/// Receiver (the service that is notified):
/// @code
///   const std::string secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
///   static dtx::WebhookReplayGuard seen;  // remembers ids within the tolerance
///   dtx::ParticipantServer server({.port = 8090});
///   server.Handle("POST", "/notify", [&](const dtx::BranchRequest& r) {
///     dtx::Status v = dtx::VerifyWebhook(secret, r.headers, r.body, std::chrono::minutes(5),
///     &seen); if (!v.ok()) return dtx::BranchResult::Custom(401, v.message(), "text/plain");
///     return dtx::BranchResult::Custom(200, "success", "text/plain");  // after recording it
///   });
/// @endcode
///
/// Signatures are Standard Webhooks (https://www.standardwebhooks.com): headers webhook-id,
/// webhook-timestamp (unix seconds), webhook-signature "v1,\<base64 HMAC-SHA256(key,
/// id.timestamp.body)\>" (several space-separated signatures allowed), key = base64 after "whsec_".
///
/// Thread-safety: a Notification is a plain builder owned by one thread (its Client must outlive
/// it); Send/Prepare/Submit/Abort/DoAndSubmit block (never on an Asio I/O thread). VerifyWebhook is
/// a pure function; a WebhookReplayGuard is thread-safe.
///
/// How it fails: Status values, nothing throws except the business code's own exceptions:
/// kInvalidArgument for an invalid notification (before anything is sent) or a 400 answer,
/// kNotFound (404), kConflict (409: same id, different body; a state that does not allow the
/// call), kTooLarge (413), kUnavailable / kTimeout (the coordinator did not answer).
/// VerifyWebhook: kInvalidArgument (missing header, malformed secret, bad signature, timestamp
/// outside the tolerance), kAlreadyExists (a replayed id).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dtx/barrier.h"
#include "dtx/client.h"
#include "dtx/export.h"
#include "dtx/msg.h"
#include "dtx/status.h"

namespace dtx {

/// Remembers the webhook ids seen within the tolerance, at most `max_ids` (the oldest are dropped
/// first, so a flood of distinct ids cannot grow it without bound). Thread-safe.
class DTX_EXPORT WebhookReplayGuard {
 public:
  /// An empty guard for at most `max_ids` ids.
  explicit WebhookReplayGuard(size_t max_ids = 100'000);
  ~WebhookReplayGuard();
  WebhookReplayGuard(const WebhookReplayGuard&) = delete;
  WebhookReplayGuard& operator=(const WebhookReplayGuard&) = delete;
  /// True if `id` was seen with a timestamp within `tolerance_s` of now_s; otherwise remembers it
  /// and returns false.
  bool SeenBefore(const std::string& id, int64_t now_s, int64_t tolerance_s);
  /// How many ids are remembered.
  size_t size() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Verifies one delivery. `headers` is looked up case-insensitively. `now_s` defaults to the system
/// clock. With `seen`, an id that already passed within the tolerance is a replay.
DTX_EXPORT Status VerifyWebhook(std::string_view secret,
                                const std::vector<std::pair<std::string, std::string>>& headers,
                                std::string_view body,
                                std::chrono::seconds tolerance = std::chrono::minutes(5),
                                WebhookReplayGuard* seen = nullptr,
                                std::optional<int64_t> now_s = std::nullopt);

/// "v1,<signature>" for `secret` ("whsec_" + base64); nullopt for a malformed secret. For senders
/// that sign themselves and for tests.
DTX_EXPORT std::optional<std::string> SignWebhook(std::string_view secret, std::string_view id,
                                                  int64_t timestamp_s, std::string_view body);

/// A best-effort notification builder and sender; see the file description.
class DTX_EXPORT Notification {
 public:
  /// `id` is the idempotency key (1..128 bytes); `url` the receiver (http://).
  Notification(Client& client, std::string id, std::string url);

  /// The idempotency key.
  const std::string& id() const { return id_; }

  Notification& SetPayload(std::string payload);  ///< the body, sent verbatim
  /// A header sent with every attempt.
  Notification& SetHeader(std::string name, std::string value);
  Notification& SetSchedule(std::string preset);           ///< wechat, alipay, svix, rocketmq
  Notification& SetSchedule(std::vector<double> seconds);  ///< [0]: before attempt 1
  Notification& SuccessOn2xx();                            ///< the default
  Notification& SuccessOnBody(std::string body);           ///< e.g. Alipay's "success"
  /// Success when the top-level JSON field `field` of the answer equals `equals`.
  Notification& SuccessOnJson(std::string field, std::string equals);
  Notification& SetTimeout(double seconds);         ///< per attempt
  Notification& SetSecret(std::string whsec);       ///< signs every attempt
  Notification& SetTimeoutToFail(int64_t seconds);  ///< two-phase: check back after this
  Notification& SetHooks(MsgHooks hooks);           ///< fault injection (crash tests)

  /// The JSON body of create (two_phase: prepare, with query_prepared).
  std::string BuildBody(bool two_phase, const std::string& query_prepared = {}) const;

  Status Send();                                      ///< POST /api/dtx/notify
  Status Prepare(const std::string& query_prepared);  ///< POST /api/dtx/notify/prepare
  Status Submit();                                    ///< POST /api/dtx/notify/submit
  Status Abort();                                     ///< POST /api/dtx/notify/abort

  /// Two-phase, tied to a local transaction exactly like Msg::DoAndSubmit (dtx/msg.h): prepare;
  /// `business` and the barrier row (trans_type "notify", gid = id, 00, msg) commit together;
  /// committed -> submit, kConflict -> abort, unknown -> the check-back decides.
  /// @{
  Status DoAndSubmit(const std::string& query_prepared_url, SqliteDb& db,
                     const std::function<Status(SqliteTx&)>& business);
  Status DoAndSubmit(const std::string& query_prepared_url, BarrierDb& db,
                     const std::function<Status()>& business);
  /// @}
  /// After DoAndSubmit: whether the local transaction committed (see LocalOutcome).
  LocalOutcome local_outcome() const { return local_outcome_; }

 private:
  Status Post(std::string_view path, const std::string& body);
  Status Validate() const;

  Client& client_;
  std::string id_;
  std::string url_;
  std::string payload_;
  std::vector<std::pair<std::string, std::string>> headers_;
  std::string preset_;
  std::vector<double> schedule_s_;
  int success_kind_ = 0;  ///< 0: 2xx, 1: body, 2: json
  std::string success_field_;
  std::string success_value_;
  std::optional<double> timeout_s_;
  std::string secret_;
  std::optional<int64_t> timeout_to_fail_s_;
  MsgHooks hooks_;
  LocalOutcome local_outcome_ = LocalOutcome::kNotRun;
};

}  // namespace dtx
