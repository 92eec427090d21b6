// Best-effort notification (docs/notifications.md): a transaction of trans_type "notify" with one
// branch row (branch_id "01", op "notify": the receiver's URL and the payload, sent verbatim). Its
// schedule, success rule, per-attempt timeout, secret, progress and attempt log live in the
// transaction's custom_data as the JSON of NotifyState, so every attempt's record and the next
// wake-up are one compare-and-set write (durable before the next attempt is made).
//
// Statuses: prepared (two-phase, waiting for submit/abort or the check-back), submitted ("pending":
// next_cron_time is the next attempt), succeed ("delivered"), failed ("failed": schedule
// exhausted, rollback_reason kNotifyExhausted; anything else failed is "aborted").
//
// Pure functions and values; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/machine.h"
#include "core/model.h"
#include "util/status.h"

namespace dtx::core {

inline constexpr size_t kMaxNotifySchedule = 100;  // steps of one schedule
inline constexpr int64_t kMaxNotifyDelayMs = int64_t{30} * 24 * 3600 * 1000;  // one step: 30 days
inline constexpr size_t kMaxNotifyLog = 50;  // attempts kept in the log (the newest ones)
inline constexpr size_t kMaxNotifyResponseBytes = 1024;  // of each attempt's response body
inline constexpr size_t kMaxNotifyErrorBytes = 256;
inline constexpr int64_t kMaxNotifyTimeoutMs = 60'000;  // per attempt
inline constexpr std::string_view kNotifyBranchId = "01";
inline constexpr std::string_view kNotifyOp = "notify";
// rollback_reason of a notification whose schedule ran out (API status "failed").
inline constexpr std::string_view kNotifyExhausted = "schedule exhausted";

// The success test of one attempt.
struct SuccessRule {
  enum class Kind : unsigned char { kStatus2xx, kBody, kJson };
  Kind kind = Kind::kStatus2xx;
  std::string field;  // kJson: the top-level field
  std::string value;  // kBody: the trimmed body; kJson: the field's value (strings compared as is)
  bool operator==(const SuccessRule&) const = default;
};

struct NotifyAttempt {
  int64_t n = 0;        // 1, 2, ... over the notification's life (resends continue the count)
  int64_t time_ms = 0;  // when the call started
  int http_status = 0;  // 0 = no answer
  int64_t latency_ms = 0;
  std::string error;     // empty on success; else why the attempt failed
  std::string response;  // the first kMaxNotifyResponseBytes of the body
};

struct NotifyState {
  // Set at creation, never changed.
  std::string preset;                // the preset's name, empty for an explicit array
  std::vector<int64_t> schedule_ms;  // [0]: delay before attempt 1; [k]: wait after attempt k
  SuccessRule success;
  int64_t timeout_ms = 0;
  std::string secret;        // "whsec_..." or empty (never returned by a read API)
  std::string request_hash;  // of the creating request, for the idempotent repeat
  // Progress.
  int64_t cycle_start_ms = 0;  // when the current schedule started; 0: at the next round
  int64_t cycle_attempts = 0;  // attempts made since then
  int64_t total_attempts = 0;
  int64_t last_attempt_end_ms = 0;
  std::vector<NotifyAttempt> log;  // oldest first; at most kMaxNotifyLog (older ones dropped)
};

// The schedule of a preset (wechat, alipay, svix, rocketmq); kInvalidArgument for another name.
Result<std::vector<int64_t>> NotifyPreset(std::string_view name);

std::string EncodeNotifyState(const NotifyState& state);
Result<NotifyState> DecodeNotifyState(std::string_view json);

// Whether an answer passes the rule. http_status <= 0 (no answer) never does.
bool IsNotifySuccess(const SuccessRule& rule, int http_status, std::string_view body);

// When the next attempt of the current schedule is due (cycle_start_ms 0 counts as now_ms).
// Precondition: cycle_attempts < schedule_ms.size().
int64_t NotifyDueMs(const NotifyState& state, int64_t now_ms);

// The API's word for a notification's status (docs/notifications.md): prepared, pending
// (submitted, or aborting set by an operator), delivered (succeed), failed (the schedule ran out)
// or aborted (any other failed).
std::string_view NotifyApiStatus(const GlobalTrans& global);
// The stored status under which an API status word is listed (pending -> submitted, delivered ->
// succeed, failed and aborted -> failed, prepared -> prepared); nullopt for another word.
std::optional<GlobalStatus> NotifyStoredStatus(std::string_view api_status);
// Replaces the secret in a notification's custom_data by "(redacted)": secrets are never returned
// by a read API. No-op for other transactions and for a notification without a secret.
void RedactNotifySecret(GlobalTrans& global);

// A round's parsed notify state (core::Round::notify): `state` is what `text` decodes to.
struct NotifyCache {
  std::string text;
  NotifyState state;
};

// The state of the notification whose custom_data is `custom_data`, parsed once per round: the
// round's cache when its text equals custom_data (a compare, no parse), else decoded into the
// cache. Errors as DecodeNotifyState (the cache then holds nothing).
Result<NotifyState*> RoundNotifyState(Round& round, std::string_view custom_data);

// Records in the round's cache that `state` encodes to `text` (after the machine or the engine
// encoded it for a write).
void CacheNotifyState(Round& round, std::string text, NotifyState state);

// Appends an attempt to the log, dropping the oldest beyond kMaxNotifyLog.
void AppendNotifyAttempt(NotifyState& state, NotifyAttempt attempt);

}  // namespace dtx::core
