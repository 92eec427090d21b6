// Business keys on the wire (include/dtx/business_keys.h): the members a §2.2 body gets, and the
// Status of a tcc/xa prepare that the coordinator refused because of its keys. Pure functions.
#pragma once

#include <boost/json/object.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "dtx/business_keys.h"
#include "dtx/client.h"
#include "dtx/status.h"

namespace dtx::sdk_internal {

// Sets body["business_keys"] (and "on_busy":"reject") when `keys` is not empty; nothing otherwise.
void AddBusinessKeys(boost::json::object& body, const std::vector<std::string>& keys,
                     OnBusy on_busy);

// The same check as CheckBusinessKeys, with `custom_data` (a JSON object, or empty) the other
// members the transaction's custom_data will have beside the keys.
Status CheckBusinessKeysWith(const std::vector<std::string>& keys, OnBusy on_busy,
                             const boost::json::object& custom_data);

// `prepared` is the Status of a prepare with `keys`: a kConflict whose message is the
// coordinator's key refusal ("business key 'k' is busy ..." or "Timeout after N seconds waiting
// for business key ...") becomes kConflict "business keys busy: ..." / "business keys not
// acquired within the prepare's wait: ..." with reason kReasonBusinessKeysBusy/Timeout and the
// facts keys (comma-separated) and http_status 409. Anything else is returned unchanged.
Status MapKeysRefusal(Status prepared, const std::vector<std::string>& keys, std::string_view what);

// POST prepare of a tcc/xa: without keys Client::Prepare; with keys its deadline is
// PrepareKeyWaitDeadline (the coordinator holds the request until the keys are free) and a key
// refusal is mapped by MapKeysRefusal. A keyed prepare that got no answer (kTimeout,
// kUnavailable, kInternal) may still be queued on the coordinator and take the keys later with
// nobody to drive it: `abort_body` is posted (best effort) so that it releases its place; its
// outcome is appended to the message. `timeout_to_fail_s` 0 = unset.
Status PrepareMaybeWaiting(Client& client, const std::string& body, const std::string& abort_body,
                           const std::vector<std::string>& keys, int64_t timeout_to_fail_s,
                           std::string_view what);

// The deadline of a submit with wait_result and business keys: the coordinator answers once the
// transaction has run, or after at most kMaxPrepareKeyWait (+ its request timeout) while it still
// waits for its keys; so the client's request_timeout + kMaxPrepareKeyWait. 0 (the client's own
// request_timeout) when `keyed_wait_result` is false.
std::chrono::milliseconds SubmitDeadline(Client& client, bool keyed_wait_result);

// POST submit of a saga/msg with SubmitDeadline(client, keyed_wait_result).
Status SubmitMaybeWaiting(Client& client, const std::string& body, bool keyed_wait_result);

}  // namespace dtx::sdk_internal
