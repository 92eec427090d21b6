// Recovery (docs/ARCHITECTURE.md "Scheduling and recovery"): the loop that claims due transactions
// from the store with a lease (ClaimDue pushes their next_cron_time forward in the same write) and
// resumes each on its shard unless it already has a round in memory. After a restart the same loop
// resumes everything left unfinished.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>

#include "engine/engine_internal.h"
#include "engine/store_await.h"

namespace dtx::engine {

using asio::awaitable;

awaitable<void> Engine::CronLoop() {
  auto cron = cron_;
  const int64_t lease_ms = std::max(options_.settings.retry_interval_ms, options_.cron_interval_ms);
  while (!stopped_) {
    co_await MaybeWakeKeyWaiters();  // business_keys.cc
    // The places are reserved before the claim (new transactions racing for them cannot take
    // them meanwhile); claimed transactions whose round has not started yet count in resuming_
    // (the claim loop runs ahead of the loads).
    const size_t want = static_cast<size_t>(options_.claim_batch);
    const size_t places = ReservePlaces(want);
    size_t claimed = 0;
    if (places > 0) {
      claimed = co_await ClaimAndResume(static_cast<int>(places), lease_ms);
      reserved_.fetch_sub(places);
    }
    const int limit = static_cast<int>(places);
    if (stopped_) break;
    if (limit > 0 && claimed == static_cast<size_t>(limit)) continue;  // more may be due at once
    // Keys released since the check above: no await between here and the wait, so a wake-up
    // posted to this thread either is seen here or cancels the wait.
    if (keys_wake_.load()) continue;
    co_await cron->timer->WaitUntil(clock_.NowMs() + options_.cron_interval_ms);
  }
}

awaitable<size_t> Engine::ClaimAndResume(int limit, int64_t lease_ms) {
  const int64_t now = clock_.NowMs();
  Result<std::vector<std::string>> due = co_await AwaitStore<Result<std::vector<std::string>>>(
      [&](auto cb) { store_.ClaimDue(now, limit, now + lease_ms, options_.owner, std::move(cb)); });
  if (!due.ok()) {
    spdlog::error("recovery: claiming due transactions failed: {}", due.status().ToString());
    co_return 0;
  }
  resuming_.fetch_add(due->size(), std::memory_order_relaxed);
  for (std::string& gid : *due) {
    Shard& shard = ShardFor(gid);
    asio::co_spawn(shard.ioc, ResumeOnShard(std::move(gid)), LogException{"resume"});
  }
  co_return due->size();
}

awaitable<void> Engine::ResumeOnShard(std::string gid) {
  // Counted by ClaimAndResume; from here on the round (if any) counts in active_count_.
  struct Resumed {
    std::atomic<size_t>& n;
    ~Resumed() { n.fetch_sub(1, std::memory_order_relaxed); }
  } resumed{resuming_};
  Shard& shard = ShardFor(gid);
  if (stopped_ || shard.active.count(gid)) co_return;
  GidGuard guard = co_await LockGid(shard, gid);
  if (stopped_ || shard.active.count(gid)) co_return;
  Loaded loaded = co_await LoadOnShard(gid);
  if (!loaded.ok()) {
    spdlog::error("gid {}: cannot load for recovery: {}", gid, loaded.status().ToString());
    co_return;
  }
  if (!loaded->has_value() || core::IsFinal((*loaded)->global.status)) co_return;
  if ((*loaded)->global.trans_type == core::TransType::kWorkflow) co_return;  // later issue
  // Another coordinator claimed it after this one did (this one's lease had run out): theirs.
  if ((*loaded)->global.owner != options_.owner) co_return;
  if (stopped_ || shard.active.count(gid)) co_return;
  StartRound(shard, std::move(**loaded));
}

}  // namespace dtx::engine
