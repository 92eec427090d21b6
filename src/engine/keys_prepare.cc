// Business keys of tcc and xa (docs/tcc.md "Business keys"): their try phase runs in the client
// once `prepare` has answered, so they wait for their keys in `prepare`. The transaction and its
// key rows are created first (its place in the queues is durable); then the prepare request waits
// on the coordinator — a coroutine on the gid's shard, no blocked thread — until the keys are its
// (200), or on_busy reject (409 at once), or PrepareKeyWaitDeadlineMs has passed (409; the
// transaction fails, which deletes its key rows). Wake-ups are the engine's: a release here makes
// the recovery loop acquire the keys for the waiter and start a round of it, which wakes this
// wait (Shard::round_watchers); otherwise it looks again once per cron interval (keys released by
// another coordinator). The stored wake-up of a waiting tcc is its deadline, so after a crash the
// recovery loop fails it then if nobody acquired the keys for it (KeysGate).
// A failed key wait of a tcc/xa that has branch rows anyway (registered where nothing refused it:
// another coordinator, after a restart) rolls back through its cancels instead (aborting, the
// same reason): PrepareKeyStep starts that round, KeysGate goes on into it (KeyFailAborts).
// While a keyed prepare waits here, a registerBranch of its gid on this coordinator is refused
// unless the keys are held (CheckKeysHeldForRegister; Shard::key_prepares).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "engine/engine_internal.h"
#include "engine/refusal.h"
#include "engine/store_await.h"

