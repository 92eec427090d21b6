#include "sim/simulation.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "sim/sim_internal.h"
#include "util/mutation.h"

namespace dtx::sim {

namespace asio = boost::asio;

const char* MutantName(Mutant m) {
  switch (m) {
    case Mutant::kNone:
      return "none";
    case Mutant::kSkipLeaseExtension:
      return "skip-lease-extension";
    case Mutant::kForwardCompensation:
      return "forward-compensation";
    case Mutant::kSkipCas:
      return "skip-cas";
    case Mutant::kAckBeforeCommit:
      return "ack-before-commit";
  }
  return "?";
}

bool ParseMutant(const std::string& name, Mutant& out) {
  for (Mutant m : {Mutant::kNone, Mutant::kSkipLeaseExtension, Mutant::kForwardCompensation,
                   Mutant::kSkipCas, Mutant::kAckBeforeCommit}) {
    if (name == MutantName(m)) {
      out = m;
      return true;
    }
  }
  return false;
}

Sim::Sim(uint64_t seed, bool trace, Mutant m, Workload w)
    : world(seed, Config{}),
      participants(world),
      mutant(m),
      workload(w),
      client_clock(world.time, 0),
      client_timers(world.time, client_clock) {
  Configure(seed);
  world.config.trace = trace;
  disk.skip_cas = mutant == Mutant::kSkipCas;
  mutation::Set(mutant == Mutant::kSkipLeaseExtension    ? mutation::Kind::kSkipLeaseExtension
                : mutant == Mutant::kForwardCompensation ? mutation::Kind::kForwardCompensation
                : mutant == Mutant::kAckBeforeCommit     ? mutation::Kind::kAckBeforeCommit
                                                         : mutation::Kind::kNone);
  disk.set_observer(
      [this](const core::TransSnapshot& b, const core::TransSnapshot& a) { OnWrite(b, a); });
  for (int i = 0; i < world.config.nodes; ++i) {
    const int64_t skew = world.config.max_skew_ms == 0
                             ? 0
                             : world.Uniform(-world.config.max_skew_ms, world.config.max_skew_ms);
    nodes.push_back(std::make_unique<Node>(
        world, disk, participants, i, skew, [this](const CallRecord& c) { OnCall(c); },
        [this](int node, const std::string& what, const Status& s) { OnAck(node, what, s); }));
  }
  world.driver.Add(&client_ctx, -1);
}

Sim::~Sim() {
  // Coordinators first (their coroutines may point at the world), then the clients' coroutines.
  nodes.clear();
  world.driver.Remove(&client_ctx);
  mutation::Set(mutation::Kind::kNone);
}

void Sim::Configure(uint64_t seed) {
  Config& c = world.config;
  // From the seed, not from the world's random stream (which would shift every other draw): one
  // seed in five runs each node with room for only 1 to 3 rounds, so submits are refused at the
  // limit and recovery claims only what fits.
  c.max_active_transactions = seed % 5 == 3 ? 1 + (seed / 5) % 3 : 64;
  c.nodes = static_cast<int>(world.Uniform(1, 3));
  c.transactions = static_cast<int>(world.Uniform(4, 16));
  c.chaos_ms = world.Uniform(10'000, 40'000);
  c.retry_interval_ms = world.Uniform(2, 20) * 100;
  c.timeout_to_fail_ms = world.Uniform(3, 12) * 1000;
  c.request_timeout_ms = world.Uniform(2, 15) * 100;
  c.cron_interval_ms = world.Uniform(1, 10) * 100;
  c.max_retry_interval_ms = world.Uniform(4, 30) * 1000;
  c.max_skew_ms = c.nodes > 1 && world.Chance(0.5) ? world.Uniform(0, 450) : 0;
  c.p_call_fault = world.Chance(0.2) ? 0.0 : world.Uniform(5, 40) / 100.0;
  c.p_store_fault = world.Chance(0.3) ? 0.0 : world.Uniform(1, 8) / 100.0;
  c.p_crash_per_s = world.Chance(0.3) ? 0.0 : world.Uniform(1, 10) / 100.0;
  c.p_pause_per_s = c.nodes > 1 && world.Chance(0.5) ? world.Uniform(1, 5) / 100.0 : 0.0;
}

void Sim::ScheduleChaos() {
  const Config& c = world.config;
  const int64_t start = world.time.now_ms();
  // Crashes and pauses: each second of the chaos phase, per node, with the configured chance.
  for (int64_t t = 1000; t < c.chaos_ms; t += 1000) {
    for (auto& n : nodes) {
      Node* node = n.get();
      if (world.Chance(c.p_crash_per_s)) {
        const int64_t at = start + t + world.Uniform(0, 999);
        const int64_t down = world.Uniform(0, 5000);
        world.time.At(at, [this, node, down] {
          node->Crash();
          world.time.After(down, [node] { node->Start(); });
        });
      }
      if (world.Chance(c.p_pause_per_s)) {
        const int64_t at = start + t + world.Uniform(0, 999);
        // Past the lease: longer than a request timeout plus the skew margin.
        const int64_t length =
            c.request_timeout_ms + engine::kLeaseMarginMs + world.Uniform(0, 8000);
        world.time.At(at, [node, length] { node->Pause(length); });
      }
    }
  }
  world.time.At(start + c.chaos_ms, [this] {
    world.chaos = false;
    world.Trace("chaos ends: no more faults; every coordinator up");
    for (auto& n : nodes) n->Start();
  });
}

RunResult Sim::Run() {
  const int64_t start = world.time.now_ms();
  for (auto& n : nodes) n->Start();
  ScheduleChaos();
  for (int i = 0; i < world.config.transactions; ++i) {
    const int64_t at = world.Uniform(0, world.config.chaos_ms * 3 / 4);
    // kind 4: a notification (Workload::kNotify only, which draws nothing else).
    // Workload::kKeys: sagas and tccs (3 in 10), each on some of a few business keys.
    const int kind = workload == Workload::kNotify ? 4
                     : KeysWorkload()              ? (world.Chance(0.3) ? 2 : 0)
                                                   : static_cast<int>(world.Uniform(0, 3));
    const std::string gid = fmt::format("{}-{}",
                                        kind <= 1   ? "saga"
                                        : kind == 2 ? "tcc"
                                        : kind == 3 ? "msg"
                                                    : "notify",
                                        i);
    TxInfo& tx = txs[gid];
    tx.gid = gid;
    tx.type = kind <= 1   ? core::TransType::kSaga
              : kind == 2 ? core::TransType::kTcc
              : kind == 3 ? core::TransType::kMsg
                          : core::TransType::kNotify;
    world.counters.transactions += 1;
    world.time.At(start + at, [this, gid, kind] {
      ++apps_running;
      auto app = kind <= 1   ? SagaApp(gid)
                 : kind == 2 ? TccApp(gid)
                 : kind == 3 ? MsgApp(gid)
                             : NotifyApp(gid);
      asio::co_spawn(client_ctx, std::move(app), [this](std::exception_ptr e) {
        --apps_running;
        if (e) world.Violation("an application coroutine threw");
      });
    });
  }
  asio::co_spawn(client_ctx, OperatorApp(), asio::detached);
  asio::co_spawn(client_ctx, RetentionApp(), asio::detached);
  auto all_final = [this] {
    if (world.chaos || apps_running > 0) return false;
    for (const auto& [gid, tx] : txs) {
      std::optional<core::TransSnapshot> s = disk.Peek(gid);
      if (s && !core::IsFinal(s->global.status)) return false;
    }
    return true;
  };
  world.driver.RunUntil(all_final, start + world.config.chaos_ms + world.config.settle_ms);
  CheckEnd();
  RunResult r;
  r.config = world.config;
  r.counters = world.counters;
  r.virtual_ms = world.time.now_ms() - start;
  r.handlers = world.driver.handlers_run();
  return r;
}

RunResult RunSeed(uint64_t seed, bool trace, Mutant mutant, Workload workload) {
  spdlog::level::level_enum old = spdlog::get_level();
  if (!trace) spdlog::set_level(spdlog::level::off);
  RunResult r;
  {
    Sim sim(seed, trace, mutant, workload);
    r = sim.Run();
    r.violations = sim.world.violations;
    r.trace = sim.world.trace;
  }
  r.seed = seed;
  spdlog::set_level(old);
  return r;
}

}  // namespace dtx::sim
