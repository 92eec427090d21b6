// The one retry policy of dtx (PROTOCOL.md §1.4, §3.5, §5 #1): the initial interval I0 of a
// transaction, and the next wake-up after each branch result — reset after SUCCESS, kept after
// ONGOING, doubled (capped at max_retry_interval) after anything else, with ±10 % jitter on the
// wake-up time. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string_view>

#include "core/model.h"

namespace dtx::core {

// Server-wide settings the state machines need. Durations in milliseconds.
struct Settings {
  int64_t retry_interval_ms = 10'000;         // --retry-interval
  int64_t timeout_to_fail_ms = 35'000;        // --timeout-to-fail (tcc, xa, msg)
  int64_t request_timeout_ms = 3'000;         // --request-timeout
  int64_t max_retry_interval_ms = 1'800'000;  // cap of the exponential backoff
  bool legacy_check_back = false;  // true: DTM's msg check-back rule, any 200 commits (§3.3)
  // Saga retry_limit (issue 15): the largest value a request may set (--max-retry-limit; above ->
  // 400), and the pause before each immediate re-invocation: immediate_retry_base_ms doubled per
  // retry already made, capped at immediate_retry_cap_ms. DTM re-invokes with no pause at all, so
  // one submit could make it call a failing participant thousands of times a second.
  int64_t max_retry_limit = 1000;
  int64_t immediate_retry_base_ms = 10;
  int64_t immediate_retry_cap_ms = 1000;
};

// The class of a branch call's answer (§3.3).
enum class CallClass : unsigned char { kSuccess, kFailure, kOngoing, kError };
std::string_view ToString(CallClass c);

// §3.3 for HTTP: 425 or body contains "ONGOING" -> ONGOING; 409 or body contains "FAILURE" ->
// FAILURE; anything but exactly 200 -> ERROR; 200 -> SUCCESS. `http_status` <= 0 means no answer
// (connection error, timeout) -> ERROR.
CallClass ClassifyHttp(int http_status, std::string_view body);

// The msg check-back rule (§3.3, "guarded"): ClassifyHttp first; a SUCCESS counts only if the body,
// trimmed, is empty, or is JSON that is not an object with a dtm_result other than "SUCCESS", or is
// not JSON but contains "SUCCESS". Any other 200 body is indeterminate and classed kError (retried
// with backoff). `legacy` restores DTM's rule (ClassifyHttp alone).
CallClass ClassifyCheckBack(int http_status, std::string_view body, bool legacy);

// I0: retry_interval if > 0; else timeout_to_fail if 0 < timeout_to_fail < server retry interval;
// else the server retry interval.
int64_t InitialIntervalMs(const TransOptions& options, const Settings& settings);

// The transaction's timeout (0 = none): saga -> options.timeout_to_fail (0 = never); tcc/xa/msg ->
// options.timeout_to_fail or the server default.
int64_t TimeoutToFailMs(const GlobalTrans& global, const Settings& settings);

// The request deadline of one call for this transaction.
int64_t RequestTimeoutMs(const TransOptions& options, const Settings& settings);

struct Wakeup {
  int64_t interval_ms = 0;
  int64_t next_cron_time_ms = 0;
};

// Next interval and wake-up after a result of class `c`. The jitter is a deterministic function of
// (gid, now_ms, interval) so the core stays pure and tests are reproducible; it lies in [0.9, 1.1].
Wakeup NextWakeup(CallClass c, int64_t current_interval_ms, int64_t initial_interval_ms,
                  const Settings& settings, std::string_view gid, int64_t now_ms);

// Saga retry_limit: the pause before the immediate re-invocation that follows `retry_count`
// earlier ones: immediate_retry_base_ms * 2^retry_count, capped at immediate_retry_cap_ms.
int64_t ImmediateRetryDelayMs(int64_t retry_count, const Settings& settings);

// The jitter factor in [0.9, 1.1] used by NextWakeup.
double JitterFactor(std::string_view gid, int64_t now_ms, int64_t interval_ms);

}  // namespace dtx::core
