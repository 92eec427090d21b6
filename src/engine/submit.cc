// The submit transition (PROTOCOL.md §1.12, §1.5): create a saga or a plain msg, move a prepared
// tcc/xa/msg to submitted, or resume a submitted one; then, with wait_result, wait for the round.
#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <string_view>

#include "core/business_keys.h"
#include "core/machine.h"
#include "engine/engine_internal.h"
#include "engine/refusal.h"
#include "engine/store_await.h"

namespace dtx::engine {

using asio::awaitable;

namespace {

// msg: {"delay":N} in custom_data (core::ParseMsgDelayS); 0 when malformed (validated by the API
// before it is stored).
int64_t MsgDelayMs(std::string_view custom_data) {
  Result<int64_t> delay_s = core::ParseMsgDelayS(custom_data);
  return delay_s.ok() ? *delay_s * 1000 : 0;
}

}  // namespace

awaitable<void> Engine::WaitWhilePrepared(Shard& shard, const std::string& gid) {
  // Until the round ends or the store holds its move out of prepared: the snapshot moves first,
  // and an answer given on it would acknowledge a state that is not durable yet (dtx-sim seed
  // 2384).
  for (;;) {
    auto it = shard.active.find(gid);
    if (it == shard.active.end() || it->second->stored_status != core::GlobalStatus::kPrepared) {
      co_return;
    }
    ActivePtr a = it->second;
    std::unique_ptr<Timer> timer = timers_->NewTimer(co_await asio::this_coro::executor);
    a->status_waiters.push_back(timer.get());
    // Bounded: a check-back round lasts at most its request timeout.
    co_await timer->WaitUntil(clock_.NowMs() + 60'000);
    std::erase(a->status_waiters, timer.get());
  }
}

awaitable<Status> Engine::Submit(SubmitRequest request) {
  Shard& shard = ShardFor(request.proposed.global.gid);
  co_return co_await asio::co_spawn(shard.ioc, SubmitOnShard(std::move(request)), OnShardToken());
}

awaitable<Status> Engine::SubmitOnShard(SubmitRequest req) {
  if (stopped_) co_return Status::Unavailable("the server is shutting down");
  Shard& shard = ShardFor(req.proposed.global.gid);
  ActivePtr active;
  bool elsewhere = false;
  {
    GidGuard guard = co_await LockGid(shard, req.proposed.global.gid);
    // A round of a prepared transaction (a msg check-back, a tcc timeout check) decides from the
    // prepared state: let it finish, then judge the submit on what it left.
    co_await WaitWhilePrepared(shard, req.proposed.global.gid);
    Result<ActivePtr> started = co_await SubmitLocked(shard, req, elsewhere);
    if (!started.ok()) co_return started.status();
    active = std::move(*started);
  }
  if (req.wait_result && elsewhere) {
    co_return co_await WaitStored(req.proposed.global.gid, WaitFor::kSubmit);
  }
  // No round to wait for: a msg with a delay starts when the recovery loop finds it due.
  if (!req.wait_result || !active) co_return Status::Ok();
  Status waited = co_await WaitRound(active, WaitDeadline(*active), WaitFor::kSubmit);
  if (active->keys_parked && active->outcome.ok()) {
    // It waits for its business keys: answer when it has run (or its wait ends).
    // (req.proposed was moved into the round: its gid is the round's.)
    std::string gid = active->snap.global.gid;
    co_return co_await WaitKeyed(shard, std::move(gid), WaitFor::kSubmit, KeyWaitDeadline(*active));
  }
  co_return waited;
}

awaitable<Result<Engine::ActivePtr>> Engine::SubmitLocked(Shard& shard, SubmitRequest& req,
                                                          bool& elsewhere) {
  const std::string& gid = req.proposed.global.gid;
  const core::TransType type = req.proposed.global.trans_type;
  if (auto it = shard.active.find(gid); it != shard.active.end()) {
    // What the store holds: the round's snapshot may be ahead of it.
    const core::GlobalStatus s = it->second->stored_status;
    if (s != core::GlobalStatus::kSubmitted) co_return refusal::WrongStatus("submit", s, type);
    co_return it->second;
  }
  // A saga submit almost always names a new gid: try to create it first, and read what is stored
  // only when the gid exists (a re-submit). This saves a store read per saga; the refused insert
  // of a re-submit costs one savepoint in a group commit.
  if (type == core::TransType::kSaga) {
    RoundSlot slot(*this);
    if (slot.held()) {
      core::KeySpec keys;
      InitNew(req.proposed, core::GlobalStatus::kSubmitted, clock_.NowMs(), &keys);
      Result<bool> created = co_await CreateTakingKeys(req.proposed);
      if (created.ok()) {
        if (!*created && !keys.keys.empty()) NoteKeyWaiters();
        KnownKeys known{std::move(keys), *created};
        co_return StartRound(shard, std::move(req.proposed), std::move(known));
      }
      if (created.status().code() != Code::kAlreadyExists) co_return created.status();
    }
  }
  Loaded loaded = co_await LoadOnShard(gid);
  if (!loaded.ok()) co_return loaded.status();
  if (!loaded->has_value()) co_return co_await SubmitNew(shard, req);
  co_return co_await SubmitStored(shard, req, std::move(**loaded), elsewhere);
}

awaitable<Result<Engine::ActivePtr>> Engine::SubmitStored(Shard& shard, SubmitRequest& req,
                                                          core::TransSnapshot stored,
                                                          bool& elsewhere) {
  const core::TransType type = req.proposed.global.trans_type;
  const core::GlobalTrans& g = stored.global;
  if (g.trans_type != type) co_return refusal::WrongType(g.gid, g.trans_type, type);
  if (g.status == core::GlobalStatus::kPrepared && type != core::TransType::kSaga) {
    co_return co_await SubmitPrepared(shard, req, std::move(stored));
  }
  if (g.status == core::GlobalStatus::kSubmitted) {
    // Re-submit: resume from the stored state (§5 #15) — unless another coordinator holds a lease
    // on it: then its owner (or recovery, once it is due) drives it.
    if (!co_await ClaimForResume(stored)) {
      elsewhere = true;
      co_return ActivePtr();
    }
    co_return StartRound(shard, std::move(stored));
  }
  co_return refusal::WrongStatus("submit", g.status, g.trans_type);
}

// prepared -> submitted; options present in the submit body override the stored ones.
awaitable<Result<Engine::ActivePtr>> Engine::SubmitPrepared(Shard& shard, SubmitRequest& req,
                                                            core::TransSnapshot stored) {
  if (Status held = co_await CheckKeysHeldForSubmit(stored); !held.ok()) co_return held;
  const int64_t now = clock_.NowMs();
  core::TransUpdate u;
  u.gid = stored.global.gid;
  u.expected_status = core::GlobalStatus::kPrepared;
  u.new_status = core::GlobalStatus::kSubmitted;
  u.update_time_ms = now;
  u.owner = options_.owner;  // this coordinator runs the round (fences an older owner)
  core::TransOptions options = stored.global.options;
  if (!req.patch.empty()) {
    req.patch.ApplyTo(options);
    u.options = options;
  }
  const int64_t i0 = core::InitialIntervalMs(options, options_.settings);
  u.next_cron_interval_ms = i0;
  u.next_cron_time_ms = now + i0;
  int64_t delay_ms = 0;
  if (stored.global.trans_type == core::TransType::kMsg) {
    if (!req.custom_data.empty()) u.custom_data = req.custom_data;
    // The business keys given at prepare stay (their rows hold the msg's place in the queue).
    Result<core::KeySpec> stored_keys = core::ParseKeySpec(stored.global.custom_data);
    Result<core::KeySpec> new_keys =
        core::ParseKeySpec(u.custom_data ? *u.custom_data : std::string());
    if (new_keys.ok() && !new_keys->keys.empty() &&
        (!stored_keys.ok() || new_keys->keys != stored_keys->keys)) {
      co_return Status::InvalidArgument(
          "business_keys of a msg are given at prepare (they hold its place in the queue); the "
          "submit may not change them");
    }
    if (u.custom_data && stored_keys.ok() && !stored_keys->keys.empty()) {
      if (new_keys.ok() && new_keys->keys.empty()) {
        Result<std::string> merged = core::WithKeySpec(*u.custom_data, *stored_keys);
        if (!merged.ok()) co_return merged.status();
        u.custom_data = std::move(*merged);
      }
    }
    delay_ms = MsgDelayMs(u.custom_data ? *u.custom_data : stored.global.custom_data);
    if (delay_ms > 0) u.next_cron_time_ms = now + delay_ms;
  }
  u.lease_until_ms = u.next_cron_time_ms;  // this coordinator's round holds it until then
  const core::TransUpdate applied = u;
  Status st = co_await Transition(std::move(u));
  if (!st.ok()) co_return st;
  if (delay_ms > 0) co_return ActivePtr();  // the recovery loop starts it when due
  const core::TransType type = stored.global.trans_type;
  if (type == core::TransType::kTcc || type == core::TransType::kXa) {
    co_await ReloadBranches(stored);  // rows registered on another coordinator since the load
  }
  core::GlobalTrans& g = stored.global;
  g.status = core::GlobalStatus::kSubmitted;
  g.owner = options_.owner;
  g.options = options;
  if (applied.custom_data) g.custom_data = *applied.custom_data;
  g.next_cron_interval_ms = *applied.next_cron_interval_ms;
  g.next_cron_time_ms = *applied.next_cron_time_ms;
  g.lease_until_ms = *applied.lease_until_ms;
  co_return StartRound(shard, std::move(stored));
}

// An unknown gid: a saga or a plain msg is created as submitted; a tcc/xa must be prepared first.
awaitable<Result<Engine::ActivePtr>> Engine::SubmitNew(Shard& shard, SubmitRequest& req) {
  const core::TransType type = req.proposed.global.trans_type;
  if (type != core::TransType::kSaga && type != core::TransType::kMsg) {
    co_return refusal::NotPrepared(req.proposed.global.gid);
  }
  RoundSlot slot(*this);
  if (!slot.held()) {
    co_return Status::Unavailable(
        fmt::format("too many transactions in flight (limit {}); retry later",
                    options_.max_active_transactions));
  }
  const int64_t now = clock_.NowMs();
  InitNew(req.proposed, core::GlobalStatus::kSubmitted, now);
  const int64_t delay_ms =
      type == core::TransType::kMsg ? MsgDelayMs(req.proposed.global.custom_data) : 0;
  if (delay_ms > 0) {
    req.proposed.global.next_cron_time_ms = now + delay_ms;
    req.proposed.global.lease_until_ms = 0;  // no round starts now: recovery starts it when due
  }
  Status created = co_await Create(req.proposed);
  if (created.code() == Code::kAlreadyExists) {
    co_return Status::Unavailable("a concurrent request created this gid; retry");
  }
  if (!created.ok()) co_return created;
  if (delay_ms > 0) co_return ActivePtr();
  co_return StartRound(shard, std::move(req.proposed));
}

}  // namespace dtx::engine
