// The saga state machine (PROTOCOL.md §1.6): forward phase in order or as a DAG, compensation of
// every step that may have run in reverse (DAG) order, timeouts, retry_limit.

#include <fmt/format.h>

#include <algorithm>
#include <boost/json.hpp>
#include <string>

#include "core/json_keys.h"
#include "core/machine_internal.h"
#include "util/assert.h"
#include "util/mutation.h"

namespace dtx::core {
namespace {

namespace json = boost::json;

constexpr size_t kNoIndex = static_cast<size_t>(-1);

// Step k (0-based) has rows 2k (compensate) and 2k+1 (action).
size_t CompIndex(size_t step) { return 2 * step; }
size_t ActionIndex(size_t step) { return 2 * step + 1; }

class Saga {
 public:
  Saga(TransSnapshot& snap, Round& round, const Settings& settings, int64_t now_ms)
      : snap_(snap), round_(round), settings_(settings), now_ms_(now_ms), w_(snap, now_ms) {}

  Decision Run(const Event& ev) {
    if (ev.kind == Event::Kind::kStart) {
      StartRound();
    } else {
      OnResult(ev);
    }
    Advance();
    // A non-final transaction always leaves a round with a wake-up in the future.
    return EndDecision(snap_, round_, settings_, now_ms_, w_, calls_);
  }

 private:
  size_t steps() const { return snap_.branches.size() / 2; }
  int64_t I0() const { return InitialIntervalMs(snap_.global.options, settings_); }
  BranchRow& row(size_t i) { return snap_.branches[i]; }
  bool ActionSucceeded(size_t step) {
    return row(ActionIndex(step)).status == BranchStatus::kSucceed;
  }

  void StartRound() {
    size_t n = snap_.branches.size();
    round_.in_flight.assign(n, 0);
    round_.parked.assign(n, 0);
    round_.in_flight_count = 0;
    auto layout = ParseSagaLayout(snap_.global.custom_data, steps());
    // Validated before the transaction was stored; a stored layout that no longer parses would be a
    // bug.
    DTX_INVARIANT(layout.ok(), "stored saga custom_data does not parse");
    round_.predecessors = std::move(layout->predecessors);
    round_.concurrent = layout->concurrent;
  }

  void OnResult(const Event& ev) {
    size_t i = ev.branch_index;
    DTX_INVARIANT(i < snap_.branches.size() && round_.in_flight[i],
                  "result for a call not in flight");
    round_.in_flight[i] = 0;
    round_.in_flight_count -= 1;
    w_.RecordAttempt(i, ev.result, ev.answer, &ev);
    const bool is_action = (i % 2) == 1;
    if (ev.result == CallClass::kSuccess) {
      if (row(i).status == BranchStatus::kPrepared) w_.SetBranchStatus(i, BranchStatus::kSucceed);
      w_.SetWakeup(NextWakeup(CallClass::kSuccess, snap_.global.next_cron_interval_ms, I0(),
                              settings_, snap_.global.gid, now_ms_));
      return;
    }
    if (is_action && ev.result == CallClass::kFailure) {
      if (row(i).status == BranchStatus::kPrepared) w_.SetBranchStatus(i, BranchStatus::kFailed);
      if (snap_.global.status == GlobalStatus::kSubmitted) {
        BeginAbort(fmt::format("url:{} return failed: {} FAILURE", row(i).url, ev.answer));
      }
      return;
    }
    // ONGOING or ERROR (or FAILURE of a compensation, which must eventually succeed).
    if (is_action && snap_.global.status == GlobalStatus::kSubmitted &&
        snap_.global.options.retry_limit > 0) {
      if (SagaRetriesAtOnce(snap_.global, i, ev.result)) {
        w_.SetRetryCount(snap_.global.retry_count + 1);
        return;  // not parked: Advance calls it again at once
      }
      BeginAbort(fmt::format("RetryCount is greater than RetryLimit, RetryLimit: {}",
                             snap_.global.options.retry_limit));
      round_.parked[i] = 1;
      return;
    }
    round_.parked[i] = 1;
    w_.SetWakeup(NextWakeup(ev.result, snap_.global.next_cron_interval_ms, I0(), settings_,
                            snap_.global.gid, now_ms_));
  }

  void BeginAbort(std::string reason) {
    w_.SetStatus(GlobalStatus::kAborting);
    if (snap_.global.rollback_reason.empty()) w_.SetRollbackReason(std::move(reason));
  }

  bool PredecessorsSucceeded(size_t step) {
    for (size_t p : round_.predecessors[step]) {
      if (!ActionSucceeded(p)) return false;
    }
    return true;
  }

  void Call(size_t i) {
    if (row(i).url.empty()) {  // empty URL = SUCCESS without a call
      w_.SetBranchStatus(i, BranchStatus::kSucceed);
      progressed_ = true;
      return;
    }
    round_.in_flight[i] = 1;
    round_.in_flight_count += 1;
    calls_.push_back(i);
  }

