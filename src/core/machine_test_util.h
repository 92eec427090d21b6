// Shared by the state-machine unit tests (saga_test.cc, tcc_test.cc, msg_test.cc): a tiny engine
// stand-in driven on explicit time. It starts rounds, answers calls with given classes, applies
// every Decision.update to a separate "stored" copy (checking the compare-and-set status), and
// checks after each decision that the update alone reproduces the machine's view of the
// transaction. Test-only; header-only.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/machine.h"
#include "core/model.h"
#include "core/retry_policy.h"

namespace dtx::core::test_util {

inline constexpr int64_t kT0 = 1'700'000'000'000;  // creation time of every transaction built
inline constexpr int64_t kI0 = 10'000;             // I0 with default options and settings
inline constexpr int64_t kAnswerDelayMs = 10;      // time each call takes in the harness

inline const std::string kP = "prepared";
inline const std::string kS = "succeed";
using Statuses = std::vector<std::string>;
using Calls = std::vector<size_t>;

// "01", "02", ... for k = 0, 1, ...
inline std::string BranchId(size_t k) {
  std::string id = std::to_string(k + 1);
  return id.size() < 2 ? "0" + id : id;
}

inline std::string DefaultAnswer(CallClass c) {
  switch (c) {
    case CallClass::kSuccess:
      return R"({"dtm_result":"SUCCESS"})";
    case CallClass::kFailure:
      return R"({"dtm_result":"FAILURE"})";
    case CallClass::kOngoing:
      return R"({"dtm_result":"ONGOING"})";
    case CallClass::kError:
      return "HTTP 500: internal error";
  }
  return "";
}

// Expects `u` to schedule the next wake-up `interval_ms` after `now_ms`, jittered by at most ±10 %.
inline void ExpectWakeup(const TransUpdate& u, int64_t now_ms, int64_t interval_ms) {
  ASSERT_TRUE(u.next_cron_interval_ms.has_value());
  ASSERT_TRUE(u.next_cron_time_ms.has_value());
  EXPECT_EQ(*u.next_cron_interval_ms, interval_ms);
  EXPECT_GE(*u.next_cron_time_ms, now_ms + interval_ms * 9 / 10);
  EXPECT_LE(*u.next_cron_time_ms, now_ms + interval_ms * 11 / 10);
}

// The engine stand-in. Not thread-safe; one per test. `Derived` (CRTP) supplies the mode's checks
// of each call the machine makes:
//   bool CheckCall(size_t branch, GlobalStatus status_before_step);
// which returns false to leave the call out of pending() and call_log().
template <class Derived>
class MachineRun {
 public:
  explicit MachineRun(TransSnapshot snap, Settings settings = {}, bool compare_retry_count = false)
      : snap_(snap),
        stored_(std::move(snap)),
        settings_(settings),
        compare_retry_count_(compare_retry_count) {}

  int64_t now = kT0;

  Decision Start() {
    EXPECT_TRUE(pending_.empty()) << "a round is still running";
    round_ = Round{};
    return Drive(Event{});
  }

  // Answers the outstanding call to `branch` after kAnswerDelayMs.
  Decision Answer(size_t branch, CallClass c, std::optional<std::string> answer = std::nullopt) {
    auto it = std::find(pending_.begin(), pending_.end(), branch);
    if (it == pending_.end()) {
      ADD_FAILURE() << "branch " << branch << " was not called";
      return Decision{};
    }
    pending_.erase(it);
    now += kAnswerDelayMs;
    Event ev;
    ev.kind = Event::Kind::kResult;
    ev.branch_index = branch;
    ev.result = c;
    ev.answer = answer ? *answer : DefaultAnswer(c);
    return Drive(ev);
  }

  // Answers outstanding calls in call order with `answer_for(branch)` until the round is over.
  void Finish(const std::function<CallClass(size_t)>& answer_for) {
    for (int guard = 0; !pending_.empty(); ++guard) {
      ASSERT_LT(guard, 1000) << "round does not end";
      size_t b = pending_.front();
      Answer(b, answer_for(b));
    }
  }
  void FinishAll(CallClass c) {
    Finish([c](size_t) { return c; });
  }

  // A new round on what the store holds (recovery after a restart, or a re-submit), at `now`.
  Decision Restart() {
    EXPECT_TRUE(pending_.empty());
    snap_ = stored_;
    return Start();
  }
  // Recovery: a new round at the stored wake-up time.
  Decision StartDueRound() {
    now = std::max(now, stored_.global.next_cron_time_ms);
    return Restart();
  }

  // An external change (a submit, an abort request, forceStop) that the engine reloaded while
  // calls were in flight.
  void SetStatusExternally(GlobalStatus s) {
    snap_.global.status = s;
    stored_.global.status = s;
  }

  Statuses BranchStatuses() const {
    Statuses out;
    for (const auto& b : stored_.branches) out.emplace_back(ToString(b.status));
    return out;
  }
  GlobalStatus status() const { return stored_.global.status; }
  const GlobalTrans& global() const { return stored_.global; }
  const BranchRow& row(size_t i) const { return stored_.branches[i]; }
  const Calls& pending() const { return pending_; }
  const Calls& call_log() const { return call_log_; }
  size_t max_in_flight() const { return max_in_flight_; }
  size_t updates() const { return updates_; }

