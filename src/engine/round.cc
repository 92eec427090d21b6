// The processing round (docs/ARCHITECTURE.md "A processing round"): core::Step decides, the round
// writes the decision's update as core::PlanWrite says (hold a success, flush, carry the lease),
// makes the calls the decision orders, and feeds their results back until the round is over. Also
// WaitRound: a wait_result request waiting for a round's end.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>

#include "core/write_plan.h"
#include "engine/engine_internal.h"
#include "engine/refusal.h"
#include "util/assert.h"
#include "util/mutation.h"

namespace dtx::engine {

using asio::awaitable;

awaitable<void> Engine::RunRound(Shard* shard, ActivePtr a) {
  // The round's snapshot is the stored state when it starts (loaded, or just committed).
  a->stored_wakeup_ms = a->snap.global.next_cron_time_ms;
  a->stored_lease_ms = a->snap.global.lease_until_ms;
  // Business keys: a transaction that waits for its keys makes no call (business_keys.cc).
  if (HasKeys(*a) && !co_await KeysGate(*a)) {
    FinishRound(shard, a);
    co_return;
  }
  core::Decision d =
      core::Step(a->snap, a->round, core::Event{}, options_.settings, clock_.NowMs());
  for (;;) {
    Status st = co_await WriteStep(*a, d);
    if (!st.ok()) {
      // A lost compare-and-set (an operator changed the state) or a store failure: abandon the
      // round; the stored state is the truth and a later round resumes from it.
      if (st.code() != Code::kConflict) {
        spdlog::error("gid {}: store update failed, round abandoned: {}", a->snap.global.gid,
                      st.ToString());
      }
      a->outcome = st;
      break;
    }
    if (a->restart) {
      // tcc/xa left prepared: start over from the store, which now holds every registered row.
      a->outcome = Status::Unavailable("left prepared: the round restarts from the store");
      break;
    }
    if (Status lease = co_await RecheckLease(*a, d); !lease.ok()) {
      a->outcome = lease;
      break;
    }
    StartCalls(shard, a, d.calls);
    if (d.round_over || stopped_) break;
    core::Event ev = co_await NextEvent(*a);
    if (ev.result != core::CallClass::kSuccess) {
      a->last_error_class = ev.result;
      a->last_error_text = ev.answer;
    }
    d = core::Step(a->snap, a->round, ev, options_.settings, clock_.NowMs());
  }
  // Calls still in flight after an abandoned round must come back before another round may start
  // for this gid: no compensation may overlap its own action (§1.6).
  while (a->outstanding_calls > 0 && !stopped_) co_await NextEvent(*a);
  FinishRound(shard, a);
}

awaitable<Status> Engine::WriteStep(Active& a, core::Decision& d) {
  if (!d.calls.empty()) a.lease_needed_ms = std::max(a.lease_needed_ms, LeaseUntil(a.snap));
  const bool in_flight = !d.calls.empty() || a.outstanding_calls > 0;
  core::WriteContext ctx;
  ctx.gid = a.snap.global.gid;
  ctx.status = a.snap.global.status;
  ctx.stored_wakeup_ms = a.stored_wakeup_ms;
  ctx.stored_lease_ms = a.stored_lease_ms;
  ctx.lease_needed_ms = in_flight ? a.lease_needed_ms : 0;
  ctx.round_over = d.round_over;
  ctx.stopping = stopped_;
  ctx.now_ms = clock_.NowMs();
  core::WritePlan plan = core::PlanWrite(std::move(d.update), std::move(a.held), ctx);
  d.update.reset();
  a.held = std::move(plan.held);
  if (plan.lease_ms) {
    a.snap.global.lease_until_ms = *plan.lease_ms;
    if (plan.write && plan.write->next_cron_time_ms == plan.lease_ms) {
      a.snap.global.next_cron_time_ms = *plan.lease_ms;
    }
  }
  if (!plan.write) co_return Status::Ok();
  if (d.round_over && DTX_MUTANT(kAckBeforeCommit)) {  // broken on purpose: not awaited
    if (plan.write->new_status) a.stored_status = *plan.write->new_status;  // "as if committed"
    store_.Update(std::move(*plan.write), [](Status) {});
    co_return Status::Ok();
  }
  // Fencing: a coordinator whose lease another one took over (it was paused past it) cannot
  // write any more, so it abandons the round before it calls anyone.
  plan.write->expected_owner = options_.owner;
  const std::optional<int64_t> wakeup = plan.write->next_cron_time_ms;
  const std::optional<int64_t> lease = plan.write->lease_until_ms;
  const std::optional<core::GlobalStatus> new_status = plan.write->new_status;
  Status st = co_await Transition(std::move(*plan.write));
  if (!st.ok()) co_return st;
  if (wakeup) a.stored_wakeup_ms = *wakeup;
  if (lease) a.stored_lease_ms = *lease;
  if (new_status) {
    // tcc/xa: the decision that leaves prepared ended the round (core/tcc.cc): registerBranch on
    // another coordinator may have added rows after this round's snapshot was loaded.
    a.restart = a.stored_status == core::GlobalStatus::kPrepared && !core::IsFinal(*new_status) &&
                (a.snap.global.trans_type == core::TransType::kTcc ||
                 a.snap.global.trans_type == core::TransType::kXa);
    a.stored_status = *new_status;
    for (Timer* w : a.status_waiters) w->Cancel();
    if (a.snap.global.trans_type == core::TransType::kNotify) NotifyStatusCommitted(a, *new_status);
    if (core::IsFinal(*new_status) && a.keys && !a.keys->keys.empty()) WakeKeyWaitersSoon();
  }
  co_return st;
}

awaitable<Status> Engine::RecheckLease(Active& a, const core::Decision& d) {
  // Time passed while the write was in flight (a slow commit, a pause): the calls it orders start
  // only while the stored lease still covers their deadline; else it is extended (fenced) first.
  if (d.calls.empty() || LeaseCovers(a.snap, a.stored_lease_ms) ||
      DTX_MUTANT(kSkipLeaseExtension)) {
    co_return Status::Ok();
  }
  // A decision with no update whose calls are still to start: WriteStep (PlanWrite) extends the
  // lease to cover them, fenced like every write of the round.
  core::Decision lease_only;
  lease_only.calls = d.calls;
  Status st = co_await WriteStep(a, lease_only);
  if (st.ok() && !LeaseCovers(a.snap, a.stored_lease_ms)) {
    st = Status::Unavailable("the store is too slow to hold a lease; round abandoned");
  }
  co_return st;
}

void Engine::StartCalls(Shard* shard, const ActivePtr& a, const std::vector<size_t>& calls) {
  if (calls.empty()) return;
  const int64_t timeout_ms = core::RequestTimeoutMs(a->snap.global.options, options_.settings);
  // The lease rule: a call starts only once the stored wake-up lies beyond its deadline plus the
  // clock-skew margin (WriteStep raised lease_needed_ms to it when the decision was made).
  DTX_INVARIANT(a->stored_lease_ms >= a->lease_needed_ms || DTX_MUTANT(kSkipLeaseExtension),
                "no branch call without a stored lease that covers its deadline");
  for (size_t i : calls) {
    if (a->snap.global.trans_type == core::TransType::kNotify && i != core::kCheckBackIndex) {
      StartNotifyCall(shard, a);  // engine/notify.cc
      continue;
    }
    BranchCallSpec spec = i == core::kCheckBackIndex
                              ? BuildCheckBackCall(a->snap.global, timeout_ms)
                              : BuildBranchCall(a->snap.global, a->snap.branches[i], timeout_ms);
    a->outstanding_calls += 1;
    asio::co_spawn(shard->ioc, CallBranch(shard, a, i, std::move(spec)),
                   LogException{"branch call"});
  }
}

awaitable<core::Event> Engine::NextEvent(Active& a) {
  while (a.events.empty()) {
    ArmForever(a.signal);
    co_await a.signal.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  core::Event ev = std::move(a.events.front());
  a.events.pop_front();
  a.outstanding_calls -= 1;
  co_return ev;
}

void Engine::FinishRound(Shard* shard, const ActivePtr& a) {
  a->done = true;
  if (metrics_ && core::IsFinal(a->snap.global.status) && a->outcome.ok()) {
    double seconds = static_cast<double>(clock_.NowMs() - a->snap.global.create_time_ms) / 1000.0;
    metrics_->RecordTransaction(std::string(core::ToString(a->snap.global.trans_type)),
                                a->snap.global.status == core::GlobalStatus::kSucceed, seconds);
  }
  for (Timer* w : a->waiters) w->Cancel();
  a->waiters.clear();
  for (Timer* w : a->status_waiters) w->Cancel();
  EndRound(*shard, a);
  if (a->restart && !stopped_) {
    resuming_.fetch_add(1, std::memory_order_relaxed);
    asio::co_spawn(shard->ioc, ResumeOnShard(a->snap.global.gid), LogException{"resume"});
  }
}

awaitable<Status> Engine::WaitRound(ActivePtr a, int64_t deadline_ms, WaitFor what) {
  if (!a->done) {
    std::unique_ptr<Timer> timer = timers_->NewTimer(co_await asio::this_coro::executor);
    a->waiters.push_back(timer.get());
    co_await timer->WaitUntil(deadline_ms);
    std::erase(a->waiters, timer.get());
  }
  if (!a->done) co_return refusal::NotSucceeded();
  if (!a->outcome.ok() && a->outcome.code() != Code::kConflict) co_return a->outcome;
  const core::GlobalTrans& g = a->snap.global;
  const core::GlobalStatus wanted =
      what == WaitFor::kSubmit ? core::GlobalStatus::kSucceed : core::GlobalStatus::kFailed;
  // What the store holds, not the snapshot: a round whose write was refused (another coordinator
  // took the transaction over) has a snapshot ahead of the store (dtx-sim seeds 40327, 52912).
  if (a->stored_status == wanted) co_return Status::Ok();
  // tcc/xa/msg report the answer that stopped the round (§1.5); a saga reports its reason.
  if (g.trans_type != core::TransType::kSaga && a->last_error_class) {
    switch (*a->last_error_class) {
      case core::CallClass::kOngoing:
        if (g.trans_type != core::TransType::kMsg) co_return Status::Ongoing(a->last_error_text);
        break;
      case core::CallClass::kFailure:
        co_return Status::Conflict(a->last_error_text);
      case core::CallClass::kError:
        co_return Status::Internal(a->last_error_text);
      case core::CallClass::kSuccess:
        break;
    }
  }
  if (what == WaitFor::kSubmit && !g.rollback_reason.empty()) {
    co_return Status::Conflict(g.rollback_reason);
  }
  co_return refusal::NotSucceeded();
}

Status Engine::FinalWaitAnswer(const core::GlobalTrans& g, WaitFor what) {
  const core::GlobalStatus wanted =
      what == WaitFor::kSubmit ? core::GlobalStatus::kSucceed : core::GlobalStatus::kFailed;
  if (g.status == wanted) return Status::Ok();
  if (what == WaitFor::kSubmit && !g.rollback_reason.empty()) {
    return Status::Conflict(g.rollback_reason);
  }
  return refusal::NotSucceeded();
}

awaitable<Status> Engine::WaitStored(std::string gid, WaitFor what) {
  // Another coordinator drives the transaction: follow the store until it is final or the
  // wait_result deadline passes.
  const int64_t deadline =
      clock_.NowMs() + options_.settings.request_timeout_ms + kWaitResultSlackMs;
  std::unique_ptr<Timer> timer = timers_->NewTimer(co_await asio::this_coro::executor);
  for (;;) {
    Loaded loaded = co_await LoadOnShard(gid);
    if (!loaded.ok()) co_return loaded.status();
    if (!loaded->has_value()) co_return refusal::NotSucceeded();
    const core::GlobalTrans& g = (*loaded)->global;
    if (core::IsFinal(g.status)) co_return FinalWaitAnswer(g, what);
    if (clock_.NowMs() >= deadline) co_return refusal::NotSucceeded();
    co_await timer->WaitUntil(std::min(deadline, clock_.NowMs() + 100));
  }
}

}  // namespace dtx::engine
