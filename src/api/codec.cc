#include "api/codec.h"

#include <fmt/format.h>

#include <array>
#include <boost/json.hpp>
#include <limits>
#include <span>
#include <utility>

#include "core/business_keys.h"
#include "core/json_keys.h"
#include "http/server.h"
#include "util/utf8.h"

namespace dtx::api {

namespace json = boost::json;

namespace {

// ------------------------------------------------------------------------------------------------
// Messages

// User input echoed in an error message is cut to a readable length (at a UTF-8 boundary); the
// message is not data, so this is not the truncation the limits forbid.
std::string Echo(std::string_view s) {
  constexpr size_t kMaxEcho = 64;
  if (s.size() <= kMaxEcho) {
    return std::string(s);
  }
  size_t n = kMaxEcho;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) {
    --n;
  }
  return std::string(s.substr(0, n)) + "...";
}

Status TypeError(std::string_view field, std::string_view expected) {
  return Status::InvalidArgument(fmt::format("json: field \"{}\" must be {}", field, expected));
}

Status CheckSize(std::string_view field, std::string_view value, size_t limit) {
  if (value.size() <= limit) {
    return Status::Ok();
  }
  return Status::InvalidArgument(
      fmt::format("{} is {} bytes, over the limit of {} bytes", field, value.size(), limit));
}

// ------------------------------------------------------------------------------------------------
// Parsing

// Strict RFC 8259: default parse_options (no comments, no trailing commas, valid UTF-8 only, depth
// <= 32). The value is allocated from `sp`; nothing refers to `body` afterwards.
Result<json::value> Parse(std::string_view body, json::storage_ptr sp) {
  json::parser parser(json::storage_ptr(), json::parse_options{});
  parser.reset(std::move(sp));
  boost::system::error_code ec;
  size_t consumed = parser.write(body.data(), body.size(), ec);
  if (ec) {
    return Status::InvalidArgument(
        fmt::format("malformed JSON near byte {}: {}", consumed, ec.message()));
  }
  return parser.release();
}

// Go's key rule (core/json_keys.h).
template <size_t N>
int MatchKey(std::string_view key, const std::array<std::string_view, N>& names) {
  return core::MatchGoKey(key, std::span<const std::string_view>(names.data(), N));
}

Status GetString(const json::value& v, std::string_view field, std::string& out) {
  if (!v.is_string()) {
    return TypeError(field, "a string");
  }
  out.assign(v.get_string().data(), v.get_string().size());
  return Status::Ok();
}

Status GetBool(const json::value& v, std::string_view field, bool& out) {
  if (!v.is_bool()) {
    return TypeError(field, "a boolean");
  }
  out = v.get_bool();
  return Status::Ok();
}

// A JSON integer (no fraction, no exponent, no string) in [0, max].
Status GetCount(const json::value& v, std::string_view field, int64_t max, int64_t& out) {
  if (v.is_uint64()) {
    return TypeError(field, fmt::format("an integer <= {}", max));
  }
  if (!v.is_int64()) {
    return TypeError(field, "an integer");
  }
  int64_t n = v.get_int64();
  if (n < 0) {
    return TypeError(field, "a non-negative integer");
  }
  if (n > max) {
    return TypeError(field, fmt::format("an integer <= {}", max));
  }
  out = n;
  return Status::Ok();
}

// A JSON object of strings (Go map[string]string): keys verbatim, null reads as "", the last
// duplicate wins (the parser keeps the last value at the first key's position).
Status GetStringMap(const json::value& v, std::string_view field, core::Headers& out) {
  if (!v.is_object()) {
    return TypeError(field, "an object of strings");
  }
  out.clear();
  out.reserve(v.get_object().size());
  for (const auto& kv : v.get_object()) {
    const json::value& value = kv.value();
    std::string_view key(kv.key().data(), kv.key().size());
    if (value.is_null()) {
      out.emplace_back(std::string(key), std::string());
    } else if (value.is_string()) {
      out.emplace_back(std::string(key), std::string(value.get_string()));
    } else {
      std::string where = field.empty() ? fmt::format("key \"{}\"", Echo(key))
                                        : fmt::format("{}: key \"{}\"", field, Echo(key));
      return Status::InvalidArgument(fmt::format("json: {} must have a string value", where));
    }
  }
  return Status::Ok();
}

// ------------------------------------------------------------------------------------------------
// DecodeTransRequest

enum Field : int {
  kGid,
  kTransType,
  kSteps,
  kPayloads,
  kQueryPrepared,
  kProtocol,
  kCustomData,
  kRollbackReason,
  kReqExtra,
  kWaitResult,
  kTimeoutToFail,
  kRequestTimeout,
  kRetryInterval,
  kBranchHeaders,
  kConcurrent,
  kRetryLimit,
  kRetryCount,
  kBusinessKeys,
  kOnBusy,
  kFieldCount,
};

constexpr std::array<std::string_view, kFieldCount> kFieldNames = {
    "gid",
    "trans_type",
    "steps",
    "payloads",
    "query_prepared",
    "protocol",
    "custom_data",
    "rollback_reason",
    "req_extra",
    "wait_result",
    "timeout_to_fail",
    "request_timeout",
    "retry_interval",
    "branch_headers",
    "concurrent",
    "retry_limit",
    "retry_count",
    "business_keys",
    "on_busy",
};

enum StepField : int { kAction, kCompensate, kData, kStepFieldCount };
constexpr std::array<std::string_view, kStepFieldCount> kStepFieldNames = {"action", "compensate",
                                                                           "data"};

Status DecodeSteps(const json::value& v, std::vector<StepSpec>& out) {
  if (!v.is_array()) {
    return TypeError("steps", "an array of objects");
  }
  const json::array& arr = v.get_array();
  if (arr.size() > core::kMaxSteps) {
    return Status::InvalidArgument(
        fmt::format("steps has {} entries, over the limit of {}", arr.size(), core::kMaxSteps));
  }
  out.clear();
  out.resize(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    const json::value& step = arr[i];
    if (step.is_null()) {
      continue;  // Go: a nil map, i.e. an empty step
    }
    if (!step.is_object()) {
      return TypeError(fmt::format("steps[{}]", i), "an object of strings");
    }
    for (const auto& kv : step.get_object()) {
      std::string_view key(kv.key().data(), kv.key().size());
      if (kv.value().is_null()) {
        continue;
      }
      if (!kv.value().is_string()) {
        return TypeError(fmt::format("steps[{}].{}", i, Echo(key)), "a string");
      }
      std::string value(kv.value().get_string());
      switch (MatchKey(key, kStepFieldNames)) {
        case kAction:
          out[i].action = std::move(value);
          break;
        case kCompensate:
          out[i].compensate = std::move(value);
          break;
        case kData:
          out[i].data = std::move(value);
          break;
        default:
          break;  // unknown keys are ignored
      }
    }
  }
  return Status::Ok();
}

Status DecodePayloads(const json::value& v, std::vector<std::string>& out) {
  if (!v.is_array()) {
    return TypeError("payloads", "an array of strings");
  }
  const json::array& arr = v.get_array();
  if (arr.size() > core::kMaxSteps) {
    return Status::InvalidArgument(
        fmt::format("payloads has {} entries, over the limit of {}", arr.size(), core::kMaxSteps));
  }
  out.clear();
  out.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    if (arr[i].is_null()) {
      out.emplace_back();
    } else if (arr[i].is_string()) {
      out.emplace_back(arr[i].get_string());
    } else {
      return TypeError(fmt::format("payloads[{}]", i), "a string");
    }
  }
  return Status::Ok();
}

