// Alerts (PROTOCOL.md §3.6): a webhook POSTed to when a branch keeps failing. This module decides
// whether a failed call alerts and builds the webhook request from plain facts; the caller sends it
// through its own transport (the engine uses its BranchCaller seam) and reports the answer.
//
// Pure apart from LogAlertAnswer's logging. Thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dtx::ops {

struct AlertOptions {
  std::string webhook;      // empty = alerts off
  int64_t retry_limit = 3;  // retry count from which a branch error alerts
  int64_t timeout_ms = 3000;
};

// One call that answered ERROR (not FAILURE, not ONGOING).
struct FailedCall {
  std::string gid;
  std::string status;  // the transaction's status, e.g. "submitted"
  std::string branch;  // the branch's url (the msg check-back: query_prepared)
  std::string error;   // the answer as recorded
  int64_t retry_count = 0;
  bool check_back = false;
  bool indeterminate = false;  // a check-back's 200 whose body is no answer: alerts at once
};

struct AlertRequest {
  std::string url;
  std::string body;  // JSON: gid, status, branch, error (≤ 1 KiB), retry_count, kind
  int64_t timeout_ms = 0;
};

// The webhook request for `call`, or nullopt when it does not alert (alerts off, or the retry count
// is under the limit and the answer is not an indeterminate check-back).
std::optional<AlertRequest> BuildAlert(const AlertOptions& options, const FailedCall& call);

// A notification whose schedule ran out (kind "notify_failed"): gid = the notification's id,
// status "failed", branch = its URL, retry_count = attempts made, error = the last one's answer.
AlertRequest BuildNotifyFailedAlert(const std::string& webhook, int64_t timeout_ms,
                                    const std::string& id, const std::string& url, int64_t attempts,
                                    const std::string& last_error);

// Logs a webhook that did not answer 200 (a failing webhook is logged and ignored, §3.6).
void LogAlertAnswer(int http_status, std::string_view body);

}  // namespace dtx::ops
