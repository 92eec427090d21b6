#include "dtx/saga.h"

#include <boost/json.hpp>
#include <utility>

#include "sdk/business_keys_internal.h"

namespace dtx {

namespace json = boost::json;

Saga::Saga(Client& client, std::string gid) : client_(client), gid_(std::move(gid)) {}

Saga& Saga::Add(std::string action_url, std::string compensate_url, std::string payload) {
  steps_.push_back({std::move(action_url), std::move(compensate_url), std::move(payload)});
  return *this;
}

Saga& Saga::EnableConcurrent() {
  concurrent_ = true;
  return *this;
}

Saga& Saga::AddBranchOrder(int step, std::vector<int> prerequisite_steps) {
  concurrent_ = true;
  orders_[step] = std::move(prerequisite_steps);
  return *this;
}

Saga& Saga::SetWaitResult(bool wait_result) {
  wait_result_ = wait_result;
  return *this;
}
Saga& Saga::SetTimeoutToFail(int64_t seconds) {
  timeout_to_fail_s_ = seconds;
  return *this;
}
Saga& Saga::SetRetryInterval(int64_t seconds) {
  retry_interval_s_ = seconds;
  return *this;
}
Saga& Saga::SetRequestTimeout(int64_t seconds) {
  request_timeout_s_ = seconds;
  return *this;
}
Saga& Saga::SetRetryLimit(int64_t limit) {
  retry_limit_ = limit;
  return *this;
}
Saga& Saga::SetBranchHeaders(std::map<std::string, std::string> headers) {
  branch_headers_ = std::move(headers);
  return *this;
}

Saga& Saga::SetBusinessKeys(std::vector<std::string> keys, OnBusy on_busy) {
  business_keys_ = std::move(keys);
  on_busy_ = on_busy;
  return *this;
}

namespace {

// custom_data of a concurrent saga (§1.3): {"concurrent":true,"orders":{"2":[0,1]}}.
json::object ConcurrentCustomData(const std::map<int, std::vector<int>>& orders) {
  json::object by_step;
  for (const auto& [step, prerequisites] : orders) {
    json::array pre;
    for (int p : prerequisites) pre.push_back(p);
    by_step[std::to_string(step)] = std::move(pre);
  }
  return json::object{{"concurrent", true}, {"orders", std::move(by_step)}};
}

}  // namespace

std::string Saga::BuildBody() const {
  // Key order follows what dtmcli sends (PROTOCOL.md §2.2); the server does not depend on it.
  json::object body;
  body["gid"] = gid_;
  body["trans_type"] = "saga";
  json::array steps;
  json::array payloads;
  for (const Step& s : steps_) {
    steps.push_back(json::object{{"action", s.action}, {"compensate", s.compensate}});
    payloads.push_back(json::string(s.payload));
  }
  body["steps"] = std::move(steps);
  body["payloads"] = std::move(payloads);
  if (concurrent_) {
    // custom_data is a JSON *string* (§1.3).
    body["custom_data"] = json::serialize(ConcurrentCustomData(orders_));
  }
  if (wait_result_) body["wait_result"] = true;
  if (timeout_to_fail_s_) body["timeout_to_fail"] = *timeout_to_fail_s_;
  if (request_timeout_s_) body["request_timeout"] = *request_timeout_s_;
  if (retry_interval_s_) body["retry_interval"] = *retry_interval_s_;
  if (retry_limit_) body["retry_limit"] = *retry_limit_;
  if (!branch_headers_.empty()) {
    json::object headers;
    for (const auto& [k, v] : branch_headers_) headers[k] = v;
    body["branch_headers"] = std::move(headers);
  }
  // A dtx extension (docs/saga.md "Business keys"); the coordinator merges them into custom_data.
  sdk_internal::AddBusinessKeys(body, business_keys_, on_busy_);
  return json::serialize(body);
}

Status Saga::Validate() const {
  if (steps_.empty()) return Status::InvalidArgument("saga: no step added");
  const int n = static_cast<int>(steps_.size());
  for (const auto& [step, prerequisites] : orders_) {
    if (step < 0 || step >= n) {
      return Status::InvalidArgument("saga: branch order for step " + std::to_string(step) +
                                     ", but steps are 0.." + std::to_string(n - 1));
    }
    for (int p : prerequisites) {
      if (p < 0 || p >= n || p == step) {
        return Status::InvalidArgument("saga: step " + std::to_string(step) +
                                       " has an invalid prerequisite " + std::to_string(p));
      }
    }
  }
  // A cycle would never start (DTM hangs; dtx answers 400). Kahn's algorithm over the orders DAG.
  std::vector<int> missing(static_cast<size_t>(n), 0);
  for (const auto& [step, prerequisites] : orders_) {
    missing[static_cast<size_t>(step)] = static_cast<int>(prerequisites.size());
  }
  std::vector<int> ready;
  for (int i = 0; i < n; ++i) {
    if (missing[static_cast<size_t>(i)] == 0) ready.push_back(i);
  }
  int started = 0;
  while (!ready.empty()) {
    int done = ready.back();
    ready.pop_back();
    ++started;
    for (const auto& [step, prerequisites] : orders_) {
      for (int p : prerequisites) {
        if (p == done && --missing[static_cast<size_t>(step)] == 0) ready.push_back(step);
      }
    }
  }
  if (started != n) return Status::InvalidArgument("saga: the branch orders form a cycle");
  for (const Step& s : steps_) {
    if (s.action.empty()) return Status::InvalidArgument("saga: a step has an empty action URL");
  }
  // Negative options would be rejected by the server; say so before sending.
  for (const auto& [name, v] :
       {std::pair{"timeout_to_fail", timeout_to_fail_s_},
        std::pair{"request_timeout", request_timeout_s_},
        std::pair{"retry_interval", retry_interval_s_}, std::pair{"retry_limit", retry_limit_}}) {
    if (v && *v < 0) return Status::InvalidArgument(std::string("saga: negative ") + name);
  }
  const json::object custom_data = concurrent_ ? ConcurrentCustomData(orders_) : json::object();
  if (Status s = sdk_internal::CheckBusinessKeysWith(business_keys_, on_busy_, custom_data);
      !s.ok()) {
    return Status::InvalidArgument("saga: " + s.message());
  }
  return Status::Ok();
}

Status Saga::Submit() {
  if (Status s = Validate(); !s.ok()) return s;
  if (gid_.empty()) {
    auto gid = client_.NewGid();
    if (!gid.ok()) return gid.status();
    gid_ = std::move(*gid);
  }
  return sdk_internal::SubmitMaybeWaiting(client_, BuildBody(),
                                          wait_result_ && !business_keys_.empty());
}

}  // namespace dtx
