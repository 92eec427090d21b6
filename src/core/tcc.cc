// The tcc/xa state machine (PROTOCOL.md §1.7, §1.8): the second phase over the rows that
// registerBranch created in pairs (tcc: cancel, confirm; xa: rollback, commit). A prepared
// transaction waits for submit or abort until timeout_to_fail, then aborts itself. Confirms
// (commits) run when submitted, cancels (rollbacks) when aborting: tcc in reverse registration
// order, xa in registration order, one call at a time; the first non-SUCCESS answer ends the round.
// Every second-phase call must eventually succeed, so FAILURE is retried like an error (dtm
// #332, #545) and never changes the direction.

#include <fmt/format.h>

#include <string_view>
#include <vector>

#include "core/machine_internal.h"
#include "util/assert.h"

namespace dtx::core {
namespace {

class Tcc {
 public:
  Tcc(TransSnapshot& snap, Round& round, const Settings& settings, int64_t now_ms)
      : snap_(snap), round_(round), settings_(settings), now_ms_(now_ms), w_(snap, now_ms) {}

  Decision Run(const Event& ev) {
    if (ev.kind == Event::Kind::kStart) {
      StartRound();
    } else {
      OnResult(ev);
    }
    Advance();
    return EndDecision(snap_, round_, settings_, now_ms_, w_, calls_);
  }

 private:
  bool xa() const { return snap_.global.trans_type == TransType::kXa; }
  std::string_view ForwardOp() const { return xa() ? "commit" : "confirm"; }
  std::string_view BackwardOp() const { return xa() ? "rollback" : "cancel"; }
  int64_t I0() const { return InitialIntervalMs(snap_.global.options, settings_); }
  BranchRow& row(size_t i) { return snap_.branches[i]; }

  void StartRound() {
    size_t n = snap_.branches.size();
    round_.in_flight.assign(n, 0);
    round_.parked.assign(n, 0);
    round_.in_flight_count = 0;
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
      w_.SetWakeup(NextWakeup(CallClass::kSuccess, snap_.global.next_cron_interval_ms, I0(),
                              settings_, snap_.global.gid, now_ms_));
      return;
    }
    // ONGOING keeps the interval; FAILURE and ERROR back off. The row stays prepared.
    round_.parked[i] = 1;
    w_.SetWakeup(NextWakeup(ev.result, snap_.global.next_cron_interval_ms, I0(), settings_,
                            snap_.global.gid, now_ms_));
  }

  void Advance() {
    if (snap_.global.status == GlobalStatus::kPrepared) {
      CheckTimeout();
      // A decision that leaves prepared ends the round: the engine starts the next one from the
      // store, which then holds every registered row (no row can be registered after the status
      // left prepared; registerBranch on another coordinator may have added one since this round
      // loaded its snapshot — dtx-sim seeds 1037 and 5523).
      if (snap_.global.status != GlobalStatus::kPrepared) return;
    }
    if (snap_.global.status == GlobalStatus::kSubmitted) {
      AdvancePhase(ForwardOp(), GlobalStatus::kSucceed);
    } else if (snap_.global.status == GlobalStatus::kAborting) {
      AdvancePhase(BackwardOp(), GlobalStatus::kFailed);
    }
  }

  // Prepared: the AP has not decided. After timeout_to_fail the transaction aborts itself and the
  // abort phase starts in the same decision; before it, the next round is due exactly then.
  void CheckTimeout() {
    const int64_t timeout_ms = TimeoutToFailMs(snap_.global, settings_);
    if (timeout_ms <= 0) return;  // never times out (server default 0)
    const int64_t deadline = snap_.global.create_time_ms + timeout_ms;
    if (now_ms_ >= deadline) {
      w_.SetStatus(GlobalStatus::kAborting);
      if (snap_.global.rollback_reason.empty()) {
        w_.SetRollbackReason(fmt::format("Timeout after {} seconds", timeout_ms / 1000));
      }
      return;
    }
    if (snap_.global.next_cron_time_ms != deadline) {
      const int64_t interval =
          snap_.global.next_cron_interval_ms > 0 ? snap_.global.next_cron_interval_ms : I0();
      w_.SetWakeup(Wakeup{interval, deadline});
    }
  }

  // The rows of one phase in call order: tcc in reverse registration order (so a nested "0201",
  // registered after "02", comes first), xa in registration order.
  std::vector<size_t> PhaseRows(std::string_view op) const {
    std::vector<size_t> rows;
    const size_t n = snap_.branches.size();
    for (size_t k = 0; k < n; ++k) {
      size_t i = xa() ? k : n - 1 - k;
      if (snap_.branches[i].op == op) rows.push_back(i);
    }
    return rows;
  }

  // Calls the first row of the phase that is still prepared, one at a time; sets `final_status`
  // once every row of the phase has succeeded and nothing is in flight.
  void AdvancePhase(std::string_view op, GlobalStatus final_status) {
    for (size_t i : PhaseRows(op)) {
      if (row(i).status != BranchStatus::kPrepared) continue;
      // In flight, or answered non-SUCCESS this round (the round stops there), or a call of the
      // other phase still outstanding after an external status change: wait.
      if (round_.in_flight[i] || round_.parked[i] || round_.in_flight_count > 0) return;
      if (row(i).url.empty()) {  // empty URL = SUCCESS without a call
        w_.SetBranchStatus(i, BranchStatus::kSucceed);
        continue;
      }
      round_.in_flight[i] = 1;
      round_.in_flight_count += 1;
      calls_.push_back(i);
      return;
    }
    if (round_.in_flight_count == 0) w_.SetStatus(final_status);
  }

  TransSnapshot& snap_;
  Round& round_;
  const Settings& settings_;
  int64_t now_ms_;
  Writer w_;
  std::vector<size_t> calls_;
};

}  // namespace

Decision TccStep(TransSnapshot& snap, Round& round, const Event& event, const Settings& settings,
                 int64_t now_ms) {
  return Tcc(snap, round, settings, now_ms).Run(event);
}

}  // namespace dtx::core