Status DecodeField(int field, const json::value& v, TransRequest& r, std::string& trans_type) {
  const std::string_view name = kFieldNames[static_cast<size_t>(field)];
  core::TransOptions& o = r.options;
  switch (field) {
    case kGid:
      return GetString(v, name, r.gid);
    case kTransType:
      return GetString(v, name, trans_type);
    case kSteps:
      return DecodeSteps(v, r.steps);
    case kPayloads: {
      std::vector<std::string> payloads;
      Status s = DecodePayloads(v, payloads);
      if (s.ok()) {
        r.payloads = std::move(payloads);
      }
      return s;
    }
    case kQueryPrepared:
      return GetString(v, name, r.query_prepared);
    case kProtocol:
      return GetString(v, name, r.protocol);
    case kCustomData:
      return GetString(v, name, r.custom_data);
    case kRollbackReason:
      return GetString(v, name, r.rollback_reason);
    case kReqExtra:
      return GetStringMap(v, name, r.req_extra);
    case kWaitResult:
      r.has_wait_result = true;
      return GetBool(v, name, o.wait_result);
    case kTimeoutToFail:
      r.has_timeout_to_fail = true;
      return GetCount(v, name, kMaxDurationS, o.timeout_to_fail_s);
    case kRequestTimeout:
      r.has_request_timeout = true;
      return GetCount(v, name, kMaxDurationS, o.request_timeout_s);
    case kRetryInterval:
      r.has_retry_interval = true;
      return GetCount(v, name, kMaxDurationS, o.retry_interval_s);
    case kBranchHeaders:
      r.has_branch_headers = true;
      return GetStringMap(v, name, o.branch_headers);
    case kConcurrent:
      r.has_concurrent = true;
      return GetBool(v, name, o.concurrent);
    case kRetryLimit:
      r.has_retry_limit = true;
      return GetCount(v, name, std::numeric_limits<int64_t>::max(), o.retry_limit);
    case kRetryCount:
      r.has_retry_count = true;
      return GetCount(v, name, std::numeric_limits<int64_t>::max(), o.retry_count);
    case kBusinessKeys: {
      r.has_business_keys = true;
      if (!v.is_array()) return TypeError(name, "an array of strings");
      r.business_keys.clear();
      for (const json::value& k : v.get_array()) {
        if (!k.is_string()) return TypeError(name, "an array of strings");
        r.business_keys.emplace_back(k.get_string());
      }
      return Status::Ok();
    }
    case kOnBusy:
      return GetString(v, name, r.on_busy);
    default:
      return Status::Ok();
  }
}

}  // namespace

