// Operator actions (issue 13; the admin API is src/ops/admin.h): retry, stop, abort, skip. Each
// runs on the gid's shard under its lock and is one compare-and-set on the status it read (or on
// the status the operator saw, `expect_status`), so two operators acting at once cannot both win.
//
// None of them cuts a lease short: they change next_cron_time, never lease_until, and recovery
// claims a transaction only once both have passed (core::GlobalTrans::lease_until_ms). A round in
// flight on another coordinator finishes its calls first; stop, abort and skip also fence it (its
// next write is refused: status or owner changed), so it abandons the round.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>

#include "core/retry_policy.h"
#include "engine/engine_internal.h"
#include "engine/refusal.h"

namespace dtx::engine {

using asio::awaitable;

std::string_view ToString(Engine::OperatorAction a) {
  switch (a) {
    case Engine::OperatorAction::kRetry:
      return "retry";
    case Engine::OperatorAction::kStop:
      return "stop";
    case Engine::OperatorAction::kAbort:
      return "abort";
    case Engine::OperatorAction::kSkip:
      return "skip";
  }
  return "unknown";
}

awaitable<Result<Engine::OperatorOutcome>> Engine::Operate(OperatorRequest request) {
  Shard& shard = ShardFor(request.gid);
  std::optional<Result<OperatorOutcome>> out =
      co_await asio::co_spawn(shard.ioc, OperateOnShard(std::move(request)), OnShardToken());
  co_return std::move(*out);
}

namespace {

// The update an action writes, or why it is refused. `snap` is the stored transaction (not
// final). `fence`: a round may be in flight (here or on another coordinator): an action that
// changes what it would do takes the owner away from it, so its next write is refused.
Result<core::TransUpdate> PlanOperatorUpdate(const Engine::OperatorRequest& r,
                                             const core::TransSnapshot& snap,
                                             const core::Settings& settings, int64_t now,
                                             bool fence) {
  const core::GlobalTrans& g = snap.global;
  const std::string_view op = ToString(r.action);
  if (g.trans_type == core::TransType::kNotify) {
    return Status::Conflict(
        "a notification is resent or aborted through /api/dtx/notify/, not by "
        "an operator action on its transaction");
  }
  core::TransUpdate u;
  u.gid = g.gid;
  u.expected_status = g.status;
  u.update_time_ms = now;
  // Due now, with the backoff started over; recovery claims it once no lease is held on it.
  u.next_cron_time_ms = now;
  u.next_cron_interval_ms = core::InitialIntervalMs(g.options, settings);
  switch (r.action) {
    case Engine::OperatorAction::kRetry:
      break;
    case Engine::OperatorAction::kStop:
      u.new_status = core::GlobalStatus::kFailed;
      u.finish_time_ms = now;
      u.rollback_reason = fmt::format("stopped by operator: {}", r.reason);
      u.next_cron_time_ms.reset();
      u.next_cron_interval_ms.reset();
      break;
    case Engine::OperatorAction::kAbort: {
      // Force-compensate: a saga's compensations, a tcc's cancels, an xa's rollbacks run. A msg
      // has nothing to compensate; a tcc/xa past prepared is committing and cannot turn back.
      const bool saga =
          g.trans_type == core::TransType::kSaga && g.status == core::GlobalStatus::kSubmitted;
      const bool tcc =
          (g.trans_type == core::TransType::kTcc || g.trans_type == core::TransType::kXa) &&
          g.status == core::GlobalStatus::kPrepared;
      if (!saga && !tcc) return refusal::WrongStatus(op, g.status, g.trans_type);
      u.new_status = core::GlobalStatus::kAborting;
      u.rollback_time_ms = now;
      u.rollback_reason = fmt::format("aborted by operator: {}", r.reason);
      if (fence) u.owner = std::string();  // whoever claims it next owns it
      break;
    }
    case Engine::OperatorAction::kSkip: {
      const core::BranchRow* row = nullptr;
      for (const auto& b : snap.branches) {
        if (b.branch_id == r.branch_id && b.op == r.op) row = &b;
      }
      if (row == nullptr) {
        return Status::NotFound(
            fmt::format("transaction {} has no branch {} op {}", g.gid, r.branch_id, r.op));
      }
      if (row->status != core::BranchStatus::kPrepared) {
        return Status::Conflict(fmt::format("branch {} op {} is already {}", r.branch_id, r.op,
                                            core::ToString(row->status)));
      }
      core::TransUpdate::BranchUpdate b;
      b.branch_id = r.branch_id;
      b.op = r.op;
      b.status = core::BranchStatus::kSucceed;
      b.finish_time_ms = now;
      b.last_error = fmt::format("skipped by operator: {}", r.reason);
      u.branches.push_back(std::move(b));
      if (fence) u.owner = std::string();  // a round in flight still counts on calling it
      break;
    }
  }
  return u;
}

}  // namespace

awaitable<std::optional<Result<Engine::OperatorOutcome>>> Engine::OperateOnShard(
    OperatorRequest r) {
  if (stopped_) co_return Status::Unavailable("the server is shutting down");
  Shard& shard = ShardFor(r.gid);
  GidGuard guard = co_await LockGid(shard, r.gid);
  Loaded loaded = co_await LoadOnShard(r.gid);
  if (!loaded.ok()) co_return loaded.status();
  if (!loaded->has_value()) {
    co_return Status::NotFound(fmt::format("no transaction with gid '{}'", r.gid));
  }
  core::TransSnapshot snap = std::move(**loaded);
  const core::GlobalTrans& g = snap.global;
  if (r.expect_status && *r.expect_status != g.status) {
    co_return Status::Conflict(fmt::format("the transaction is {}, not {} as expected",
                                           core::ToString(g.status),
                                           core::ToString(*r.expect_status)));
  }
  if (core::IsFinal(g.status))
    co_return refusal::WrongStatus(ToString(r.action), g.status, g.trans_type);
  const int64_t now = clock_.NowMs();
  // Ours with no round here: nothing of it is in flight anywhere (another coordinator would have
  // taken the ownership to call), so it is not fenced and is resumed here at once below.
  const bool idle_here = g.owner == options_.owner && !shard.active.contains(r.gid);
  Result<core::TransUpdate> planned =
      PlanOperatorUpdate(r, snap, options_.settings, now, /*fence=*/!idle_here);
  if (!planned.ok()) co_return planned.status();
  OperatorOutcome out{g.status, planned->new_status.value_or(g.status)};
  Status st = co_await Transition(std::move(*planned));
  if (!st.ok()) co_return st;
  spdlog::warn("gid {}: operator {} ({} -> {})", r.gid, ToString(r.action),
               core::ToString(out.before), core::ToString(out.after));
  if (core::IsFinal(out.after) || shard.active.contains(r.gid)) co_return out;
  // Nothing of it runs here: take it now when no lease is held on it (ours, or due), else
  // recovery claims it once the lease has passed.
  Loaded fresh = co_await LoadOnShard(r.gid);
  if (!fresh.ok() || !fresh->has_value()) co_return out;
  core::TransSnapshot now_snap = std::move(**fresh);
  if (core::IsFinal(now_snap.global.status)) co_return out;
  if (co_await ClaimForResume(now_snap)) StartRound(shard, std::move(now_snap));
  co_return out;
}

}  // namespace dtx::engine
