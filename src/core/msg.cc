// The msg state machine (PROTOCOL.md §1.9). Being written; see machine_internal.h.
#include "core/machine_internal.h"

namespace dtx::core {

Decision MsgStep(TransSnapshot&, Round& round, const Event&, const Settings&, int64_t) {
  Decision d;
  d.round_over = round.in_flight_count == 0;
  return d;
}

}  // namespace dtx::core