Status ApplyBusinessKeys(TransRequest& r) {
  core::KeySpec spec;
  if (r.has_business_keys) {
    // The top-level field wins over custom_data's (WithKeySpec replaces it there).
    Result<std::vector<std::string>> keys = core::NormalizeBusinessKeys(r.business_keys);
    if (!keys.ok()) return keys.status();
    Result<bool> reject = core::ParseOnBusy(r.on_busy);
    if (!reject.ok()) return reject.status();
    spec = core::KeySpec{std::move(*keys), *reject};
  } else {
    // DTM SDKs can only set custom_data: business_keys is read there too (Go's key rule).
    Result<core::KeySpec> parsed = core::ParseKeySpec(r.custom_data);
    if (!parsed.ok()) return parsed.status();
    if (parsed->keys.empty()) {
      if (!r.on_busy.empty()) {
        return Status::InvalidArgument("on_busy is given without business_keys");
      }
      return Status::Ok();  // custom_data unchanged: its own limit is checked with the others
    }
    spec = std::move(*parsed);
    r.has_business_keys = true;
    if (!r.on_busy.empty()) {
      // on_busy at the top level with the keys in custom_data.
      Result<bool> reject = core::ParseOnBusy(r.on_busy);
      if (!reject.ok()) return reject.status();
      spec.reject_if_busy = *reject;
    }
  }
  // Stored normalized (sorted, distinct, under the exact name "business_keys"): the stores'
  // key rows are made from it.
  Result<std::string> merged = core::WithKeySpec(r.custom_data, spec);
  if (!merged.ok()) return merged.status();
  r.custom_data = std::move(*merged);
  if (r.custom_data.size() > core::kMaxCustomDataBytes) {
    return Status::InvalidArgument(
        fmt::format("custom_data with business_keys has {} bytes, over the limit of {}",
                    r.custom_data.size(), core::kMaxCustomDataBytes));
  }
  return Status::Ok();
}

