#include "core/retry_policy.h"

#include <algorithm>
#include <boost/json.hpp>

namespace dtx::core {

std::string_view ToString(CallClass c) {
  switch (c) {
    case CallClass::kSuccess:
      return "SUCCESS";
    case CallClass::kFailure:
      return "FAILURE";
    case CallClass::kOngoing:
      return "ONGOING";
    case CallClass::kError:
      return "ERROR";
  }
  return "";
}

CallClass ClassifyHttp(int http_status, std::string_view body) {
  if (http_status == 425 || body.find("ONGOING") != std::string_view::npos) {
    return CallClass::kOngoing;
  }
  if (http_status == 409 || body.find("FAILURE") != std::string_view::npos) {
    return CallClass::kFailure;
  }
  if (http_status != 200) return CallClass::kError;
  return CallClass::kSuccess;
}

CallClass ClassifyCheckBack(int http_status, std::string_view body, bool legacy) {
  CallClass c = ClassifyHttp(http_status, body);
  if (c != CallClass::kSuccess || legacy) return c;
  size_t b = body.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return CallClass::kSuccess;  // empty
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(body, ec);
  if (ec) {
    return body.find("SUCCESS") != std::string_view::npos ? CallClass::kSuccess : CallClass::kError;
  }
  if (v.is_object()) {
    const boost::json::value* r = v.get_object().if_contains("dtm_result");
    if (r && !(r->is_string() && r->get_string() == "SUCCESS")) return CallClass::kError;
  }
  return CallClass::kSuccess;
}

int64_t InitialIntervalMs(const TransOptions& options, const Settings& settings) {
  if (options.retry_interval_s > 0) return options.retry_interval_s * 1000;
  int64_t ttf_ms = options.timeout_to_fail_s * 1000;
  if (ttf_ms > 0 && ttf_ms < settings.retry_interval_ms) return ttf_ms;
  return settings.retry_interval_ms;
}

int64_t TimeoutToFailMs(const GlobalTrans& global, const Settings& settings) {
  int64_t own_ms = global.options.timeout_to_fail_s * 1000;
  if (global.trans_type == TransType::kSaga) return own_ms;
  if (global.trans_type == TransType::kWorkflow) return 0;
  return own_ms > 0 ? own_ms : settings.timeout_to_fail_ms;
}

int64_t RequestTimeoutMs(const TransOptions& options, const Settings& settings) {
  return options.request_timeout_s > 0 ? options.request_timeout_s * 1000
                                       : settings.request_timeout_ms;
}

double JitterFactor(std::string_view gid, int64_t now_ms, int64_t interval_ms) {
  // FNV-1a over the inputs, then a splitmix64 finalizer.
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : gid) h = (h ^ ch) * 1099511628211ull;
  h ^= static_cast<uint64_t>(now_ms) * 0x9E3779B97F4A7C15ull;
  h ^= static_cast<uint64_t>(interval_ms) << 17;
  h += 0x9E3779B97F4A7C15ull;
  h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
  h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
  h ^= h >> 31;
  double unit = static_cast<double>(h >> 11) / static_cast<double>(1ull << 53);  // [0, 1)
  return 0.9 + 0.2 * unit;
}

Wakeup NextWakeup(CallClass c, int64_t current_interval_ms, int64_t initial_interval_ms,
                  const Settings& settings, std::string_view gid, int64_t now_ms) {
  int64_t interval = current_interval_ms > 0 ? current_interval_ms : initial_interval_ms;
  switch (c) {
    case CallClass::kSuccess:
      interval = initial_interval_ms;
      break;
    case CallClass::kOngoing:
      break;
    case CallClass::kFailure:
    case CallClass::kError:
      interval = interval > settings.max_retry_interval_ms / 2 ? settings.max_retry_interval_ms
                                                               : interval * 2;
      break;
  }
  interval = std::min(interval, settings.max_retry_interval_ms);
  auto delay =
      static_cast<int64_t>(static_cast<double>(interval) * JitterFactor(gid, now_ms, interval));
  return {interval, now_ms + std::max<int64_t>(delay, 1)};
}

int64_t ImmediateRetryDelayMs(int64_t retry_count, const Settings& settings) {
  int64_t delay = std::max<int64_t>(settings.immediate_retry_base_ms, 0);
  for (int64_t i = 0; i < retry_count && delay < settings.immediate_retry_cap_ms; ++i) delay *= 2;
  return std::min(delay, settings.immediate_retry_cap_ms);
}

}  // namespace dtx::core
