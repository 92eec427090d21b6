// JSON codecs of the coordinator API (PROTOCOL.md §2): decoding of request bodies with the rules of
// Go's encoding/json that DTM clients rely on, validation of every field BEFORE anything is
// persisted, and encoding of transactions and branch rows in the record shapes of §2.4, plus the
// envelope of §2.1.
//
// Pure functions; thread-safe. Decoding errors are Status values with code kInvalidArgument (400),
// kTooLarge is not used here (the HTTP server enforces the body limit).
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/model.h"
#include "store/store.h"
#include "util/status.h"

namespace dtx::api {

// One step of a saga or msg request: {"action":url,"compensate":url,"data":legacy payload}.
struct StepSpec {
  std::string action;
  std::string compensate;
  std::optional<std::string> data;  // legacy payload (Python SDK)
};

// The transaction request body of §2.2 (prepare, submit, abort, forceStop, resetNextCronTime, ...).
struct TransRequest {
  std::string gid;  // verbatim; non-empty, <= 128 bytes, no control characters (core::ValidateGid)
  std::optional<core::TransType> trans_type;  // absent if the key is missing or null
  std::vector<StepSpec> steps;
  std::optional<std::vector<std::string>> payloads;  // absent vs [] matters (legacy data fallback)
  std::string query_prepared;
  std::string protocol;  // "" or "http" (default), "grpc", "json-rpc"
  std::string custom_data;
  std::string rollback_reason;
  std::vector<std::pair<std::string, std::string>> req_extra;
  core::TransOptions options;
  // Which option keys were present (non-null) in the body; lets a submit override stored options.
  bool has_wait_result = false;
  bool has_timeout_to_fail = false;
  bool has_request_timeout = false;
  bool has_retry_interval = false;
  bool has_branch_headers = false;
  bool has_concurrent = false;
  bool has_retry_limit = false;
  bool has_retry_count = false;
  // "business_keys" (a dtx extension, issue 15 item 2; core/business_keys.h) was given, at the top
  // level or in custom_data. Top-level keys (and "on_busy") are moved into custom_data by
  // ApplyBusinessKeys, where every reader of the stored transaction finds them.
  bool has_business_keys = false;
  std::vector<std::string> business_keys;  // the top-level field (custom_data's are read there)
  std::string on_busy;                     // top-level "on_busy": "", "wait" or "reject"
};

// Moves top-level business_keys/on_busy into custom_data (which must then be empty or a JSON
// object) and validates the key spec found there (core::ParseKeySpec: 1..16 keys of 1..128 bytes,
// on_busy wait|reject), and custom_data's size after the merge. kInvalidArgument naming the
// problem. Called by DecodeTransRequest; the saga-definition submit calls it too.
Status ApplyBusinessKeys(TransRequest& r);

// Upper bound of timeout_to_fail, request_timeout and retry_interval: 100 years. DTM has none; the
// bound keeps `create_time_ms + seconds * 1000` far from int64 overflow. Above -> kInvalidArgument.
inline constexpr int64_t kMaxDurationS = int64_t{100} * 365 * 24 * 3600;

// Decodes and validates a §2.2 body.
//  - invalid JSON, a non-object top level, a wrong type (string/int/bool/array/object), a
//    non-integer number in an integer field, negative durations/limits -> kInvalidArgument
//  - keys match exactly first, then case-insensitively; the last duplicate wins; null = absent;
//    unknown keys (passthrough_headers, status, ...) are ignored
//  - gid: kept verbatim; core::ValidateGid (non-empty, <= kMaxGidBytes, no control characters)
//  - trans_type must be one of saga/tcc/xa/msg/workflow when present
//  - field limits of core/model.h (urls, custom_data, rollback_reason, payload sizes, kMaxSteps)
//  - protocol must be "", "http", "grpc" or "json-rpc"
//  - branch_headers: names must be HTTP tokens, values free of control characters (except tab)
//  - "" reads as absent for trans_type (Go cannot tell them apart)
// `require_gid` false is used by nothing today but keeps the door open for routes without a gid.
Result<TransRequest> DecodeTransRequest(std::string_view body);

// registerBranch (§2.3): a flat object whose values must all be strings (null reads as ""). Returns
// the key/value pairs (keys verbatim, last duplicate wins). Invalid JSON, a non-object or a
// non-string value -> kInvalidArgument.
Result<std::vector<std::pair<std::string, std::string>>> DecodeStringMap(std::string_view body);

// Saga custom_data (orders DAG) is parsed by core::ParseSagaLayout (core/saga.h).

// §2.4 record shapes. `options` is emitted as a JSON string, bin_data base64, times RFC 3339 UTC
// 'Z' with milliseconds; id/create_time/update_time/concurrent always present; other fields omitted
// when empty or zero. dtx extras: retry_count (transaction), attempts and last_error (branch) when
// non-zero.
std::string EncodeTransaction(const core::GlobalTrans& t);  // a JSON object
std::string EncodeBranch(const core::BranchRow& b);         // a JSON object
// {"transaction":{...}|null,"branches":[...]}, plus for an unfinished transaction with business
// keys "business_keys":{"keys":[...],"held":bool,"waiting_for":gid,"waiting_key":key} (the last
// two while it waits) when `keys` is non-null.
std::string EncodeQueryAnswer(const core::TransSnapshot* snapshot,
                              const core::KeyState* keys = nullptr);
// The "business_keys" object of a transaction whose custom_data lists keys (nullopt otherwise):
// {"keys":[...]} plus, given `state` (Engine::KeyStateOf), "held" and while it waits "waiting_for"
// and "waiting_key"; without `state`, a final transaction's adds "held":false,"released":true.
// GET query and the admin API (api/admin_routes.cc) both write it with this.
std::optional<boost::json::object> BusinessKeysJson(const core::GlobalTrans& g,
                                                    const core::KeyState* state);
// {"transactions":[...],"next_position":"..."}
std::string EncodeAllAnswer(const std::vector<core::GlobalTrans>& list,
                            std::string_view next_position);
// scanKV / queryKV: {"kv":[{"id","create_time","update_time","cat","k","v","version"},...]} plus
// "next_position" when `next_position` is non-null (scanKV).
std::string EncodeKvAnswer(const std::vector<store::KvRow>& rows, const std::string* next_position);

// The envelope of §2.1.
std::string SuccessBody();                          // {"dtm_result":"SUCCESS"}
std::string FailureBody(std::string_view message);  // {"dtm_result":"FAILURE","message":...}
std::string OngoingBody(std::string_view message);  // {"dtm_result":"ONGOING","message":...}
// {"message":...,"code":...} plus "gid"/"status" when non-empty (§5 #13).
std::string ErrorBody(std::string_view message, std::string_view code, std::string_view gid = {},
                      std::string_view status = {});

}  // namespace dtx::api