  void Advance() {
    // Loop to a fixpoint: empty URLs complete without a call and may unblock further steps.
    do {
      progressed_ = false;
      if (snap_.global.status == GlobalStatus::kSubmitted) AdvanceForward();
      if (snap_.global.status == GlobalStatus::kAborting) AdvanceCompensation();
    } while (progressed_);
  }

  void AdvanceForward() {
    // Success is checked before the timeout, as DTM does: a saga whose actions all succeeded is not
    // rolled back because its last answer arrived late.
    bool done = round_.in_flight_count == 0;
    for (size_t k = 0; done && k < steps(); ++k) done = ActionSucceeded(k);
    int64_t timeout_ms = TimeoutToFailMs(snap_.global, settings_);
    if (!done && timeout_ms > 0 && now_ms_ - snap_.global.create_time_ms >= timeout_ms) {
      BeginAbort(fmt::format("Timeout after {} seconds", timeout_ms / 1000));
      return;
    }
    bool all_succeeded = true;
    for (size_t k = 0; k < steps(); ++k) {
      size_t a = ActionIndex(k);
      if (row(a).status == BranchStatus::kSucceed) continue;
      all_succeeded = false;
      if (row(a).status != BranchStatus::kPrepared) continue;
      if (round_.in_flight[a] || round_.parked[a]) continue;
      if (!PredecessorsSucceeded(k)) continue;
      Call(a);
    }
    if (all_succeeded && round_.in_flight_count == 0) {
      w_.SetStatus(GlobalStatus::kSucceed);
    }
  }

  // comp(k) is required if action k succeeded or failed, or may have run: all its predecessors had
  // succeeded (so it was started, or was about to be).
  bool CompRequired(size_t step) {
    BranchStatus a = row(ActionIndex(step)).status;
    if (a != BranchStatus::kPrepared) return true;
    return PredecessorsSucceeded(step);
  }

  bool CompDoneOrNotRequired(size_t step) {
    return row(CompIndex(step)).status == BranchStatus::kSucceed || !CompRequired(step);
  }

  // A step whose compensation is not required yet, but will be if an action call of one of its
  // predecessors, still in flight, succeeds (found by dtx-sim, seeds 22 and 736).
  bool MayBecomeRequired(size_t step) {
    if (CompRequired(step)) return false;
    bool pending = false;
    for (size_t p : round_.predecessors[step]) {
      if (ActionSucceeded(p)) continue;
      if (!round_.in_flight[ActionIndex(p)]) return false;  // cannot succeed any more
      pending = true;
    }
    return pending;
  }

  // comp(k) may start once every step that depends on k has been compensated (or needs none, and
  // cannot come to need one).
  bool SuccessorsCompensated(size_t step) {
    for (size_t j = 0; j < steps(); ++j) {
      if (j == step) continue;
      const auto& preds = round_.predecessors[j];
      if (std::find(preds.begin(), preds.end(), step) == preds.end()) continue;
      if (!CompDoneOrNotRequired(j) || MayBecomeRequired(j)) return false;
    }
    return true;
  }

  void AdvanceCompensation() {
    bool all_done = true;
    for (size_t n = 0; n < steps(); ++n) {
      // Reverse order; the simulator's self-test variant runs forward, ignoring dependents.
      const size_t k = DTX_MUTANT(kForwardCompensation) ? n : steps() - 1 - n;
      if (CompDoneOrNotRequired(k)) continue;
      all_done = false;
      size_t c = CompIndex(k);
      size_t a = ActionIndex(k);
      // Never compensate while the step's own action call is in flight (§1.6, §5 #16).
      if (round_.in_flight[c] || round_.parked[c] || round_.in_flight[a]) continue;
      if (!SuccessorsCompensated(k) && !DTX_MUTANT(kForwardCompensation)) continue;
      Call(c);
    }
    if (all_done && round_.in_flight_count == 0) {
      w_.SetStatus(GlobalStatus::kFailed);
    }
  }

