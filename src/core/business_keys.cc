#include "core/business_keys.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "core/json_keys.h"
#include "util/utf8.h"

namespace dtx::core {

namespace json = boost::json;

namespace {

bool HasControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

}  // namespace

Result<std::vector<std::string>> NormalizeBusinessKeys(const std::vector<std::string>& keys) {
  if (keys.empty()) {
    return Status::InvalidArgument("business_keys is empty (give 1 to 16 keys, or leave it out)");
  }
  if (keys.size() > kMaxBusinessKeys) {
    return Status::InvalidArgument(fmt::format("business_keys has {} keys, over the limit of {}",
                                               keys.size(), kMaxBusinessKeys));
  }
  std::vector<std::string> out;
  out.reserve(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    const std::string& k = keys[i];
    if (k.empty()) return Status::InvalidArgument(fmt::format("business_keys[{}] is empty", i));
    if (k.size() > kMaxBusinessKeyBytes) {
      return Status::InvalidArgument(
          fmt::format("business_keys[{}] has {} bytes, over the limit of {}", i, k.size(),
                      kMaxBusinessKeyBytes));
    }
    if (!IsValidUtf8(k) || HasControl(k)) {
      return Status::InvalidArgument(
          fmt::format("business_keys[{}] is not valid UTF-8 or holds a control character", i));
    }
    out.push_back(k);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Result<bool> ParseOnBusy(std::string_view on_busy) {
  if (on_busy.empty() || on_busy == "wait") return false;
  if (on_busy == "reject") return true;
  return Status::InvalidArgument("on_busy must be \"wait\" or \"reject\"");
}

Result<KeySpec> ParseKeySpec(std::string_view custom_data) {
  KeySpec spec;
  if (custom_data.empty()) return spec;
  boost::system::error_code ec;
  json::value cd = json::parse(custom_data, ec);
  if (ec || !cd.is_object()) return spec;
  const json::value* keys = GoField(cd.get_object(), "business_keys");
  if (keys == nullptr) return spec;
  if (!keys->is_array())
    return Status::InvalidArgument("business_keys must be an array of strings");
  std::vector<std::string> given;
  for (const json::value& k : keys->get_array()) {
    if (!k.is_string()) return Status::InvalidArgument("business_keys must be an array of strings");
    given.emplace_back(k.get_string());
  }
  Result<std::vector<std::string>> normalized = NormalizeBusinessKeys(given);
  if (!normalized.ok()) return normalized.status();
  spec.keys = std::move(*normalized);
  if (const json::value* on_busy = GoField(cd.get_object(), "on_busy")) {
    if (!on_busy->is_string()) return Status::InvalidArgument("on_busy must be a string");
    Result<bool> reject = ParseOnBusy(std::string_view(on_busy->get_string()));
    if (!reject.ok()) return reject.status();
    spec.reject_if_busy = *reject;
  }
  return spec;
}

Result<std::string> WithKeySpec(std::string_view custom_data, const KeySpec& spec) {
  json::object obj;
  if (!custom_data.empty()) {
    boost::system::error_code ec;
    json::value cd = json::parse(custom_data, ec);
    if (ec || !cd.is_object()) {
      return Status::InvalidArgument(
          "custom_data must be a JSON object (or empty) when business_keys is given");
    }
    obj = std::move(cd.get_object());
  }
  // Every key that Go's rule would read as business_keys / on_busy goes: only ours decides.
  for (auto it = obj.begin(); it != obj.end();) {
    const std::string_view k(it->key().data(), it->key().size());
    if (GoFoldEquals(k, "business_keys") || GoFoldEquals(k, "on_busy")) {
      it = obj.erase(it);
    } else {
      ++it;
    }
  }
  json::array keys;
  for (const std::string& k : spec.keys) keys.emplace_back(k);
  obj["business_keys"] = std::move(keys);
  if (spec.reject_if_busy) obj["on_busy"] = "reject";
  return json::serialize(obj);
}

int64_t PrepareKeyWaitDeadlineMs(const GlobalTrans& g, const Settings& settings) {
  const int64_t timeout_ms = TimeoutToFailMs(g, settings);
  const int64_t wait_ms =
      timeout_ms > 0 ? std::min(timeout_ms, kMaxPrepareKeyWaitMs) : kMaxPrepareKeyWaitMs;
  return g.create_time_ms + wait_ms;
}

namespace {

// A prepared tcc/xa that does not hold its keys (its prepare has not answered 200 yet).
KeyWait DecidePreparedWait(const GlobalTrans& g, const KeySpec& spec, const KeyState& state,
                           const Settings& settings, int64_t now_ms) {
  KeyWait w;
  if (spec.reject_if_busy) {
    w.kind = KeyWait::Kind::kFail;
    w.reason = fmt::format("business key '{}' is busy (held by or queued behind '{}')",
                           state.waiting_key, state.waiting_for);
    return w;
  }
  const int64_t deadline = PrepareKeyWaitDeadlineMs(g, settings);
  if (now_ms >= deadline) {
    w.kind = KeyWait::Kind::kFail;
    w.reason =
        fmt::format("Timeout after {:g} seconds waiting for business key '{}' (held by '{}')",
                    static_cast<double>(deadline - g.create_time_ms) / 1000, state.waiting_key,
                    state.waiting_for);
    return w;
  }
  w.kind = KeyWait::Kind::kWait;
  w.wake_at_ms = deadline;
  return w;
}

}  // namespace

KeyWait DecideKeyWait(const GlobalTrans& g, const KeySpec& spec, const KeyState& state,
                      const Settings& settings, int64_t now_ms) {
  KeyWait w;
  if (spec.keys.empty() || state.held) return w;  // kRun
  if (g.trans_type == TransType::kTcc || g.trans_type == TransType::kXa) {
    // Submitted or aborting, it held its keys when prepare answered (they are released only by
    // its final write): nothing to decide.
    if (g.status != GlobalStatus::kPrepared) return w;
    return DecidePreparedWait(g, spec, state, settings, now_ms);
  }
  if (g.trans_type != TransType::kSaga && g.trans_type != TransType::kMsg) return w;
  if (g.status == GlobalStatus::kAborting && g.trans_type == TransType::kSaga) {
    // Aborted (by an operator) while it waited: it never held its keys, so no action ran and
    // there is nothing to compensate; it fails without a call, keeping its rollback reason.
    w.kind = KeyWait::Kind::kFail;
    w.reason = g.rollback_reason;
    return w;
  }
  if (g.status != GlobalStatus::kSubmitted) return w;
  if (spec.reject_if_busy) {
    w.kind = KeyWait::Kind::kFail;
    w.reason = fmt::format("business key '{}' is busy (held by or queued behind '{}')",
                           state.waiting_key, state.waiting_for);
    return w;
  }
  // A saga's timeout_to_fail runs while it waits; a submitted msg has none (it must deliver).
  const int64_t timeout_ms =
      g.trans_type == TransType::kSaga ? TimeoutToFailMs(g, settings) : int64_t{0};
  const int64_t deadline = timeout_ms > 0 ? g.create_time_ms + timeout_ms : 0;
  if (deadline > 0 && now_ms >= deadline) {
    w.kind = KeyWait::Kind::kFail;
    w.reason = fmt::format("Timeout after {} seconds waiting for business key '{}' (held by '{}')",
                           timeout_ms / 1000, state.waiting_key, state.waiting_for);
    return w;
  }
  w.kind = KeyWait::Kind::kWait;
  w.wake_at_ms = now_ms + kKeyWaitRecheckMs;
  if (deadline > 0) w.wake_at_ms = std::min(w.wake_at_ms, deadline);
  return w;
}

}  // namespace dtx::core
