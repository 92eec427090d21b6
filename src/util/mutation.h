// Deliberately broken variants of the engine and the core, for the simulator's self-test: it must
// catch each of them (tests/sim_bites_test.sh). DTX_MUTANT(kName) is the constant `false` in every
// normal build; only the libraries of the dtx-sim-mutants binary are compiled with DTX_MUTATIONS,
// where it reads the variant chosen at run time. Never use it for anything but a test of the tests.
#pragma once

namespace dtx::mutation {

enum class Kind : unsigned char {
  kNone,
  kSkipLeaseExtension,   // engine: calls start without pushing the stored wake-up past them
  kForwardCompensation,  // core: a failed saga compensates in forward order
  kAckBeforeCommit,      // engine: a round's final write is acknowledged before it commits
};

void Set(Kind kind);
Kind Get();

}  // namespace dtx::mutation

#ifdef DTX_MUTATIONS
#define DTX_MUTANT(name) (::dtx::mutation::Get() == ::dtx::mutation::Kind::name)
#else
#define DTX_MUTANT(name) false
#endif