namespace dtx::engine {

using asio::awaitable;

namespace {

// A round of the gid that runs here is waited for at most this long at a time (a prepared tcc's
// round makes no call: it lasts one store write).
constexpr int64_t kPrepareKeyRoundWaitMs = 60'000;

}  // namespace

awaitable<Status> Engine::PrepareKeyWait(Shard& shard, std::string gid) {
  std::unique_ptr<Timer> timer = timers_->NewTimer(co_await asio::this_coro::executor);
  for (;;) {
    if (stopped_) co_return Status::Unavailable("the server is shutting down");
    int64_t wake_at = 0;
    {
      GidGuard guard = co_await LockGid(shard, gid);
      // A round of it (a timeout check, or the one a wake-up started after acquiring its keys)
      // ends first: its write may be the answer.
      while (true) {
        auto it = shard.active.find(gid);
        if (it == shard.active.end()) break;
        co_await WaitRound(it->second, clock_.NowMs() + kPrepareKeyRoundWaitMs, WaitFor::kSubmit);
      }
      Result<int64_t> step = co_await PrepareKeyStep(gid);
      if (!step.ok()) co_return step.status();
      if (*step == 0) co_return Status::Ok();
      wake_at = std::min(*step, clock_.NowMs() + options_.cron_interval_ms);
    }
    if (shard.active.count(gid) != 0) continue;  // a round started while the store was asked
    std::vector<Timer*>& watchers = shard.round_watchers[gid];
    watchers.push_back(timer.get());
    co_await timer->WaitUntil(wake_at);
    std::vector<Timer*>& after = shard.round_watchers[gid];
    std::erase(after, timer.get());
    if (after.empty()) shard.round_watchers.erase(gid);
  }
}

awaitable<Result<int64_t>> Engine::PrepareKeyStep(std::string gid) {
  Loaded loaded = co_await LoadOnShard(gid);
  if (!loaded.ok()) co_return loaded.status();
  if (!loaded->has_value()) co_return refusal::NotPrepared(gid);
  const core::GlobalTrans& g = (*loaded)->global;
  if (g.status != core::GlobalStatus::kPrepared) {
    // Failed while it waited (its timeout, an abort, an operator), or rolling back its registered
    // branches after its key wait failed: the reason says why.
    const bool rolled_back =
        g.status == core::GlobalStatus::kFailed || g.status == core::GlobalStatus::kAborting;
    if (rolled_back && !g.rollback_reason.empty()) {
      co_return Status::Conflict(g.rollback_reason);
    }
    co_return refusal::WrongStatus("prepare", g.status, g.trans_type);
  }
  Result<core::KeySpec> spec = core::ParseKeySpec(g.custom_data);
  if (!spec.ok() || spec->keys.empty()) co_return int64_t{0};
  const int64_t now = clock_.NowMs();
  const core::KeyState busy{false, "", ""};
  const core::KeyWait if_busy = core::DecideKeyWait(g, *spec, busy, options_.settings, now);
  // Past its deadline it only looks whether a wake-up gave it the keys meanwhile.
  const bool look_only = if_busy.kind == core::KeyWait::Kind::kFail && !spec->reject_if_busy;
  const int64_t park_until = if_busy.kind == core::KeyWait::Kind::kWait ? if_busy.wake_at_ms : 0;
  Result<core::KeyState> st = co_await AcquireKeysRetrying(gid, !look_only, park_until);
  if (!st.ok()) co_return st.status();
  if (st->held) co_return int64_t{0};
  const core::KeyWait w = core::DecideKeyWait(g, *spec, *st, options_.settings, now);
  if (w.kind == core::KeyWait::Kind::kWait) co_return w.wake_at_ms;
  // Refused or timed out. A branch registered meanwhile (on another coordinator, or before a
  // restart: nothing refused it) may have had its Try called: it rolls back through its cancels
  // (aborting, same reason; the round runs here). Rows registered while AcquireKeys ran are read.
  core::TransSnapshot snap = std::move(**loaded);
  co_await ReloadBranches(snap);
  if (!snap.branches.empty()) {
    const std::string reason = w.reason.substr(0, core::kMaxRollbackReasonBytes);
    Shard& shard = ShardFor(gid);
    const core::OptionsPatch no_patch;
    Result<ActivePtr> started = co_await AbortTccXa(shard, std::move(snap), reason, no_patch);
    if (!started.ok() && started.status().code() == Code::kConflict) co_return now;
    if (!started.ok()) co_return started.status();
    spdlog::info("gid {}: key wait failed with branches registered: cancelling them ({})", gid,
                 reason);
    co_return Status::Conflict(reason);
  }
  // No branch: failed without any branch call. The write deletes its key rows.
  core::TransUpdate u;
  u.gid = gid;
  u.expected_status = core::GlobalStatus::kPrepared;
  u.new_status = core::GlobalStatus::kFailed;
  u.rollback_reason = w.reason.substr(0, core::kMaxRollbackReasonBytes);
  u.finish_time_ms = now;
  u.rollback_time_ms = now;
  u.update_time_ms = now;
  const std::string reason = *u.rollback_reason;
  Status written = co_await Transition(std::move(u));
  if (written.code() == Code::kConflict) co_return now;  // changed meanwhile: look again at once
  if (!written.ok()) co_return written;
  WakeKeyWaitersSoon();  // it may have been ahead of others in a queue
  co_return Status::Conflict(reason);
}

awaitable<Status> Engine::CheckKeysHeldForSubmit(const core::TransSnapshot& stored) {
  const core::GlobalTrans& g = stored.global;
  if (g.trans_type != core::TransType::kTcc && g.trans_type != core::TransType::kXa) {
    co_return Status::Ok();
  }
  if (g.custom_data.find("\"business_keys\"") == std::string::npos) co_return Status::Ok();
  Result<core::KeyState> st = co_await KeysOf(g.gid);
  if (!st.ok()) co_return st.status();
  if (st->held) co_return Status::Ok();
  co_return Status::Conflict(fmt::format(
      "business key '{}' of '{}' is not held (queued behind '{}'): prepare has not answered 200",
      st->waiting_key, g.gid, st->waiting_for));
}

awaitable<Status> Engine::CheckKeysHeldForRegister(std::string gid) {
  Result<core::KeyState> st = co_await KeysOf(gid);
  if (!st.ok()) co_return st.status();
  if (st->held) co_return Status::Ok();
  co_return Status::Conflict(fmt::format(
      "registerBranch of '{}': business key '{}' is not held (held by or queued behind '{}'): "
      "prepare has not answered 200",
      gid, st->waiting_key, st->waiting_for));
}

awaitable<bool> Engine::KeyFailAborts(Active& a, std::string reason) {
  const core::GlobalTrans& g = a.snap.global;
  if (g.trans_type != core::TransType::kTcc && g.trans_type != core::TransType::kXa) {
    co_return false;
  }
  if (g.status != core::GlobalStatus::kPrepared) co_return false;
  co_await ReloadBranches(a.snap);  // rows registered on another coordinator since the load
  if (a.snap.branches.empty()) co_return false;
  const int64_t now = clock_.NowMs();
  core::TransUpdate u;
  u.gid = g.gid;
  u.expected_status = core::GlobalStatus::kPrepared;
  u.new_status = core::GlobalStatus::kAborting;
  if (!reason.empty()) u.rollback_reason = reason.substr(0, core::kMaxRollbackReasonBytes);
  u.rollback_time_ms = now;
  u.update_time_ms = now;
  u.expected_owner = options_.owner;
  const std::optional<std::string> u_reason = u.rollback_reason;
  Status written = co_await Transition(std::move(u));
  if (!written.ok()) {
    a.outcome = written;
    co_return true;
  }
  spdlog::info("gid {}: key wait failed with branches registered: cancelling them ({})", g.gid,
               reason);
  // The round goes on from this state: core::Step cancels every registered branch. Its key rows
  // stay queued until its final write (docs/tcc.md).
  a.snap.global.status = core::GlobalStatus::kAborting;
  if (u_reason) a.snap.global.rollback_reason = *u_reason;
  a.snap.global.rollback_time_ms = now;
  a.stored_status = core::GlobalStatus::kAborting;
  for (Timer* t : a.status_waiters) t->Cancel();
  co_return true;
}

}  // namespace dtx::engine
