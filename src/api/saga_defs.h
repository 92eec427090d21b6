// Saga definitions (issue 15 item 1, seed 000 §2.2's "BPM configuration"): a saga's flow registered
// by name and version, then submitted by name with only its payloads. The definition's steps are
// copied into the saga's branch rows at submit, so a later version never changes a running saga;
// the saga records the version it started with in custom_data ({"saga":{"name","version"}}).
//
//   {"services": {"payment": "http://pay:8081/api"},
//    "steps": [{"name": "charge", "action": "{payment}/charge", "compensate": "{payment}/refund"},
//              {"name": "ship", "action": "http://ship:8082/api/ship"}],
//    "orders": {"ship": ["charge"]},                      (optional DAG: step -> steps it waits
//    for) "concurrent": false,                                  (optional; true when orders are
//    given) "options": {"timeout_to_fail": 60, "retry_interval": 10, "retry_limit": 3,
//                "request_timeout": 5}}                   (optional)
//
// Pure functions; thread-safe. Every problem is kInvalidArgument naming it.
#pragma once

#include <boost/json/value.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "api/codec.h"
#include "util/status.h"

namespace dtx::api {

inline constexpr size_t kMaxSagaDefinitionBytes = 64 * 1024;  // a PUT body
inline constexpr size_t kMaxSagaNameBytes = 64;               // [A-Za-z0-9_.-]
inline constexpr size_t kMaxSagaVersionsKept = 32;            // older versions are dropped
inline constexpr size_t kMaxSagaServices = 64;

struct SagaDefStep {
  std::string name;
  std::string action;      // URL with {service} resolved
  std::string compensate;  // may be empty: no compensation (counts as done)
};

struct SagaDefinition {
  std::vector<SagaDefStep> steps;
  bool concurrent = false;
  std::vector<std::vector<size_t>> predecessors;  // per step, from orders (indices into steps)
  core::TransOptions options;                     // timeout_to_fail, retry_interval, ...
  bool has_timeout_to_fail = false, has_retry_interval = false, has_retry_limit = false,
       has_request_timeout = false;
};

// kInvalidArgument unless `name` is 1..64 bytes of [A-Za-z0-9_.-].
Status ValidateSagaName(std::string_view name);

// Parses and validates a definition (JSON text): unknown fields, an empty or oversized step list,
// duplicate or bad step names, a {service} not in services, a URL that is not http://, orders
// naming an unknown step, a step waiting for itself, a cycle, options of the wrong type or above
// their limits (retry_limit above `max_retry_limit`).
Result<SagaDefinition> ParseSagaDefinition(std::string_view json, int64_t max_retry_limit);

// The submit request a saga definition makes from a submit-by-name body
//   {"gid" (optional: one is made), "payloads": {"step": "text", ...} | "input": {...},
//    "wait_result": bool, "business_keys": [...], "on_busy": "wait"|"reject"}
// `gid` is the one to use when the body has none. The request's custom_data carries the layout
// (concurrent, orders), {"saga":{"name","version"}} and the business keys (ApplyBusinessKeys).
Result<TransRequest> BuildSubmitByName(const SagaDefinition& def, std::string_view name,
                                       int64_t version, std::string_view body,
                                       std::string generated_gid);

}  // namespace dtx::api