namespace {

Status Validate(TransRequest& r, std::string_view trans_type) {
  // Kept verbatim (DTM's dtmimp.Escape strips ';', CR and LF; dtx refuses control characters).
  if (Status s = core::ValidateGid(r.gid); !s.ok()) return s;
  if (Status s = ApplyBusinessKeys(r); !s.ok()) return s;

  // Go cannot tell "" from a missing key; both leave trans_type absent.
  if (!trans_type.empty()) {
    r.trans_type = core::ParseTransType(trans_type);
    if (!r.trans_type) {
      return Status::InvalidArgument(fmt::format("unknown trans_type '{}'", Echo(trans_type)));
    }
  }
  if (r.protocol != "" && r.protocol != "http" && r.protocol != "grpc" &&
      r.protocol != "json-rpc") {
    return Status::InvalidArgument(fmt::format("unknown protocol '{}'", Echo(r.protocol)));
  }

  for (size_t i = 0; i < r.steps.size(); ++i) {
    const StepSpec& step = r.steps[i];
    Status s = CheckSize(fmt::format("steps[{}].action", i), step.action, core::kMaxUrlBytes);
    if (s.ok()) {
      s = CheckSize(fmt::format("steps[{}].compensate", i), step.compensate, core::kMaxUrlBytes);
    }
    if (s.ok() && step.data) {
      s = CheckSize(fmt::format("steps[{}].data", i), *step.data, core::kMaxBinDataBytes);
    }
    if (!s.ok()) {
      return s;
    }
  }
  if (r.payloads) {
    for (size_t i = 0; i < r.payloads->size(); ++i) {
      Status s =
          CheckSize(fmt::format("payloads[{}]", i), (*r.payloads)[i], core::kMaxBinDataBytes);
      if (!s.ok()) {
        return s;
      }
    }
  }
  if (Status s = CheckSize("query_prepared", r.query_prepared, core::kMaxUrlBytes); !s.ok()) {
    return s;
  }
  if (Status s = CheckSize("custom_data", r.custom_data, core::kMaxCustomDataBytes); !s.ok()) {
    return s;
  }
  if (Status s = CheckSize("rollback_reason", r.rollback_reason, core::kMaxRollbackReasonBytes);
      !s.ok()) {
    return s;
  }
  // branch_headers go on the wire of every call dtx makes: reject what would break or inject
  // headers.
  for (const auto& [name, value] : r.options.branch_headers) {
    if (!http::IsHttpToken(name)) {
      return Status::InvalidArgument(
          fmt::format("branch_headers: \"{}\" is not a valid header name", Echo(name)));
    }
    if (!http::IsPlainHeaderValue(value)) {
      return Status::InvalidArgument(fmt::format(
          "branch_headers: the value of \"{}\" contains a control character", Echo(name)));
    }
    if (http::IsReservedRequestHeader(name)) {
      return Status::InvalidArgument(fmt::format(
          "branch_headers: \"{}\" is set by dtx itself (Host and hop-by-hop headers cannot be "
          "given)",
          Echo(name)));
    }
  }
  return Status::Ok();
}

}  // namespace

Result<TransRequest> DecodeTransRequest(std::string_view body) {
  std::array<unsigned char, 4096> buffer;
  json::monotonic_resource mr(buffer.data(), buffer.size());
  Result<json::value> parsed = Parse(body, &mr);
  if (!parsed.ok()) {
    return parsed.status();
  }
  if (!parsed->is_object()) {
    return Status::InvalidArgument("request body must be a JSON object");
  }

  // Keys are applied in document order, as Go does: for duplicates (exact or differing only in
  // case) the last non-null one wins. One corner differs from Go: the parser keeps only the last
  // value of an exactly repeated key, so {"gid":"a","gid":null} leaves gid absent where Go keeps
  // "a".
  TransRequest r;
  std::string trans_type;
  for (const auto& kv : parsed->get_object()) {
    if (kv.value().is_null()) {
      continue;  // null means absent
    }
    int field = MatchKey(std::string_view(kv.key().data(), kv.key().size()), kFieldNames);
    if (field < 0) {
      continue;  // unknown and server-owned keys are ignored
    }
    if (Status s = DecodeField(field, kv.value(), r, trans_type); !s.ok()) {
      return s;
    }
  }
  if (Status s = Validate(r, trans_type); !s.ok()) {
    return s;
  }
  return r;
}

Result<std::vector<std::pair<std::string, std::string>>> DecodeStringMap(std::string_view body) {
  std::array<unsigned char, 4096> buffer;
  json::monotonic_resource mr(buffer.data(), buffer.size());
  Result<json::value> parsed = Parse(body, &mr);
  if (!parsed.ok()) {
    return parsed.status();
  }
  if (!parsed->is_object()) {
    return Status::InvalidArgument("request body must be a JSON object");
  }
  core::Headers out;
  if (Status s = GetStringMap(*parsed, "", out); !s.ok()) {
    return s;
  }
  return out;
}

}  // namespace dtx::api