 protected:
  // The machine's copy of the transaction (what CheckCall judges a call by).
  const TransSnapshot& machine() const { return snap_; }
  // Expects no call to `branch` to be in flight.
  void ExpectNotInFlight(size_t branch) const {
    EXPECT_EQ(std::count(pending_.begin(), pending_.end(), branch), 0)
        << "branch " << branch << " called while its call is in flight";
  }

 private:
  Decision Drive(const Event& ev) {
    const GlobalStatus before = snap_.global.status;
    Decision d = Step(snap_, round_, ev, settings_, now);
    if (d.update) Apply(*d.update);
    for (size_t i : d.calls) {
      if (!static_cast<Derived*>(this)->CheckCall(i, before)) continue;
      pending_.push_back(i);
      call_log_.push_back(i);
    }
    max_in_flight_ = std::max(max_in_flight_, pending_.size());
    EXPECT_EQ(d.round_over, pending_.empty());
    if (d.round_over && !IsFinal(stored_.global.status)) {
      EXPECT_GT(stored_.global.next_cron_time_ms, now)
          << "a non-final round must leave a wake-up in the future";
    }
    ExpectStoredMatchesMachine();
    return d;
  }

  // What the store does with a TransUpdate.
  void Apply(const TransUpdate& u) {
    ++updates_;
    EXPECT_EQ(u.gid, stored_.global.gid);
    EXPECT_EQ(u.expected_status, stored_.global.status) << "compare-and-set on the wrong status";
    EXPECT_EQ(u.update_time_ms, now);
    GlobalTrans& g = stored_.global;
    if (u.new_status) g.status = *u.new_status;
    if (u.rollback_reason) g.rollback_reason = *u.rollback_reason;
    if (u.custom_data) g.custom_data = *u.custom_data;
    if (u.options) g.options = *u.options;
    if (u.next_cron_time_ms) g.next_cron_time_ms = *u.next_cron_time_ms;
    if (u.next_cron_interval_ms) g.next_cron_interval_ms = *u.next_cron_interval_ms;
    if (u.retry_count) g.retry_count = *u.retry_count;
    if (u.finish_time_ms) g.finish_time_ms = *u.finish_time_ms;
    if (u.rollback_time_ms) g.rollback_time_ms = *u.rollback_time_ms;
    g.update_time_ms = u.update_time_ms;
    for (const auto& bu : u.branches) {
      auto it = std::find_if(stored_.branches.begin(), stored_.branches.end(), [&](const auto& r) {
        return r.branch_id == bu.branch_id && r.op == bu.op;
      });
      EXPECT_NE(it, stored_.branches.end()) << bu.branch_id << "/" << bu.op;
      if (it == stored_.branches.end()) continue;
      if (bu.status) it->status = *bu.status;
      if (bu.attempts) it->attempts = *bu.attempts;
      if (bu.last_error) it->last_error = *bu.last_error;
      if (bu.finish_time_ms) it->finish_time_ms = *bu.finish_time_ms;
      it->update_time_ms = u.update_time_ms;
    }
  }

  void ExpectStoredMatchesMachine() {
    const GlobalTrans& a = stored_.global;
    const GlobalTrans& b = snap_.global;
    EXPECT_EQ(a.status, b.status);
    EXPECT_EQ(a.rollback_reason, b.rollback_reason);
    EXPECT_EQ(a.next_cron_time_ms, b.next_cron_time_ms);
    EXPECT_EQ(a.next_cron_interval_ms, b.next_cron_interval_ms);
    if (compare_retry_count_) {
      EXPECT_EQ(a.retry_count, b.retry_count);
    }
    EXPECT_EQ(a.finish_time_ms, b.finish_time_ms);
    EXPECT_EQ(a.rollback_time_ms, b.rollback_time_ms);
    ASSERT_EQ(stored_.branches.size(), snap_.branches.size());
    for (size_t i = 0; i < snap_.branches.size(); ++i) {
      EXPECT_EQ(stored_.branches[i].status, snap_.branches[i].status) << "branch " << i;
      EXPECT_EQ(stored_.branches[i].attempts, snap_.branches[i].attempts) << "branch " << i;
      EXPECT_EQ(stored_.branches[i].last_error, snap_.branches[i].last_error) << "branch " << i;
      EXPECT_EQ(stored_.branches[i].finish_time_ms, snap_.branches[i].finish_time_ms)
          << "branch " << i;
    }
  }

  TransSnapshot snap_;    // the machine's copy
  TransSnapshot stored_;  // what the updates made of the stored row
  Settings settings_;
  bool compare_retry_count_;
  Round round_;
  Calls pending_;
  Calls call_log_;
  size_t max_in_flight_ = 0;
  size_t updates_ = 0;
};

}  // namespace dtx::core::test_util
