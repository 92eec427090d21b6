#include "ops/alerts.h"

#include <spdlog/spdlog.h>

#include <boost/json.hpp>

namespace dtx::ops {

std::optional<AlertRequest> BuildAlert(const AlertOptions& options, const FailedCall& call) {
  if (options.webhook.empty()) return std::nullopt;
  if (!call.indeterminate && call.retry_count < options.retry_limit) return std::nullopt;
  const char* kind = call.indeterminate ? "indeterminate_check_back"
                                        : (call.check_back ? "check_back_error" : "branch_error");
  AlertRequest alert;
  alert.url = options.webhook;
  alert.timeout_ms = options.timeout_ms;
  alert.body = boost::json::serialize(boost::json::object{{"gid", call.gid},
                                                          {"status", call.status},
                                                          {"branch", call.branch},
                                                          {"error", call.error.substr(0, 1024)},
                                                          {"retry_count", call.retry_count},
                                                          {"kind", kind}});
  return alert;
}

AlertRequest BuildNotifyFailedAlert(const std::string& webhook, int64_t timeout_ms,
                                    const std::string& id, const std::string& url, int64_t attempts,
                                    const std::string& last_error) {
  AlertRequest alert;
  alert.url = webhook;
  alert.timeout_ms = timeout_ms;
  alert.body = boost::json::serialize(boost::json::object{{"gid", id},
                                                          {"status", "failed"},
                                                          {"branch", url},
                                                          {"error", last_error.substr(0, 1024)},
                                                          {"retry_count", attempts},
                                                          {"kind", "notify_failed"}});
  return alert;
}

void LogAlertAnswer(int http_status, std::string_view body) {
  if (http_status == 200) return;
  spdlog::warn("alert webhook failed: {} {}", http_status, body.substr(0, 200));
}

}  // namespace dtx::ops
