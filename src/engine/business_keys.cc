// Business keys (issue 15 item 2, docs/saga.md "Business keys"): a durable semantic lock. The
// decisions are core's (core/business_keys.h), the lock is the store's (Store::AcquireKeys,
// WakeKeyWaiters); this file wires them into the engine:
//  - KeysGate, before a round's first decision: acquire the keys, or park the transaction in the
//    store (asleep until woken or its timeout: it costs nothing while it waits), or fail it
//    (on_busy reject, timeout while waiting) without any branch call;
//  - WakeKeyWaitersSoon / MaybeWakeKeyWaiters: a holder that became final here wakes the recovery
//    loop, which makes the waiters that can run now due and claims them; the loop also re-checks
//    once per cron interval (keys released by another coordinator);
//  - WaitKeyed: wait_result of a waiting transaction answers once it has run.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>

#include "engine/engine_internal.h"
#include "engine/refusal.h"
#include "engine/store_await.h"

namespace dtx::engine {

using asio::awaitable;

namespace {

// A wait_result on a transaction that waits for its keys answers after at most this long (plus
// the request timeout) even if it has not run by then.
constexpr int64_t kMaxKeyWaitResultMs = 30'000;
// A contended key decision (PostgreSQL) is asked again: three times after 5, 10 and 15 ms, then
// once per cron interval, 12 attempts in all.
constexpr int kKeyContendedQuickAttempts = 3;
constexpr int kKeyContendedAttempts = 12;
constexpr int64_t kKeyContendedPauseMs = 5;

}  // namespace

bool Engine::HasKeys(Active& a) const {
  // The API stores keys normalized under this exact name (core::WithKeySpec): a transaction
  // without it (every notification, most sagas) costs no JSON parse here.
  if (!a.keys && a.snap.global.custom_data.find("\"business_keys\"") == std::string::npos) {
    a.keys = core::KeySpec{};
  }
  if (!a.keys) {
    Result<core::KeySpec> spec = core::ParseKeySpec(a.snap.global.custom_data);
    a.keys = spec.ok() ? std::move(*spec) : core::KeySpec{};
  }
  return !a.keys->keys.empty();
}

awaitable<bool> Engine::KeysGate(Active& a) {
  const core::GlobalTrans& g = a.snap.global;
  const int64_t now = clock_.NowMs();
  // What a busy answer would mean now: wait until when, or fail.
  const core::KeyState busy{false, "", ""};
  const core::KeyWait if_busy = core::DecideKeyWait(g, *a.keys, busy, options_.settings, now);
  if (if_busy.kind == core::KeyWait::Kind::kRun) co_return true;  // not a waiting kind/state
  if (a.keys_taken) co_return true;  // its create took them (the store said so)
  // Past its timeout (or aborted) a waiter never starts: it only looks whether it holds its keys.
  const bool look_only = if_busy.kind == core::KeyWait::Kind::kFail && !a.keys->reject_if_busy;
  const int64_t park_until = if_busy.kind == core::KeyWait::Kind::kWait ? if_busy.wake_at_ms : 0;
  const std::string gid = g.gid;
  Result<core::KeyState> st = co_await AcquireKeysRetrying(gid, !look_only, park_until);
  if (!st.ok()) {
    // The round is abandoned; recovery retries from the stored state (its lease still holds).
    spdlog::warn("gid {}: business keys: {}", gid, st.status().ToString());
    a.outcome = st.status();
    co_return false;
  }
  if (st->held) co_return true;
  const core::KeyWait w = core::DecideKeyWait(g, *a.keys, *st, options_.settings, now);
  if (w.kind == core::KeyWait::Kind::kWait) {
    // The same store write parked it until park_until — unless the decision stayed contended:
    // then it is not parked, and recovery runs it again at its stored wake-up (its lease ends
    // then too).
    a.keys_parked = true;
    co_return false;
  }
  // Refused (on_busy reject), timed out while waiting, or aborted before it held its keys: failed,
  // no branch was called. The write deletes its key rows (its place in the queues).
  // A tcc/xa with a branch registered anyway (docs/tcc.md "Business keys": another coordinator, a
  // restart) may have had its Try called: it rolls back through its cancels instead (this round).
  const std::string fail_reason = w.reason;
  if (co_await KeyFailAborts(a, fail_reason)) co_return a.outcome.ok();
  core::TransUpdate u;
  u.gid = gid;
  u.expected_status = g.status;
  u.new_status = core::GlobalStatus::kFailed;
  if (!w.reason.empty()) u.rollback_reason = w.reason.substr(0, core::kMaxRollbackReasonBytes);
  u.finish_time_ms = now;
  u.update_time_ms = now;
  u.expected_owner = options_.owner;
  const std::optional<std::string> u_reason = u.rollback_reason;
  Status written = co_await Transition(std::move(u));
  if (!written.ok()) {
    a.outcome = written;
    co_return false;
  }
  a.snap.global.status = core::GlobalStatus::kFailed;
  if (!w.reason.empty()) a.snap.global.rollback_reason = *u_reason;
  a.snap.global.finish_time_ms = now;
  a.stored_status = core::GlobalStatus::kFailed;
  WakeKeyWaitersSoon();  // it may have been ahead of others in a queue
  co_return false;
}

awaitable<Result<core::KeyState>> Engine::AcquireKeysRetrying(std::string gid, bool acquire,
                                                              int64_t park_until_ms) {
  // PostgreSQL answers `contended` while another decision on one of the keys is in flight (it
  // lasts one store write): asked again after short pauses, then once per cron interval. Still
  // contended after that, the caller treats it as busy without having parked it.
  std::unique_ptr<Timer> timer;
  for (int attempt = 0;; ++attempt) {
    Result<core::KeyState> st = co_await AwaitStore<Result<core::KeyState>>(
        [&](auto cb) { store_.AcquireKeys(gid, acquire, park_until_ms, std::move(cb)); });
    if (st.ok() && !st->held) NoteKeyWaiters();
    if (!st.ok() || !st->contended || attempt + 1 >= kKeyContendedAttempts || stopped_) {
      co_return st;
    }
    if (!timer) timer = timers_->NewTimer(co_await asio::this_coro::executor);
    const int64_t pause_ms = attempt < kKeyContendedQuickAttempts
                                 ? kKeyContendedPauseMs * (attempt + 1)
                                 : options_.cron_interval_ms;
    co_await timer->WaitUntil(clock_.NowMs() + pause_ms);
  }
}

void Engine::WakeKeyWaitersSoon() {
  // The store had no waiter when last looked, and none was seen since: nothing to wake.
  if (key_epoch_.load() == key_quiet_epoch_.load()) return;
  keys_wake_.store(true);
  auto cron = cron_;
  if (!cron) return;
  asio::post(pool_.Get(0), [cron] {
    if (cron->timer) cron->timer->Cancel();
  });
}

awaitable<void> Engine::MaybeWakeKeyWaiters() {
  const int64_t now = clock_.NowMs();
  const bool woken = keys_wake_.exchange(false);
  if (!woken && now < next_key_check_ms_) co_return;
  next_key_check_ms_ = now + options_.cron_interval_ms;
  const int limit = std::max(1, options_.claim_batch);
  const uint64_t epoch = key_epoch_.load();
  Result<std::vector<std::string>> due = co_await AwaitStore<Result<std::vector<std::string>>>(
      [&](auto cb) { store_.WakeKeyWaiters(now, limit, std::move(cb)); });
  if (!due.ok()) {
    spdlog::error("business keys: waking waiters failed: {}", due.status().ToString());
    co_return;
  }
  if (due->empty()) {
    // None could run: does any wait at all? If not, releases stop waking until one is seen
    // (NoteKeyWaiters after `epoch` makes the epochs differ again).
    Result<bool> waiting =
        co_await AwaitStore<Result<bool>>([&](auto cb) { store_.HasKeyWaiters(std::move(cb)); });
    key_quiet_epoch_.store(waiting.ok() && !*waiting ? epoch : 0);
  } else {
    key_quiet_epoch_.store(0);
  }
  // They are due now: the claim that follows in the recovery loop starts them.
  if (!due->empty()) spdlog::debug("business keys: {} waiter(s) may run", due->size());
}

awaitable<Result<core::KeyState>> Engine::KeysOf(std::string gid) {
  co_return co_await AwaitStore<Result<core::KeyState>>(
      [&](auto cb) { store_.AcquireKeys(gid, false, 0, std::move(cb)); });
}

awaitable<Result<std::optional<core::KeyState>>> Engine::KeyStateOf(const core::GlobalTrans& g) {
  using Out = std::optional<core::KeyState>;
  if (core::IsFinal(g.status) || g.custom_data.find("\"business_keys\"") == std::string::npos) {
    co_return Out();
  }
  Result<core::KeySpec> spec = core::ParseKeySpec(g.custom_data);
  if (!spec.ok() || spec->keys.empty()) co_return Out();
  Result<core::KeyState> state = co_await KeysOf(g.gid);
  if (!state.ok()) co_return state.status();
  co_return Out(std::move(*state));
}

int64_t Engine::KeyWaitDeadline(const Active& a) const {
  const core::GlobalTrans& g = a.snap.global;
  const int64_t now = clock_.NowMs();
  int64_t until = now + kMaxKeyWaitResultMs;
  const int64_t timeout_ms = core::TimeoutToFailMs(g, options_.settings);
  if (g.trans_type == core::TransType::kSaga && timeout_ms > 0) {
    until = std::min(until, std::max(now, g.create_time_ms + timeout_ms));
  }
  return until + core::RequestTimeoutMs(g.options, options_.settings) + kWaitResultSlackMs;
}

awaitable<Status> Engine::WaitKeyed(Shard& shard, std::string gid, WaitFor what,
                                    int64_t deadline_ms) {
  // Woken when a round of gid starts on this shard; else re-reads the store once per cron
  // interval (another coordinator may run it).
  std::unique_ptr<Timer> timer = timers_->NewTimer(co_await asio::this_coro::executor);
  for (;;) {
    if (auto it = shard.active.find(gid); it != shard.active.end()) {
      ActivePtr a = it->second;
      Status waited = co_await WaitRound(a, deadline_ms, what);
      if (!(a->keys_parked && a->outcome.ok())) co_return waited;
      // It parked again (its keys were taken by an earlier waiter first): keep waiting.
    } else {
      Loaded loaded = co_await LoadOnShard(gid);
      if (!loaded.ok()) co_return loaded.status();
      if (!loaded->has_value()) co_return refusal::NotSucceeded();
      const core::GlobalTrans& g = (*loaded)->global;
      if (core::IsFinal(g.status)) co_return FinalWaitAnswer(g, what);
    }
    if (clock_.NowMs() >= deadline_ms) co_return refusal::NotSucceeded();
    if (shard.active.count(gid)) continue;  // started while the store was read
    std::vector<Timer*>& watchers = shard.round_watchers[gid];
    watchers.push_back(timer.get());
    co_await timer->WaitUntil(std::min(deadline_ms, clock_.NowMs() + options_.cron_interval_ms));
    std::vector<Timer*>& after = shard.round_watchers[gid];
    std::erase(after, timer.get());
    if (after.empty()) shard.round_watchers.erase(gid);
  }
}

}  // namespace dtx::engine
