// dtx-sim: the deterministic simulator of the coordinator (docs/simulation.md).
//   dtx-sim --seeds 10000              run seeds 1..10000, one summary line, exit 1 on a violation
//   dtx-sim --seed 4242 --trace        replay one seed and print its trace
//   dtx-sim-mutants --mutant skip-cas --seeds 500 --expect-violation
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <string>

#include "sim/simulation.h"

namespace {

void PrintTrace(const dtx::sim::RunResult& r) {
  for (const auto& line : r.trace) {
    std::printf("%10.3f  %s\n", static_cast<double>(line.time_ms - 1'700'000'000'000) / 1000.0,
                line.text.c_str());
  }
}

void PrintConfig(const dtx::sim::RunResult& r) {
  const auto& c = r.config;
  std::printf(
      "seed %llu: nodes=%d transactions=%d chaos=%lldms retry=%lldms timeout=%lldms "
      "request_timeout=%lldms cron=%lldms max_retry=%lldms skew<=%lldms p_call=%.2f p_store=%.2f "
      "p_crash=%.2f/s p_pause=%.2f/s\n",
      static_cast<unsigned long long>(r.seed), c.nodes, c.transactions,
      static_cast<long long>(c.chaos_ms), static_cast<long long>(c.retry_interval_ms),
      static_cast<long long>(c.timeout_to_fail_ms), static_cast<long long>(c.request_timeout_ms),
      static_cast<long long>(c.cron_interval_ms), static_cast<long long>(c.max_retry_interval_ms),
      static_cast<long long>(c.max_skew_ms), c.p_call_fault, c.p_store_fault, c.p_crash_per_s,
      c.p_pause_per_s);
}

struct Options {
  uint64_t seed = 0;
  uint64_t seeds = 0;
  uint64_t first = 1;
  bool trace = false;
  bool expect_violation = false;
  double time_budget_s = 0;
  dtx::sim::Mutant mutant = dtx::sim::Mutant::kNone;
  std::string mutant_name = "none";
  dtx::sim::Workload workload = dtx::sim::Workload::kMixed;
  std::string workload_name = "mixed";
};

// One seed, with its configuration, trace (optional) and violations.
int RunOne(const Options& o) {
  dtx::sim::RunResult r = dtx::sim::RunSeed(o.seed, o.trace, o.mutant, o.workload);
  PrintConfig(r);
  if (o.trace) PrintTrace(r);
  for (const auto& v : r.violations) std::printf("VIOLATION: %s\n", v.c_str());
  std::printf(
      "seed %llu: %llu transactions, %llu calls, %llu faults, %llu crashes, %llu pauses, "
      "%zu violations, %.1f virtual s\n",
      static_cast<unsigned long long>(o.seed),
      static_cast<unsigned long long>(r.counters.transactions),
      static_cast<unsigned long long>(r.counters.calls),
      static_cast<unsigned long long>(r.counters.faults + r.counters.store_faults),
      static_cast<unsigned long long>(r.counters.crashes),
      static_cast<unsigned long long>(r.counters.pauses), r.violations.size(),
      static_cast<double>(r.virtual_ms) / 1000.0);
  const bool violated = !r.violations.empty();
  return o.expect_violation ? (violated ? 0 : 1) : (violated ? 1 : 0);
}

// Seeds first..first+seeds-1: one line per failing seed, one summary line.
int RunMany(const Options& o) {
  const auto t0 = std::chrono::steady_clock::now();
  dtx::sim::Counters total;
  uint64_t ran = 0, failed = 0, first_failed = 0;
  double virtual_s = 0;
  for (uint64_t s = o.first; s < o.first + o.seeds; ++s) {
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (o.time_budget_s > 0 && elapsed > o.time_budget_s) break;
    dtx::sim::RunResult r = dtx::sim::RunSeed(s, false, o.mutant, o.workload);
    ++ran;
    total.transactions += r.counters.transactions;
    total.calls += r.counters.calls;
    total.faults += r.counters.faults + r.counters.store_faults;
    total.crashes += r.counters.crashes;
    total.pauses += r.counters.pauses;
    total.retained += r.counters.retained;
    virtual_s += static_cast<double>(r.virtual_ms) / 1000.0;
    if (r.violations.empty()) continue;
    ++failed;
    if (first_failed == 0) first_failed = s;
    if (o.expect_violation) break;  // caught: enough
    std::printf("FAILED seed %llu (replay: dtx-sim --seed %llu --workload %s --trace)\n",
                static_cast<unsigned long long>(s), static_cast<unsigned long long>(s),
                o.workload_name.c_str());
    PrintConfig(r);
    for (const auto& v : r.violations) std::printf("  VIOLATION: %s\n", v.c_str());
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const bool mutant = o.mutant != dtx::sim::Mutant::kNone;
  std::printf(
      "dtx-sim%s%s: seeds=%llu transactions=%llu calls=%llu faults=%llu crashes=%llu pauses=%llu "
      "retained=%llu violations=%llu virtual=%.1fh wall=%.1fs\n",
      mutant ? " --mutant " : "", mutant ? o.mutant_name.c_str() : "",
      static_cast<unsigned long long>(ran), static_cast<unsigned long long>(total.transactions),
      static_cast<unsigned long long>(total.calls), static_cast<unsigned long long>(total.faults),
      static_cast<unsigned long long>(total.crashes), static_cast<unsigned long long>(total.pauses),
      static_cast<unsigned long long>(total.retained), static_cast<unsigned long long>(failed),
      virtual_s / 3600.0, wall);
  if (!o.expect_violation) return failed == 0 ? 0 : 1;
  if (failed == 0) {
    std::printf("NOT CAUGHT: no violation in %llu seeds\n", static_cast<unsigned long long>(ran));
    return 1;
  }
  std::printf("caught at seed %llu (seed %llu of the run)\n",
              static_cast<unsigned long long>(first_failed),
              static_cast<unsigned long long>(first_failed - o.first + 1));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dtx-sim: deterministic simulation of the dtx coordinator"};
  Options o;
  app.add_option("--seed", o.seed, "run this one seed");
  app.add_option("--seeds", o.seeds, "run this many seeds, from --first on");
  app.add_option("--first", o.first, "first seed of --seeds (default 1)");
  app.add_flag("--trace", o.trace, "print the run's trace (with --seed)");
  app.add_option("--workload", o.workload_name,
                 "mixed (sagas, tcc, msg; the default), notify (notifications), keys "
                 "(sagas and tccs on business keys) or keys-register (keys, half of the tccs "
                 "registering before their prepare answered)");
  app.add_option("--time-budget", o.time_budget_s,
                 "stop starting new seeds after this many seconds (0 = none); the summary says "
                 "how many ran");
  app.add_option("--mutant", o.mutant_name,
                 "run a deliberately broken variant (dtx-sim-mutants only): skip-lease-extension, "
                 "forward-compensation, skip-cas, ack-before-commit");
  app.add_flag("--expect-violation", o.expect_violation,
               "exit 0 only if some seed finds a violation (for --mutant)");
  CLI11_PARSE(app, argc, argv);
  if (o.workload_name == "notify") {
    o.workload = dtx::sim::Workload::kNotify;
  } else if (o.workload_name == "keys") {
    o.workload = dtx::sim::Workload::kKeys;
  } else if (o.workload_name == "keys-register") {
    o.workload = dtx::sim::Workload::kKeysRegister;
  } else if (o.workload_name != "mixed") {
    std::fprintf(stderr, "dtx-sim: unknown --workload '%s' (mixed, notify, keys, keys-register)\n",
                 o.workload_name.c_str());
    return 2;
  }
  if (!dtx::sim::ParseMutant(o.mutant_name, o.mutant)) {
    std::fprintf(stderr, "dtx-sim: unknown --mutant '%s'\n", o.mutant_name.c_str());
    return 2;
  }
#ifndef DTX_MUTATIONS
  if (o.mutant != dtx::sim::Mutant::kNone && o.mutant != dtx::sim::Mutant::kSkipCas) {
    std::fprintf(stderr, "dtx-sim: --mutant %s needs the dtx-sim-mutants binary\n",
                 o.mutant_name.c_str());
    return 2;
  }
#endif
  if ((o.seed == 0) == (o.seeds == 0)) {
    std::fprintf(stderr, "dtx-sim: give exactly one of --seed S or --seeds N\n");
    return 2;
  }
  return o.seed != 0 ? RunOne(o) : RunMany(o);
}
