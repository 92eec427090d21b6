#include <fmt/format.h>

#include "core/machine_internal.h"
#include "util/assert.h"

namespace dtx::core {

Decision Step(TransSnapshot& snap, Round& round, const Event& event, const Settings& settings,
              int64_t now_ms) {
  if (IsFinal(snap.global.status)) {
    // Late results after an external final state (forceStop): no more work, no writes.
    Decision d;
    if (event.kind == Event::Kind::kResult && event.branch_index < round.in_flight.size() &&
        round.in_flight[event.branch_index]) {
      round.in_flight[event.branch_index] = 0;
      round.in_flight_count -= 1;
    } else if (event.kind == Event::Kind::kResult && event.branch_index == kCheckBackIndex &&
               round.check_back_in_flight) {
      round.check_back_in_flight = false;
      round.in_flight_count -= 1;
    }
    d.round_over = round.in_flight_count == 0;
    return d;
  }
  switch (snap.global.trans_type) {
    case TransType::kSaga:
      return SagaStep(snap, round, event, settings, now_ms);
    case TransType::kTcc:
    case TransType::kXa:
      return TccStep(snap, round, event, settings, now_ms);
    case TransType::kMsg:
      return MsgStep(snap, round, event, settings, now_ms);
    case TransType::kNotify:
      return NotifyStep(snap, round, event, settings, now_ms);
    case TransType::kWorkflow:
      break;
  }
  DTX_INVARIANT(false, "no state machine for this trans_type");
  return {};
}

}  // namespace dtx::core
