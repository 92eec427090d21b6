// Business keys in the SDK (include/dtx/business_keys.h, src/sdk/business_keys_internal.h).
#include "dtx/business_keys.h"

#include <algorithm>
#include <boost/json.hpp>

#include "core/business_keys.h"
#include "core/model.h"
#include "sdk/business_keys_internal.h"
#include "sdk/client_internal.h"
#include "util/utf8.h"

namespace dtx {

// The public copies of the coordinator's limits must not drift from core's.
static_assert(kMaxBusinessKeys == core::kMaxBusinessKeys);
static_assert(kMaxBusinessKeyBytes == core::kMaxBusinessKeyBytes);
static_assert(kMaxCustomDataBytes == core::kMaxCustomDataBytes);
static_assert(kMaxPrepareKeyWait.count() == core::kMaxPrepareKeyWaitMs);

namespace json = boost::json;

namespace {

bool HasControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

}  // namespace

Status sdk_internal::CheckBusinessKeysWith(const std::vector<std::string>& keys, OnBusy on_busy,
                                           const json::object& custom_data) {
  if (keys.empty()) return Status::Ok();
  if (keys.size() > kMaxBusinessKeys) {
    return Status::InvalidArgument("business keys: " + std::to_string(keys.size()) +
                                   " keys, over the limit of " + std::to_string(kMaxBusinessKeys));
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    const std::string& k = keys[i];
    const std::string which = "business keys: key " + std::to_string(i);
    if (k.empty()) return Status::InvalidArgument(which + " is empty");
    if (k.size() > kMaxBusinessKeyBytes) {
      return Status::InvalidArgument(which + " has " + std::to_string(k.size()) +
                                     " bytes, over the limit of " +
                                     std::to_string(kMaxBusinessKeyBytes));
    }
    if (!IsValidUtf8(k) || HasControl(k)) {
      return Status::InvalidArgument(which + " is not valid UTF-8 or holds a control character");
    }
  }
  // The coordinator stores them in custom_data, sorted and without duplicates
  // (core::WithKeySpec), and refuses a custom_data over its limit.
  std::vector<std::string> sorted = keys;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  json::object stored = custom_data;
  AddBusinessKeys(stored, sorted, on_busy);
  const size_t bytes = json::serialize(stored).size();
  if (bytes > kMaxCustomDataBytes) {
    return Status::InvalidArgument(
        "business keys: custom_data with the keys would have " + std::to_string(bytes) +
        " bytes, over the coordinator's limit of " + std::to_string(kMaxCustomDataBytes) +
        " (fewer or shorter keys)");
  }
  return Status::Ok();
}

Status CheckBusinessKeys(const std::vector<std::string>& keys, OnBusy on_busy) {
  return sdk_internal::CheckBusinessKeysWith(keys, on_busy, json::object());
}

std::chrono::milliseconds PrepareKeyWaitDeadline(int64_t timeout_to_fail_s,
                                                 std::chrono::milliseconds request_timeout) {
  std::chrono::milliseconds wait = kMaxPrepareKeyWait;
  if (timeout_to_fail_s > 0 && timeout_to_fail_s < kMaxPrepareKeyWait.count() / 1000) {
    wait = std::chrono::seconds(timeout_to_fail_s);
  }
  return std::max(request_timeout, wait + kPrepareKeyWaitSlack);
}

void sdk_internal::AddBusinessKeys(json::object& body, const std::vector<std::string>& keys,
                                   OnBusy on_busy) {
  if (keys.empty()) return;
  json::array a;
  for (const std::string& k : keys) a.emplace_back(k);
  body["business_keys"] = std::move(a);
  if (on_busy == OnBusy::kReject) body["on_busy"] = "reject";
}

Status sdk_internal::MapKeysRefusal(Status prepared, const std::vector<std::string>& keys,
                                    std::string_view what) {
  if (keys.empty() || prepared.code() != Code::kConflict) return prepared;
  const std::string& m = prepared.message();
  std::string joined;
  for (const std::string& k : keys) joined += (joined.empty() ? "" : ",") + k;
  const bool busy =
      m.find("business key '") != std::string::npos && m.find("' is busy") != std::string::npos;
  const bool timed_out = m.find("waiting for business key '") != std::string::npos;
  if (!busy && !timed_out) return prepared;
  std::string head = std::string(what) + (busy ? ": business keys busy (on_busy reject): "
                                               : ": business keys not acquired within the "
                                                 "prepare's wait: ");
  ErrorInfo info{std::string(busy ? kReasonBusinessKeysBusy : kReasonBusinessKeysTimeout),
                 {{"keys", joined}, {"http_status", "409"}}};
  return Status::Conflict(head + m).WithInfo(std::move(info));
}

std::chrono::milliseconds sdk_internal::SubmitDeadline(Client& client, bool keyed_wait_result) {
  if (!keyed_wait_result) return std::chrono::milliseconds(0);
  return ClientInternals::Of(client).options.request_timeout + kMaxPrepareKeyWait;
}

Status sdk_internal::SubmitMaybeWaiting(Client& client, const std::string& body,
                                        bool keyed_wait_result) {
  if (!keyed_wait_result) return client.Submit(body);
  return ClientInternals::Of(client).Post("submit", body, SubmitDeadline(client, true));
}

Status sdk_internal::PrepareMaybeWaiting(Client& client, const std::string& body,
                                         const std::string& abort_body,
                                         const std::vector<std::string>& keys,
                                         int64_t timeout_to_fail_s, std::string_view what) {
  if (keys.empty()) return client.Prepare(body);
  auto& impl = ClientInternals::Of(client);
  const std::chrono::milliseconds deadline =
      PrepareKeyWaitDeadline(timeout_to_fail_s, impl.options.request_timeout);
  Status s = impl.Post("prepare", body, deadline);
  if (s.ok()) return s;
  const Code c = s.code();
  if (c != Code::kTimeout && c != Code::kUnavailable && c != Code::kInternal) {
    return MapKeysRefusal(std::move(s), keys, what);
  }
  const Status aborted = client.Abort(abort_body);
  return Status(c, std::string(what) + ": " + s.message() + " (keyed prepare without an answer; " +
                       (aborted.ok() ? std::string("aborted it") : "abort: " + aborted.ToString()) +
                       ")");
}

}  // namespace dtx
