// The msg state machine (PROTOCOL.md §1.9): a list of actions that must all eventually succeed.
// A prepared (two-phase) msg is checked back once timeout_to_fail has passed since its creation:
// SUCCESS submits it and the actions run in the same round, FAILURE fails it without touching a
// branch, ONGOING retries at I0, anything else (indeterminate answers included, §3.3) backs off.
// A submitted msg calls its actions in order, each after the previous one's SUCCESS, or all at
// once with options.concurrent; every non-SUCCESS answer is retried, so it never fails. The delay
// of custom_data is the engine's business (it schedules the first round), not this machine's.

#include <algorithm>
#include <boost/json.hpp>
#include <vector>

#include "core/json_keys.h"
#include "core/machine_internal.h"
#include "util/assert.h"

namespace dtx::core {
namespace {

class Msg {
 public:
  Msg(TransSnapshot& snap, Round& round, const Settings& settings, int64_t now_ms)
      : snap_(snap), round_(round), settings_(settings), now_ms_(now_ms), w_(snap, now_ms) {}

  Decision Run(const Event& ev) {
    if (ev.kind == Event::Kind::kStart) {
      StartRound();
    } else if (ev.branch_index == kCheckBackIndex) {
      OnCheckBack(ev);
    } else {
      OnResult(ev);
    }
    Advance();
    return EndDecision(snap_, round_, settings_, now_ms_, w_, calls_);
  }

 private:
  int64_t I0() const { return InitialIntervalMs(snap_.global.options, settings_); }
  BranchRow& row(size_t i) { return snap_.branches[i]; }
  Wakeup Next(CallClass c) const {
    return NextWakeup(c, snap_.global.next_cron_interval_ms, I0(), settings_, snap_.global.gid,
                      now_ms_);
  }

  void StartRound() {
    size_t n = snap_.branches.size();
    round_.in_flight.assign(n, 0);
    round_.parked.assign(n, 0);
    round_.in_flight_count = 0;
    round_.check_back_in_flight = false;
    round_.check_back_parked = false;
  }

  void OnCheckBack(const Event& ev) {
    switch (OnCheckBackResult(snap_, round_, w_, settings_, now_ms_, ev)) {
      case CheckBackDecision::kSubmit:
        w_.SetStatus(GlobalStatus::kSubmitted);
        w_.SetWakeup(Next(CallClass::kSuccess));
        return;
      case CheckBackDecision::kFail:
        w_.SetStatus(GlobalStatus::kFailed);  // no branch was called: nothing to undo
        return;
      case CheckBackDecision::kNone:
        return;
    }
  }

  void OnResult(const Event& ev) {
    size_t i = ev.branch_index;
    DTX_INVARIANT(i < snap_.branches.size() && round_.in_flight[i],
                  "result for a call not in flight");
    round_.in_flight[i] = 0;
    round_.in_flight_count -= 1;
    w_.RecordAttempt(i, ev.result, ev.answer, &ev);
    if (ev.result == CallClass::kSuccess) {
      if (row(i).status == BranchStatus::kPrepared) w_.SetBranchStatus(i, BranchStatus::kSucceed);
      w_.SetWakeup(Next(CallClass::kSuccess));
      return;
    }
    // FAILURE included: a submitted msg never fails. ONGOING keeps the interval, others back off.
    round_.parked[i] = 1;
    w_.SetWakeup(Next(ev.result));
  }

  void Advance() {
    switch (snap_.global.status) {
      case GlobalStatus::kPrepared:
        MaybeCheckBack(snap_, round_, w_, settings_, now_ms_, calls_);
        break;
      case GlobalStatus::kSubmitted:
        AdvanceActions();
        break;
      case GlobalStatus::kAborting:
        // Not a msg status (abort fails a prepared msg directly), but an operator may set it:
        // a msg has nothing to undo, so it ends as soon as no call is outstanding.
        if (round_.in_flight_count == 0) w_.SetStatus(GlobalStatus::kFailed);
        break;
      case GlobalStatus::kSucceed:
      case GlobalStatus::kFailed:
        break;
    }
  }

  // Submitted: sequential calls the first prepared action once nothing is outstanding and stops at
  // a non-SUCCESS answer; concurrent calls every prepared action not yet called this round.
  void AdvanceActions() {
    const bool concurrent = snap_.global.options.concurrent;
    bool pending = false;
    for (size_t i = 0; i < snap_.branches.size(); ++i) {
      if (row(i).status != BranchStatus::kPrepared) continue;
      if (round_.in_flight[i] || round_.parked[i]) {
        pending = true;
        if (concurrent) continue;
        return;
      }
      if (!concurrent && round_.in_flight_count > 0) return;
      if (row(i).url.empty()) {  // empty URL = SUCCESS without a call
        w_.SetBranchStatus(i, BranchStatus::kSucceed);
        continue;
      }
      pending = true;
      round_.in_flight[i] = 1;
      round_.in_flight_count += 1;
      calls_.push_back(i);
      if (!concurrent) return;
    }
    if (!pending && round_.in_flight_count == 0) w_.SetStatus(GlobalStatus::kSucceed);
  }

  TransSnapshot& snap_;
  Round& round_;
  const Settings& settings_;
  int64_t now_ms_;
  Writer w_;
  std::vector<size_t> calls_;
};

}  // namespace

Decision MsgStep(TransSnapshot& snap, Round& round, const Event& event, const Settings& settings,
                 int64_t now_ms) {
  return Msg(snap, round, settings, now_ms).Run(event);
}

Result<int64_t> ParseMsgDelayS(std::string_view custom_data) {
  if (custom_data.empty()) return int64_t{0};
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(custom_data, ec);
  if (ec || !(v.is_object() || v.is_null())) {
    return Status::InvalidArgument("custom_data: must be a JSON object such as {\"delay\":10}");
  }
  if (v.is_null()) return int64_t{0};
  // Capped at 100 years (like the other durations), so that "* 1000" and "now + delay" fit.
  constexpr int64_t kMaxDelayS = int64_t{100} * 365 * 24 * 3600;
  int64_t delay_s = 0;
  Status bad = Status::Ok();
  ForEachGoField(v.get_object(), "delay", [&](const boost::json::value& d) {
    if (d.is_uint64()) {
      delay_s = kMaxDelayS;  // above int64: Go's uint64 takes it
    } else if (d.is_int64() && d.get_int64() >= 0) {
      delay_s = std::min(d.get_int64(), kMaxDelayS);
    } else {
      bad = Status::InvalidArgument("custom_data: delay must be a non-negative integer (seconds)");
    }
  });
  if (!bad.ok()) return bad;
  return delay_s;
}

}  // namespace dtx::core