  TransSnapshot& snap_;
  Round& round_;
  const Settings& settings_;
  int64_t now_ms_;
  Writer w_;
  std::vector<size_t> calls_;
  bool progressed_ = false;
};

bool HasCycle(const std::vector<std::vector<size_t>>& preds) {
  // Kahn's algorithm.
  size_t n = preds.size();
  std::vector<size_t> indegree(n, 0);
  std::vector<std::vector<size_t>> succ(n);
  for (size_t k = 0; k < n; ++k) {
    for (size_t p : preds[k]) {
      succ[p].push_back(k);
      indegree[k] += 1;
    }
  }
  std::vector<size_t> ready;
  for (size_t k = 0; k < n; ++k) {
    if (indegree[k] == 0) ready.push_back(k);
  }
  size_t seen = 0;
  while (!ready.empty()) {
    size_t k = ready.back();
    ready.pop_back();
    ++seen;
    for (size_t s : succ[k]) {
      if (--indegree[s] == 0) ready.push_back(s);
    }
  }
  return seen != n;
}

// One orders object {"2":[0,1]} merged into `preds` (a key given again replaces its entry).
Status MergeOrders(const json::value& o, size_t step_count,
                   std::vector<std::vector<size_t>>& predecessors) {
  if (!o.is_object()) return Status::InvalidArgument("custom_data: orders must be an object");
  for (const auto& kv : o.get_object()) {
    std::string key(kv.key());
    size_t pos = 0;
    long long k = -1;
    try {
      k = std::stoll(key, &pos);
    } catch (...) {
      pos = 0;
    }
    if (pos != key.size() || key.empty() || k < 0 || static_cast<size_t>(k) >= step_count) {
      return Status::InvalidArgument(fmt::format(
          "custom_data: orders key '{}' is not a step index in [0, {})", key, step_count));
    }
    if (!kv.value().is_array()) {
      return Status::InvalidArgument("custom_data: orders values must be arrays of indices");
    }
    auto& preds = predecessors[static_cast<size_t>(k)];
    preds.clear();
    for (const auto& e : kv.value().get_array()) {
      if (!e.is_int64() || e.get_int64() < 0 || static_cast<size_t>(e.get_int64()) >= step_count) {
        return Status::InvalidArgument(
            fmt::format("custom_data: orders[{}] holds a value that is not a step index in [0, {})",
                        key, step_count));
      }
      auto p = static_cast<size_t>(e.get_int64());
      if (p == static_cast<size_t>(k)) {
        return Status::InvalidArgument(
            fmt::format("custom_data: orders: step {} depends on itself", key));
      }
      if (std::find(preds.begin(), preds.end(), p) == preds.end()) preds.push_back(p);
    }
  }
  return Status::Ok();
}

}  // namespace

Result<SagaLayout> ParseSagaLayout(std::string_view custom_data, size_t step_count) {
  SagaLayout layout;
  layout.predecessors.assign(step_count, {});
  bool has_orders = false;
  if (!custom_data.empty()) {
    boost::system::error_code ec;
    json::value v = json::parse(custom_data, ec);
    if (ec) return Status::InvalidArgument("custom_data: invalid JSON: " + ec.message());
    if (v.is_null()) v = json::object();
    if (!v.is_object()) return Status::InvalidArgument("custom_data: must be a JSON object");
    const json::object& obj = v.get_object();
    // Go's rule (core/json_keys.h): every key that selects a field is applied in document order,
    // so each must have the right type; the last one wins, and repeated orders objects merge.
    Status bad = Status::Ok();
    ForEachGoField(obj, "concurrent", [&](const json::value& c) {
      if (!c.is_bool()) {
        bad = Status::InvalidArgument("custom_data: concurrent must be a boolean");
      } else {
        layout.concurrent = c.get_bool();
      }
    });
    if (!bad.ok()) return bad;
    ForEachGoField(obj, "orders", [&](const json::value& o) {
      if (bad.ok()) bad = MergeOrders(o, step_count, layout.predecessors);
      has_orders = true;
    });
    if (!bad.ok()) return bad;
  }
  if (!layout.concurrent) {
    // Sequential: each step waits for the previous one; orders are irrelevant.
    for (size_t k = 0; k < step_count; ++k) {
      layout.predecessors[k].clear();
      if (k > 0) layout.predecessors[k].push_back(k - 1);
    }
  } else if (has_orders && HasCycle(layout.predecessors)) {
    return Status::InvalidArgument("custom_data: orders form a cycle");
  }
  return layout;
}

bool SagaRetriesAtOnce(const GlobalTrans& global, size_t index, CallClass c) {
  return global.trans_type == TransType::kSaga && index % 2 == 1 &&
         (c == CallClass::kOngoing || c == CallClass::kError) &&
         global.status == GlobalStatus::kSubmitted && global.options.retry_limit > 0 &&
         global.retry_count < global.options.retry_limit;
}

bool IsWellFormedSaga(const TransSnapshot& snap) {
  if (snap.branches.size() % 2 != 0) return false;
  for (size_t k = 0; k < snap.branches.size() / 2; ++k) {
    std::string id = fmt::format("{:02d}", k + 1);
    const BranchRow& c = snap.branches[CompIndex(k)];
    const BranchRow& a = snap.branches[ActionIndex(k)];
    if (c.op != "compensate" || a.op != "action" || c.branch_id != id || a.branch_id != id) {
      return false;
    }
  }
  return true;
}

Decision SagaStep(TransSnapshot& snap, Round& round, const Event& event, const Settings& settings,
                  int64_t now_ms) {
  return Saga(snap, round, settings, now_ms).Run(event);
}

}  // namespace dtx::core
