// Shared vocabulary of the simulator: its configuration (drawn from the seed), the trace, the
// violations found, and the history of calls that the invariants are checked against.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "sim/virtual_time.h"

namespace dtx::sim {

// What one run simulates; every field is drawn from the seed (see Simulation::Configure).
struct Config {
  int nodes = 1;                  // coordinators sharing the store
  int transactions = 12;          // started during the chaos phase
  int64_t chaos_ms = 40'000;      // faults happen in [start, start + chaos_ms)
  int64_t settle_ms = 3'600'000;  // after the chaos phase, every transaction must end within this
  // Engine settings (virtual milliseconds).
  int64_t retry_interval_ms = 1000;
  int64_t timeout_to_fail_ms = 6000;
  int64_t request_timeout_ms = 1000;
  int64_t cron_interval_ms = 500;
  int64_t max_retry_interval_ms = 16'000;
  int64_t max_skew_ms = 0;  // each node's clock is off by up to this (|a - b| < lease margin)
  size_t max_active_transactions = 64;  // per node; small in some seeds, so creates meet the limit
  // Fault rates (probabilities per call / per store operation) during the chaos phase.
  double p_call_fault = 0.2;
  double p_store_fault = 0.03;
  double p_crash_per_s = 0.02;  // per node
  double p_pause_per_s = 0.01;  // per node (GC-pause style, past the lease)
  bool trace = false;
};

// One entry of the readable trace, in world time.
struct TraceLine {
  int64_t time_ms;
  std::string text;
};

// A call of the coordinator to a participant, as the world saw it.
struct CallRecord {
  uint64_t id = 0;
  int node = 0;  // coordinator that made it
  int incarnation = 0;
  std::string gid, branch_id, op;
  int64_t start_ms = 0;       // world time the coordinator made it
  int64_t deadline_ms = 0;    // world time the coordinator gives up
  int64_t end_ms = -1;        // world time the coordinator saw an answer (or gave up); -1 = never
  int64_t delivered_ms = -1;  // world time the participant first handled it; -1 = never
  int answer_status = 0;      // what the participant answered (0 = nothing)
};

struct Counters {
  uint64_t transactions = 0;
  uint64_t calls = 0;
  uint64_t faults = 0;
  uint64_t crashes = 0;
  uint64_t pauses = 0;
  uint64_t store_faults = 0;
  uint64_t retained = 0;  // finished transactions deleted by the retention (retention.cc)
};

class World {
 public:
  World(uint64_t seed, const Config& config)
      : config(config), rng(seed), time(1'700'000'000'000), driver(time, rng) {}
  Config config;
  Rng rng;
  VirtualTime time;
  Driver driver;
  Counters counters;
  std::vector<TraceLine> trace;
  std::vector<std::string> violations;
  std::vector<CallRecord> calls;
  bool chaos = true;  // faults are injected only while true

  bool Chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; }
  int64_t Uniform(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  }
  void Trace(std::string text) {
    if (config.trace) trace.push_back({time.now_ms(), std::move(text)});
  }
  void Violation(std::string text);
  int64_t Rel(int64_t world_ms) const { return world_ms - 1'700'000'000'000; }
};

}  // namespace dtx::sim
