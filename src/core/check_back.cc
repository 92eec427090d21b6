// The check-back of a prepared (two-phase) msg or notification (machine_internal.h): when it is
// asked, and what its answer decides. The mode's machine applies a decision to its own state.
#include "core/machine_internal.h"
#include "util/assert.h"

namespace dtx::core {

void MaybeCheckBack(const TransSnapshot& snap, Round& round, Writer& w, const Settings& settings,
                    int64_t now_ms, std::vector<size_t>& calls) {
  if (round.check_back_in_flight || round.check_back_parked) return;
  const int64_t timeout_ms = TimeoutToFailMs(snap.global, settings);
  if (timeout_ms <= 0) return;  // never checked back (server default 0)
  const int64_t due = snap.global.create_time_ms + timeout_ms;
  if (now_ms >= due) {
    round.check_back_in_flight = true;
    round.in_flight_count += 1;
    calls.push_back(kCheckBackIndex);
    return;
  }
  if (snap.global.next_cron_time_ms != due) {
    const int64_t interval = snap.global.next_cron_interval_ms > 0
                                 ? snap.global.next_cron_interval_ms
                                 : InitialIntervalMs(snap.global.options, settings);
    w.SetWakeup(Wakeup{interval, due});
  }
}

CheckBackDecision OnCheckBackResult(const TransSnapshot& snap, Round& round, Writer& w,
                                    const Settings& settings, int64_t now_ms, const Event& ev) {
  DTX_INVARIANT(round.check_back_in_flight, "check-back result without a check-back in flight");
  round.check_back_in_flight = false;
  round.in_flight_count -= 1;
  // Decided meanwhile (the application submitted or aborted while we asked): that stands.
  if (snap.global.status != GlobalStatus::kPrepared) return CheckBackDecision::kNone;
  const GlobalTrans& g = snap.global;
  const int64_t i0 = InitialIntervalMs(g.options, settings);
  switch (ev.result) {
    case CallClass::kSuccess:
      return CheckBackDecision::kSubmit;
    case CallClass::kFailure:
      return CheckBackDecision::kFail;
    case CallClass::kOngoing:
      // The local transaction is still open: ask again after I0 (the interval is reset).
      round.check_back_parked = true;
      w.SetWakeup(
          NextWakeup(CallClass::kSuccess, g.next_cron_interval_ms, i0, settings, g.gid, now_ms));
      return CheckBackDecision::kNone;
    case CallClass::kError:
      // No answer, or an indeterminate one (§3.3 guarded rule): back off. The answer has no row
      // to be kept in; the engine logs it and raises the alert.
      round.check_back_parked = true;
      w.SetWakeup(
          NextWakeup(CallClass::kError, g.next_cron_interval_ms, i0, settings, g.gid, now_ms));
      return CheckBackDecision::kNone;
  }
  return CheckBackDecision::kNone;
}

}  // namespace dtx::core
