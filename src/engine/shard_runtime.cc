// The shard runtime of the engine: construction and lifecycle, the shard of a gid, the per-gid
// lock, store access on a shard, and the bookkeeping of rounds (at most one per gid, counted
// against max_active_transactions).
#include <fmt/format.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <functional>
#include <random>

#include "engine/engine_internal.h"
#include "engine/store_await.h"
#include "util/assert.h"

namespace dtx::engine {

using asio::awaitable;

Engine::GidGuard::~GidGuard() {
  if (!shard_) return;
  auto it = shard_->locks.find(gid_);
  if (it == shard_->locks.end()) return;
  auto lock = it->second;
  lock->held = false;
  if (!lock->waiters.empty()) {
    lock->waiters.front()->cancel();
  } else {
    shard_->locks.erase(it);
  }
}

Engine::Engine(EngineOptions options, store::Store& store, runtime::IoPool& pool, Clock& clock,
               ops::Metrics* metrics, CallerFactory caller_factory, TimerFactory* timers)
    : options_(std::move(options)), store_(store), pool_(pool), clock_(clock), metrics_(metrics) {
  if (!caller_factory) caller_factory = NewHttpBranchCaller;
  if (timers == nullptr) {
    own_timers_ = NewAsioTimerFactory(clock_);
    timers = own_timers_.get();
  }
  timers_ = timers;
  if (options_.owner.empty()) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    std::random_device rd;
    options_.owner = fmt::format("{}-{}-{:08x}", host, ::getpid(), rd());
  }
  for (size_t i = 0; i < pool_.size(); ++i) {
    auto shard = std::make_unique<Shard>(pool_.Get(i));
    shard->caller = caller_factory(shard->ioc.get_executor());
    shards_.push_back(std::move(shard));
  }
  cron_ = std::make_shared<CronState>();
  cron_->timer = timers_->NewTimer(pool_.Get(0).get_executor());
  if (metrics_) {
    metrics_->AddGauge("dtx_active_transactions", "Transactions with a processing round in memory",
                       [this] { return static_cast<double>(active_transactions()); });
    metrics_->AddGauge(
        "dtx_branch_calls_in_flight", "Participant calls awaiting an answer",
        [this] { return static_cast<double>(calls_in_flight_.load(std::memory_order_relaxed)); });
    metrics_->AddGauge("dtx_due_backlog",
                       "Unfinished transactions due now and not leased (counted up to 100000)",
                       [this] { return static_cast<double>(due_backlog_.load()); });
  }
}

Engine::~Engine() { Stop(); }

void Engine::Start() {
  if (started_.exchange(true)) return;
  asio::co_spawn(pool_.Get(0), CronLoop(), LogException{"cron loop"});
}

void Engine::Stop() {
  if (stopped_.exchange(true)) return;
  auto cron = cron_;
  asio::post(pool_.Get(0), [cron] { cron->timer->Cancel(); });
}

void Engine::Shutdown() {
  Stop();
  for (auto& shard : shards_) {
    shard->active.clear();
    shard->running_rounds.clear();
    shard->locks.clear();
    shard->caller.reset();
  }
  cron_.reset();
}

Engine::Shard& Engine::ShardFor(const std::string& gid) {
  return *shards_[std::hash<std::string>{}(gid) % shards_.size()];
}

awaitable<Engine::GidGuard> Engine::LockGid(Shard& shard, std::string gid) {
  auto& slot = shard.locks[gid];
  if (!slot) slot = std::make_shared<Shard::GidLock>();
  std::shared_ptr<Shard::GidLock> lock = slot;
  while (lock->held) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    ArmForever(timer);
    lock->waiters.push_back(&timer);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    std::erase(lock->waiters, &timer);
  }
  lock->held = true;
  co_return GidGuard(&shard, std::move(gid));
}

awaitable<Engine::Loaded> Engine::LoadOnShard(std::string gid) {
  co_return co_await AwaitStore<Loaded>([&](auto cb) { store_.Load(gid, std::move(cb)); });
}

awaitable<Status> Engine::Create(const core::TransSnapshot& snap) {
  co_return co_await AwaitStore<Status>([&](auto cb) { store_.Create(snap, std::move(cb)); });
}

awaitable<Result<bool>> Engine::CreateTakingKeys(const core::TransSnapshot& snap) {
  co_return co_await AwaitStore<Result<bool>>(
      [&](auto cb) { store_.CreateTakingKeys(snap, std::move(cb)); });
}

awaitable<Status> Engine::Transition(core::TransUpdate update) {
  DTX_INVARIANT(!core::IsFinal(update.expected_status),
                "a compare-and-set never moves a final transaction");
  if (!options_.call_history) {
    for (auto& b : update.branches) b.new_attempts.clear();
  }
  co_return co_await AwaitStore<Status>(
      [&](auto cb) { store_.Update(std::move(update), std::move(cb)); });
}

