// The API transitions other than submit (PROTOCOL.md §1.12): prepare, abort, registerBranch,
// forceStop, the operator's resets, and the reads (query, all). Each runs on the gid's shard; those
// that change a transaction hold its lock (GidGuard).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>

#include "engine/engine_internal.h"
#include "engine/refusal.h"
#include "engine/store_await.h"

namespace dtx::engine {

using asio::awaitable;

awaitable<Status> Engine::Prepare(core::TransSnapshot proposed) {
  if (proposed.global.trans_type == core::TransType::kSaga) {
    co_return Status::InvalidArgument("prepare is not allowed for a saga; submit it");
  }
  if (proposed.global.trans_type == core::TransType::kWorkflow) {
    co_return Status::Unimplemented("workflow is not supported yet");
  }
  Shard& shard = ShardFor(proposed.global.gid);
  co_return co_await asio::co_spawn(shard.ioc, PrepareOnShard(std::move(proposed)), OnShardToken());
}

awaitable<Status> Engine::PrepareOnShard(core::TransSnapshot proposed) {
  if (stopped_) co_return Status::Unavailable("the server is shutting down");
  Shard& shard = ShardFor(proposed.global.gid);
  const std::string gid = proposed.global.gid;
  const core::TransType type = proposed.global.trans_type;
  bool keyed = false;  // a tcc/xa with business keys: it waits for them (keys_prepare.cc)
  {
    GidGuard guard = co_await LockGid(shard, gid);
    Loaded loaded = co_await LoadOnShard(gid);
    if (!loaded.ok()) co_return loaded.status();
    if (loaded->has_value()) {
      const core::GlobalTrans& g = (*loaded)->global;
      if (g.trans_type != type) co_return refusal::WrongType(gid, g.trans_type, type);
      if (g.status != core::GlobalStatus::kPrepared) {
        co_return refusal::WrongStatus("prepare", g.status, g.trans_type);
      }
      keyed = g.custom_data.find("\"business_keys\"") != std::string::npos;
    } else {
      InitNew(proposed, core::GlobalStatus::kPrepared, clock_.NowMs());
      Status created = co_await Create(proposed);
      if (!created.ok() && created.code() != Code::kAlreadyExists) co_return created;
      // Created (or by a concurrent prepare): its key rows hold its place in the queues.
      keyed = !proposed.business_keys.empty();
      if (keyed) NoteKeyWaiters();
    }
  }
  if (!keyed || (type != core::TransType::kTcc && type != core::TransType::kXa)) {
    co_return Status::Ok();
  }
  // While it waits, a registerBranch of gid here is checked (CheckKeysHeldForRegister).
  ++shard.key_prepares[gid];
  Status waited = co_await PrepareKeyWait(shard, gid);
  if (--shard.key_prepares[gid] <= 0) shard.key_prepares.erase(gid);
  co_return waited;
}

awaitable<Status> Engine::Abort(std::string gid, std::optional<bool> wait_result,
                                std::string rollback_reason, core::OptionsPatch patch) {
  Shard& shard = ShardFor(gid);
  co_return co_await asio::co_spawn(
      shard.ioc,
      AbortOnShard(std::move(gid), wait_result, std::move(rollback_reason), std::move(patch)),
      OnShardToken());
}

awaitable<Status> Engine::AbortOnShard(std::string gid, std::optional<bool> wait_result,
                                       std::string rollback_reason, core::OptionsPatch patch) {
  if (stopped_) co_return Status::Unavailable("the server is shutting down");
  Shard& shard = ShardFor(gid);
  ActivePtr active;
  bool wait = false;
  {
    GidGuard guard = co_await LockGid(shard, gid);
    co_await WaitWhilePrepared(shard, gid);
    Loaded loaded = co_await LoadOnShard(gid);
    if (!loaded.ok()) co_return loaded.status();
    if (!loaded->has_value()) {
      co_return Status::NotFound(fmt::format("no transaction with gid '{}'", gid));
    }
    const core::GlobalTrans& g = (*loaded)->global;
    wait = wait_result.value_or(g.options.wait_result);
    if (g.trans_type == core::TransType::kMsg && g.status == core::GlobalStatus::kPrepared) {
      // A prepared msg fails at once: nothing of it has run.
      const int64_t now = clock_.NowMs();
      core::TransUpdate u;
      u.gid = gid;
      u.expected_status = core::GlobalStatus::kPrepared;
      u.new_status = core::GlobalStatus::kFailed;
      u.finish_time_ms = now;
      u.rollback_time_ms = now;
      u.update_time_ms = now;
      if (!rollback_reason.empty()) u.rollback_reason = rollback_reason;
      co_return co_await Transition(std::move(u));
    }
    if (g.trans_type != core::TransType::kTcc && g.trans_type != core::TransType::kXa) {
      co_return refusal::WrongStatus("abort", g.status, g.trans_type);
    }
    Result<ActivePtr> started =
        co_await AbortTccXa(shard, std::move(**loaded), rollback_reason, patch);
    if (!started.ok()) co_return started.status();
    active = std::move(*started);
  }
  if (!wait) co_return Status::Ok();
  if (!active) co_return co_await WaitStored(gid, WaitFor::kAbort);
  co_return co_await WaitRound(active, WaitDeadline(*active), WaitFor::kAbort);
}

// tcc/xa: prepared -> aborting (the cancel/rollback round starts); aborting -> its round is
// resumed.
awaitable<Result<Engine::ActivePtr>> Engine::AbortTccXa(Shard& shard, core::TransSnapshot stored,
                                                        const std::string& rollback_reason,
                                                        const core::OptionsPatch& patch) {
  const core::GlobalTrans& g = stored.global;
  if (g.status == core::GlobalStatus::kAborting) {
    if (auto it = shard.active.find(g.gid); it != shard.active.end()) co_return it->second;
    if (!co_await ClaimForResume(stored)) co_return ActivePtr();  // another coordinator drives it
    co_return StartRound(shard, std::move(stored));
  }
  if (g.status != core::GlobalStatus::kPrepared) {
    co_return refusal::WrongStatus("abort", g.status, g.trans_type);
  }
  const int64_t now = clock_.NowMs();
  core::TransUpdate u;
  u.gid = g.gid;
  u.expected_status = core::GlobalStatus::kPrepared;
  u.new_status = core::GlobalStatus::kAborting;
  u.rollback_time_ms = now;
  u.update_time_ms = now;
  u.owner = options_.owner;  // this coordinator runs the round (fences an older owner)
  if (!rollback_reason.empty()) u.rollback_reason = rollback_reason;
  core::TransOptions options = g.options;
  if (!patch.empty()) {
    patch.ApplyTo(options);
    u.options = options;
  }
  Status st = co_await Transition(u);
  if (!st.ok()) co_return st;
  core::TransSnapshot snap = std::move(stored);
  co_await ReloadBranches(snap);  // rows registered on another coordinator since the load
  snap.global.status = core::GlobalStatus::kAborting;
  snap.global.owner = options_.owner;
  snap.global.options = options;
  snap.global.rollback_time_ms = now;
  if (u.rollback_reason) snap.global.rollback_reason = *u.rollback_reason;
  co_return StartRound(shard, std::move(snap));
}

awaitable<Status> Engine::RegisterBranch(std::string gid, core::TransType type,
                                         std::vector<core::BranchRow> rows) {
  Shard& shard = ShardFor(gid);
  co_return co_await asio::co_spawn(
      shard.ioc, RegisterBranchOnShard(std::move(gid), type, std::move(rows)), OnShardToken());
}

awaitable<Status> Engine::RegisterBranchOnShard(std::string gid, core::TransType type,
                                                std::vector<core::BranchRow> rows) {
  if (stopped_) co_return Status::Unavailable("the server is shutting down");
  Shard& shard = ShardFor(gid);
  GidGuard guard = co_await LockGid(shard, gid);
  // A round in progress (a timeout check) must end first, or it could finish from a snapshot that
  // misses these rows.
  while (true) {
    auto it = shard.active.find(gid);
    if (it == shard.active.end()) break;
    co_await WaitRound(it->second, clock_.NowMs() + 60'000, WaitFor::kSubmit);
  }
  if (shard.key_prepares.count(gid) != 0) {
    if (Status held = co_await CheckKeysHeldForRegister(gid); !held.ok()) co_return held;
  }
  const int64_t now = clock_.NowMs();
  for (auto& r : rows) {
    r.gid = gid;
    r.create_time_ms = r.update_time_ms = now;
  }
  std::vector<core::BranchRow> to_insert = rows;
  Status st = co_await AwaitStore<Status>([&](auto cb) {
    store_.AddBranches(gid, core::GlobalStatus::kPrepared, std::move(to_insert), std::move(cb));
  });
  if (st.ok()) co_return st;
  if (st.code() == Code::kConflict || st.code() == Code::kNotFound) {
    co_return refusal::NotPrepared(gid);
  }
  if (st.code() != Code::kAlreadyExists) co_return st;
  co_return co_await CheckRegisteredRepeat(gid, type, rows);
}

awaitable<Status> Engine::CheckRegisteredRepeat(const std::string& gid, core::TransType type,
                                                const std::vector<core::BranchRow>& rows) {
  // Rows with these ids exist: an identical repeat is accepted (§5 #15), a different one is not.
  Loaded loaded = co_await LoadOnShard(gid);
  if (!loaded.ok()) co_return loaded.status();
  if (!loaded->has_value() || (*loaded)->global.trans_type != type) {
    co_return refusal::NotPrepared(gid);
  }
  for (const auto& r : rows) {
    bool same = false;
    for (const auto& b : (*loaded)->branches) {
      if (b.branch_id == r.branch_id && b.op == r.op) {
        same = b.url == r.url && b.bin_data == r.bin_data;
        break;
      }
    }
    if (!same) co_return refusal::BranchMismatch(gid, r.branch_id);
  }
  co_return Status::Ok();
}

awaitable<Status> Engine::ForceStop(std::string gid) {
  Shard& shard = ShardFor(gid);
  co_return co_await asio::co_spawn(shard.ioc, ForceStopOnShard(std::move(gid)), OnShardToken());
}

// Any unfinished status -> failed, by compare-and-set on the status just read (retried when it
// moved meanwhile). A round in progress loses its next compare-and-set and is abandoned.
awaitable<Status> Engine::ForceStopOnShard(std::string gid) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    Loaded loaded = co_await LoadOnShard(gid);
    if (!loaded.ok()) co_return loaded.status();
    if (!loaded->has_value()) {
      co_return Status::NotFound(fmt::format("no transaction with gid '{}'", gid));
    }
    const core::GlobalTrans& g = (*loaded)->global;
    if (core::IsFinal(g.status)) co_return refusal::AlreadyFinal(g.status);
    const int64_t now = clock_.NowMs();
    core::TransUpdate u;
    u.gid = gid;
    u.expected_status = g.status;
    u.new_status = core::GlobalStatus::kFailed;
    u.finish_time_ms = now;
    u.update_time_ms = now;
    if (g.rollback_reason.empty()) u.rollback_reason = "force stopped by operator";
    Status st = co_await Transition(std::move(u));
    if (st.code() == Code::kConflict) continue;  // the status moved meanwhile: look again
    if (st.ok()) {
      spdlog::warn("gid {}: force stopped by operator (was {})", gid, core::ToString(g.status));
    }
    co_return st;
  }
  co_return Status::Unavailable("forceStop: the transaction keeps changing; retry");
}

awaitable<Status> Engine::ResetNextCronTime(std::string gid) {
  int64_t now = clock_.NowMs();
  co_return co_await AwaitStore<Status>(
      [&](auto cb) { store_.ResetNextCronTime(gid, now, std::move(cb)); });
}

awaitable<Result<int64_t>> Engine::ResetCronTime(int64_t timeout_ms, int limit) {
  int64_t now = clock_.NowMs();
  co_return co_await AwaitStore<Result<int64_t>>(
      [&](auto cb) { store_.ResetCronTime(now, timeout_ms, limit, std::move(cb)); });
}

awaitable<Result<std::optional<core::TransSnapshot>>> Engine::Query(std::string gid) {
  co_return co_await AwaitStore<Loaded>([&](auto cb) { store_.Load(gid, std::move(cb)); });
}

awaitable<Result<store::ListPage>> Engine::List(store::ListQuery query) {
  co_return co_await AwaitStore<Result<store::ListPage>>(
      [&](auto cb) { store_.List(std::move(query), std::move(cb)); });
}

}  // namespace dtx::engine
