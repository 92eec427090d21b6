// The retention job in the simulation: now and then, finished transactions older than a horizon
// are deleted from the shared disk (Store::DeleteFinished, as ops::RetentionJob runs it), while
// coordinators crash, retry and recover around them. Checked: only final transactions disappear,
// and what a deleted transaction had done is still checked at the end (from its last state).
#include <fmt/format.h>

#include "sim/sim_internal.h"

namespace dtx::sim {

namespace asio = boost::asio;

asio::awaitable<void> Sim::RetentionApp() {
  // A horizon past every client's retries and re-submits of one gid (6 tries up to 1.5 s apart,
  // a re-submit up to 3 s after the answer, answers delayed by the network): retention's contract
  // is that clients do not come back to a gid after it (docs/operations.md). With 5-20 s, seeds
  // 5826 and 9290 acknowledge a late retry of a submit whose transaction was already deleted.
  const int64_t horizon_ms = world.Uniform(15'000, 30'000);
  const int batch = static_cast<int>(world.Uniform(1, 50));
  for (;;) {
    co_await Sleep(world.Uniform(1000, 5000));
    if (!world.chaos && apps_running == 0) break;
    // What is stored now, to tell which gids the deletion removes.
    std::map<std::string, core::TransSnapshot> before;
    for (const auto& [gid, tx] : txs) {
      if (std::optional<core::TransSnapshot> s = disk.Peek(gid)) before.emplace(gid, *s);
    }
    Result<store::RetentionCount> deleted = Status::Internal("no answer");
    disk.mem().DeleteFinished(world.time.now_ms() - horizon_ms, batch,
                              [&](Result<store::RetentionCount> r) { deleted = std::move(r); });
    if (!deleted.ok()) {
      world.Violation("retention: " + deleted.status().ToString());
      continue;
    }
    int64_t gone = 0;
    for (auto& [gid, snap] : before) {
      if (disk.Peek(gid)) continue;
      ++gone;
      if (!core::IsFinal(snap.global.status)) {
        world.Violation(fmt::format("retention deleted gid {} while it was {}", gid,
                                    core::ToString(snap.global.status)));
      }
      retained[gid] = std::move(snap);
    }
    if (gone != deleted->transactions || deleted->transactions > batch) {
      world.Violation(fmt::format("retention reported {} deleted (batch {}), {} gids gone",
                                  deleted->transactions, batch, gone));
    }
    world.counters.retained += static_cast<uint64_t>(gone);
    world.Trace(fmt::format("retention: deleted {} finished transactions", gone));
  }
}

}  // namespace dtx::sim