void Engine::InitNew(core::TransSnapshot& snap, core::GlobalStatus status, int64_t now,
                     core::KeySpec* keys_out) {
  core::GlobalTrans& g = snap.global;
  g.status = status;
  g.create_time_ms = g.update_time_ms = now;
  g.next_cron_interval_ms = core::InitialIntervalMs(g.options, options_.settings);
  g.next_cron_time_ms = now + g.next_cron_interval_ms;
  if (status == core::GlobalStatus::kPrepared) {
    // tcc/xa give up, and msg is first checked back, at create + timeout (§1.4).
    g.next_cron_time_ms = now + core::TimeoutToFailMs(g, options_.settings);
  }
  // A submitted one: the creator holds it until its first wake-up (its first round starts now).
  // A prepared one: no round runs yet, nothing holds it.
  g.lease_until_ms = status == core::GlobalStatus::kPrepared ? 0 : g.next_cron_time_ms;
  g.retry_count = g.options.retry_count;
  g.owner = options_.owner;
  // Business keys: Create writes their rows with the transaction (validated by the API).
  if (keys_out != nullptr) *keys_out = core::KeySpec{};
  if (g.custom_data.find("\"business_keys\"") != std::string::npos) {
    if (Result<core::KeySpec> keys = core::ParseKeySpec(g.custom_data); keys.ok()) {
      snap.business_keys = keys->keys;
      if (keys_out != nullptr) *keys_out = std::move(*keys);
    }
  }
  for (auto& b : snap.branches) {
    b.gid = g.gid;
    b.create_time_ms = b.update_time_ms = now;
  }
}

Engine::ActivePtr Engine::StartRound(Shard& shard, core::TransSnapshot snap, KnownKeys keys) {
  const std::string& gid = snap.global.gid;
  if (auto it = shard.active.find(gid); it != shard.active.end()) return it->second;
  const bool first = shard.running_rounds.insert(gid).second;
  DTX_INVARIANT(first, "a round never runs twice at once for one gid");
  auto active = std::make_shared<Active>(shard.ioc.get_executor());
  active->stored_status = snap.global.status;
  active->snap = std::move(snap);
  active->keys = std::move(keys.spec);
  active->keys_taken = keys.taken;
  shard.active.emplace(active->snap.global.gid, active);
  active_count_.fetch_add(1, std::memory_order_relaxed);
  asio::co_spawn(shard.ioc, RunRound(&shard, active), LogException{"round"});
  if (auto w = shard.round_watchers.find(active->snap.global.gid);
      w != shard.round_watchers.end()) {
    for (Timer* t : w->second) t->Cancel();  // wait_result of a key waiter (business_keys.cc)
  }
  return active;
}

size_t Engine::ReservePlaces(size_t want) {
  // A compare-and-set on one counter, by every creator of rounds that the limit admits (new
  // transactions, recovery's claims): two that both saw room cannot both take the last place. A
  // place is counted twice while its round has started and the reservation is not yet released,
  // which only errs on the side of the limit.
  size_t r = reserved_.load();
  size_t take = 0;
  do {
    const size_t busy = active_count_.load() + resuming_.load() + r;
    const size_t room =
        busy < options_.max_active_transactions ? options_.max_active_transactions - busy : 0;
    take = std::min(room, want);
    if (take == 0) return 0;
  } while (!reserved_.compare_exchange_weak(r, r + take));
  return take;
}

Engine::RoundSlot::RoundSlot(Engine& e) : e_(e), held_(e.ReservePlaces(1) == 1) {}

Engine::RoundSlot::~RoundSlot() {
  if (held_) e_.reserved_.fetch_sub(1);
}

void Engine::EndRound(Shard& shard, const ActivePtr& active) {
  const std::string& gid = active->snap.global.gid;
  auto it = shard.active.find(gid);
  DTX_INVARIANT(it == shard.active.end() || it->second == active,
                "a round never runs twice at once for one gid");
  if (it != shard.active.end()) {
    shard.active.erase(it);
    active_count_.fetch_sub(1, std::memory_order_relaxed);
  }
  shard.running_rounds.erase(gid);
}

bool Engine::LeaseCovers(const core::TransSnapshot& snap, int64_t stored_wakeup_ms) const {
  // Half the margin may be spent between the write and the call; the other half covers clock skew
  // between coordinators.
  return clock_.NowMs() + core::RequestTimeoutMs(snap.global.options, options_.settings) +
             kLeaseMarginMs / 2 <=
         stored_wakeup_ms;
}

awaitable<bool> Engine::ClaimForResume(core::TransSnapshot& snap) {
  const int64_t now = clock_.NowMs();
  core::TransUpdate u;
  u.gid = snap.global.gid;
  u.expected_status = snap.global.status;
  if (snap.global.owner == options_.owner) {
    // Ours, and no round of it runs here (the caller checked): nothing of this coordinator is in
    // flight, so it may resume at once, even while it waits for its next retry.
    u.expected_owner = options_.owner;
  } else {
    u.due_by_ms = now;  // another coordinator's: only once its lease (or backoff) ran out
  }
  u.owner = options_.owner;
  u.next_cron_time_ms = LeaseUntil(snap);
  u.lease_until_ms = u.next_cron_time_ms;
  u.update_time_ms = now;
  const int64_t lease = *u.next_cron_time_ms;
  Status st = co_await Transition(std::move(u));
  if (!st.ok()) co_return false;
  snap.global.owner = options_.owner;
  snap.global.next_cron_time_ms = lease;
  snap.global.lease_until_ms = lease;
  co_return true;
}

awaitable<void> Engine::ReloadBranches(core::TransSnapshot& snap) {
  Loaded fresh = co_await LoadOnShard(snap.global.gid);
  // On a failed read the round starts from what it has (a rare, benign miss: recovery re-runs a
  // transaction from the store whenever a round is abandoned).
  if (fresh.ok() && fresh->has_value()) snap.branches = std::move((*fresh)->branches);
}

int64_t Engine::LeaseUntil(const core::TransSnapshot& snap) const {
  return clock_.NowMs() + core::RequestTimeoutMs(snap.global.options, options_.settings) +
         kLeaseMarginMs;
}

int64_t Engine::WaitDeadline(const Active& active) const {
  return clock_.NowMs() + core::RequestTimeoutMs(active.snap.global.options, options_.settings) +
         kWaitResultSlackMs;
}

}  // namespace dtx::engine
