#include "core/model.h"

#include <fmt/format.h>

#include <boost/json.hpp>

namespace dtx::core {

namespace json = boost::json;

std::string_view ToString(TransType t) {
  switch (t) {
    case TransType::kSaga:
      return "saga";
    case TransType::kTcc:
      return "tcc";
    case TransType::kXa:
      return "xa";
    case TransType::kMsg:
      return "msg";
    case TransType::kWorkflow:
      return "workflow";
    case TransType::kNotify:
      return "notify";
  }
  return "";
}

std::string_view ToString(GlobalStatus s) {
  switch (s) {
    case GlobalStatus::kPrepared:
      return "prepared";
    case GlobalStatus::kSubmitted:
      return "submitted";
    case GlobalStatus::kAborting:
      return "aborting";
    case GlobalStatus::kSucceed:
      return "succeed";
    case GlobalStatus::kFailed:
      return "failed";
  }
  return "";
}

std::string_view ToString(BranchStatus s) {
  switch (s) {
    case BranchStatus::kPrepared:
      return "prepared";
    case BranchStatus::kSucceed:
      return "succeed";
    case BranchStatus::kFailed:
      return "failed";
  }
  return "";
}

std::optional<TransType> ParseTransType(std::string_view s) {
  for (auto t : {TransType::kSaga, TransType::kTcc, TransType::kXa, TransType::kMsg,
                 TransType::kWorkflow, TransType::kNotify}) {
    if (ToString(t) == s) return t;
  }
  return std::nullopt;
}

std::optional<GlobalStatus> ParseGlobalStatus(std::string_view s) {
  for (auto v : {GlobalStatus::kPrepared, GlobalStatus::kSubmitted, GlobalStatus::kAborting,
                 GlobalStatus::kSucceed, GlobalStatus::kFailed}) {
    if (ToString(v) == s) return v;
  }
  return std::nullopt;
}

std::optional<BranchStatus> ParseBranchStatus(std::string_view s) {
  for (auto v : {BranchStatus::kPrepared, BranchStatus::kSucceed, BranchStatus::kFailed}) {
    if (ToString(v) == s) return v;
  }
  return std::nullopt;
}

// Only non-default values are written, with DTM's key names, except "concurrent" which DTM always
// writes (its TransOptions has no omitempty on it).
std::string EncodeOptionsJson(const TransOptions& o) {
  json::object obj;
  if (o.wait_result) obj["wait_result"] = true;
  if (o.timeout_to_fail_s) obj["timeout_to_fail"] = o.timeout_to_fail_s;
  if (o.request_timeout_s) obj["request_timeout"] = o.request_timeout_s;
  if (o.retry_interval_s) obj["retry_interval"] = o.retry_interval_s;
  if (!o.branch_headers.empty()) {
    json::object h;
    for (const auto& [k, v] : o.branch_headers) h[k] = v;
    obj["branch_headers"] = std::move(h);
  }
  obj["concurrent"] = o.concurrent;
  if (o.retry_limit) obj["retry_limit"] = o.retry_limit;
  if (o.retry_count) obj["retry_count"] = o.retry_count;
  return json::serialize(obj);
}

Result<TransOptions> DecodeOptionsJson(std::string_view text) {
  TransOptions o;
  if (text.empty()) return o;
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return Status::InvalidArgument("options: not a JSON object");
  const json::object& obj = v.get_object();
  auto get_int = [&](const char* key, int64_t& out) {
    if (auto* p = obj.if_contains(key); p && p->is_int64()) out = p->get_int64();
  };
  auto get_bool = [&](const char* key, bool& out) {
    if (auto* p = obj.if_contains(key); p && p->is_bool()) out = p->get_bool();
  };
  get_bool("wait_result", o.wait_result);
  get_int("timeout_to_fail", o.timeout_to_fail_s);
  get_int("request_timeout", o.request_timeout_s);
  get_int("retry_interval", o.retry_interval_s);
  get_bool("concurrent", o.concurrent);
  get_int("retry_limit", o.retry_limit);
  get_int("retry_count", o.retry_count);
  if (auto* p = obj.if_contains("branch_headers"); p && p->is_object()) {
    for (const auto& kv : p->get_object()) {
      if (kv.value().is_string()) {
        o.branch_headers.emplace_back(std::string(kv.key()), std::string(kv.value().get_string()));
      }
    }
  }
  return o;
}

Status ValidateGid(std::string_view gid) {
  if (gid.empty()) return Status::InvalidArgument("gid is required");
  if (gid.size() > kMaxGidBytes) {
    return Status::InvalidArgument(
        fmt::format("gid is {} bytes, over the limit of {} bytes", gid.size(), kMaxGidBytes));
  }
  for (size_t i = 0; i < gid.size(); ++i) {
    auto c = static_cast<unsigned char>(gid[i]);
    if (c < 0x20 || c == 0x7F) {
      return Status::InvalidArgument(fmt::format(
          "gid contains a control character (byte 0x{:02x} at offset {}); gids are kept verbatim "
          "and must be printable",
          c, i));
    }
  }
  return Status::Ok();
}

}  // namespace dtx::core
