// One deterministic simulation run: a seed draws the configuration, the workload (sagas, TCC,
// 2-phase msg, resubmits, forceStop, resetNextCronTime), the faults (participants, network, store,
// crashes, pauses, clock skew) and the interleaving; the invariants are checked while it runs and
// at its end. The same seed always produces the same run (and the same trace).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sim/world.h"

namespace dtx::sim {

// Deliberately broken variants, to show that the invariants bite (docs/simulation.md). The ones in
// the engine and the core exist only in the dtx-sim-mutants build (DTX_MUTATIONS).
enum class Mutant { kNone, kSkipLeaseExtension, kForwardCompensation, kSkipCas, kAckBeforeCommit };
const char* MutantName(Mutant m);
bool ParseMutant(const std::string& name, Mutant& out);

struct RunResult {
  uint64_t seed = 0;
  Config config;
  Counters counters;
  std::vector<std::string> violations;
  std::vector<TraceLine> trace;
  int64_t virtual_ms = 0;  // how much world time the run covered
  uint64_t handlers = 0;   // engine/client handlers run
};

// kMixed: sagas, TCC and msg (the seeds of sim_seeds and sim_regressions); kNotify: best-effort
// notifications, plain and two-phase (sim_notify_seeds), a workload of its own so that adding it
// left every earlier seed's run unchanged. kKeys: sagas and tccs on a few business keys (waiting,
// FIFO, on_busy reject, timeouts while waiting; sim_keys_seeds).
// kKeysRegister: kKeys whose tccs are half of them impatient (impatient_tcc.cc).
enum class Workload { kMixed, kNotify, kKeys, kKeysRegister };

RunResult RunSeed(uint64_t seed, bool trace, Mutant mutant = Mutant::kNone,
                  Workload workload = Workload::kMixed);

}  // namespace dtx::sim
