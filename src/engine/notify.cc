// Notifications (docs/notifications.md): create (idempotent by id), submit/abort of a two-phase
// one, resend; the attempt call (custom headers, Standard Webhooks signature, its own timeout) and
// its classification by the notification's success rule; the notify_failed alert. The decisions
// are core/notify.cc's; the rounds, leases and recovery are the engine's, as for any transaction.
#include "engine/notify.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/algorithm/string/predicate.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/json.hpp>

#include "core/notify.h"
#include "engine/engine_internal.h"
#include "engine/refusal.h"
#include "engine/store_await.h"
#include "ops/alerts.h"
#include "util/assert.h"
#include "util/webhook.h"

namespace dtx::engine {

using asio::awaitable;

namespace {

// The notification a load found: kNotFound when there is none (or the gid is another kind of
// transaction), the load's error as is.
Result<core::TransSnapshot> NotificationOf(Result<std::optional<core::TransSnapshot>> loaded,
                                           std::string_view id) {
  if (!loaded.ok()) return loaded.status();
  if (!loaded->has_value() || (*loaded)->global.trans_type != core::TransType::kNotify) {
    return Status::NotFound(fmt::format("no notification with id '{}'", id));
  }
  return std::move(**loaded);
}

}  // namespace

BranchCallSpec BuildNotifyCall(const core::TransSnapshot& snap, const core::NotifyState& state,
                               int64_t now_ms) {
  const core::GlobalTrans& g = snap.global;
  const core::BranchRow& row = snap.branches.front();
  BranchCallSpec spec;
  spec.method = "POST";
  spec.url = row.url;
  spec.body = row.bin_data;
  spec.timeout_ms = state.timeout_ms;
  bool has_content_type = false;
  for (const auto& [k, v] : g.options.branch_headers) {
    has_content_type = has_content_type || boost::iequals(k, "content-type");
  }
  if (!has_content_type) spec.headers.emplace_back("Content-Type", "application/json");
  for (const auto& h : g.options.branch_headers) spec.headers.push_back(h);
  if (!state.secret.empty()) {
    const int64_t ts = now_ms / 1000;
    std::optional<std::string> sig = util::WebhookSignature(state.secret, g.gid, ts, row.bin_data);
    spec.headers.emplace_back("webhook-id", g.gid);
    spec.headers.emplace_back("webhook-timestamp", std::to_string(ts));
    // Validated at creation; an unusable secret sends no signature, so the receiver rejects it.
    if (sig) spec.headers.emplace_back("webhook-signature", *sig);
  }
  return spec;
}

void Engine::StartNotifyCall(Shard* shard, const ActivePtr& a) {
  Result<core::NotifyState*> state = core::RoundNotifyState(a->round, a->snap.global.custom_data);
  DTX_INVARIANT(state.ok(), "the machine only calls a notification whose state it read");
  BranchCallSpec spec = BuildNotifyCall(a->snap, **state, clock_.NowMs());
  a->outstanding_calls += 1;
  asio::co_spawn(shard->ioc, CallNotify(shard, a, std::move(spec)), LogException{"notify call"});
}

awaitable<void> Engine::CallNotify(Shard* shard, ActivePtr a, BranchCallSpec spec) {
  const int64_t start_ms = clock_.NowMs();
  BranchAnswer answer = co_await MeteredCall(shard, std::move(spec));
  core::Event ev;
  ev.kind = core::Event::Kind::kResult;
  ev.branch_index = 0;
  ev.http_status = answer.http_status;
  ev.latency_ms = clock_.NowMs() - start_ms;
  Result<core::NotifyState*> state = core::RoundNotifyState(a->round, a->snap.global.custom_data);
  const bool ok =
      state.ok() && core::IsNotifySuccess((*state)->success, answer.http_status, answer.body);
  ev.result = ok ? core::CallClass::kSuccess : core::CallClass::kError;
  ev.answer = std::move(answer.body);
  RecordCallMetric(*a, ev);
  if (metrics_) metrics_->RecordNotification(ok ? "delivered" : "failed");
  a->events.push_back(std::move(ev));
  a->signal.cancel();
}

void Engine::NotifyStatusCommitted(const Active& a, core::GlobalStatus status) {
  const core::GlobalTrans& g = a.snap.global;
  if (status != core::GlobalStatus::kFailed || g.rollback_reason != core::kNotifyExhausted) return;
  if (metrics_) metrics_->RecordNotification("exhausted");
  spdlog::warn("notification {}: schedule exhausted, no success from {}", g.gid,
               a.snap.branches.front().url);
  if (options_.alert_webhook.empty()) return;
  const core::BranchRow& row = a.snap.branches.front();
  ops::AlertRequest alert =
      ops::BuildNotifyFailedAlert(options_.alert_webhook, options_.settings.request_timeout_ms,
                                  g.gid, row.url, row.attempts, row.last_error);
  BranchCallSpec spec;
  spec.method = "POST";
  spec.url = std::move(alert.url);
  spec.headers.emplace_back("Content-Type", "application/json");
  spec.timeout_ms = alert.timeout_ms;
  spec.body = std::move(alert.body);
  Shard& shard = ShardFor(g.gid);
  asio::co_spawn(shard.ioc, SendAlert(&shard, std::move(spec)), LogException{"alert"});
}

awaitable<Status> Engine::CreateNotify(core::TransSnapshot proposed, core::NotifyState state) {
  Shard& shard = ShardFor(proposed.global.gid);
  co_return co_await asio::co_spawn(
      shard.ioc, CreateNotifyOnShard(std::move(proposed), std::move(state)), OnShardToken());
}

awaitable<Status> Engine::CreateNotifyOnShard(core::TransSnapshot proposed,
                                              core::NotifyState state) {
  if (stopped_) co_return Status::Unavailable("the server is shutting down");
  Shard& shard = ShardFor(proposed.global.gid);
  const std::string id = proposed.global.gid;
  GidGuard guard = co_await LockGid(shard, id);
  DTX_INVARIANT(!state.schedule_ms.empty(), "a notification is created with its schedule");
  const int64_t now = clock_.NowMs();
  const core::GlobalStatus status = proposed.global.status;
  InitNew(proposed, status, now);
  RoundSlot slot(*this);  // without a place, the first attempt waits for recovery
  const bool now_due =
      status == core::GlobalStatus::kSubmitted && state.schedule_ms[0] == 0 && slot.held();
  if (status == core::GlobalStatus::kSubmitted) {
    state.cycle_start_ms = now;  // attempt 1 is due schedule[0] after creation
  }
  proposed.global.custom_data = core::EncodeNotifyState(state);
  if (status == core::GlobalStatus::kSubmitted) {
    // The wake-up is the first attempt; one made at once (by the round below) is covered by the
    // stored lease, so the round starts without another write. Recovery makes it if we die.
    proposed.global.next_cron_interval_ms = state.schedule_ms[0];
    proposed.global.next_cron_time_ms =
        now + (now_due ? state.timeout_ms + kLeaseMarginMs + 1000 : state.schedule_ms[0]);
    // The lease is the round's started here; without one, recovery claims it when due.
    proposed.global.lease_until_ms = now_due ? proposed.global.next_cron_time_ms : 0;
  }
  Status created = co_await Create(proposed);
  if (created.code() == Code::kAlreadyExists) {
    Loaded loaded = co_await LoadOnShard(id);
    if (!loaded.ok()) co_return loaded.status();
    if (!loaded->has_value()) co_return Status::Unavailable("a concurrent request; retry");
    const core::GlobalTrans& g = (*loaded)->global;
    Result<core::NotifyState> stored = g.trans_type == core::TransType::kNotify
                                           ? core::DecodeNotifyState(g.custom_data)
                                           : Result<core::NotifyState>(Status::NotFound("-"));
    if (stored.ok() && stored->request_hash == state.request_hash) co_return Status::Ok();
    co_return Status::Conflict(fmt::format(
        "a notification (or transaction) with id '{}' exists with a different body", id));
  }
  if (!created.ok()) co_return created;
  if (now_due) {
    std::string text = proposed.global.custom_data;
    ActivePtr a = StartRound(shard, std::move(proposed));
    // The round starts later (posted): it finds its state parsed already.
    core::CacheNotifyState(a->round, std::move(text), std::move(state));
  }
  co_return Status::Ok();
}

awaitable<Status> Engine::SubmitNotify(std::string id) {
  Loaded loaded = co_await Query(id);
  Result<core::TransSnapshot> snap = NotificationOf(std::move(loaded), id);
  if (!snap.ok()) co_return snap.status();
  const core::GlobalTrans& g = snap->global;
  if (g.status == core::GlobalStatus::kFailed && g.rollback_reason != core::kNotifyExhausted) {
    co_return Status::Conflict(fmt::format("notification '{}' was aborted", id));
  }
  // Submitted already (by the check-back, or a repeat): pending, delivered or failed since.
  if (g.status != core::GlobalStatus::kPrepared) co_return Status::Ok();
  SubmitRequest req;
  req.proposed.global.gid = id;
  req.proposed.global.trans_type = core::TransType::kNotify;
  co_return co_await Submit(std::move(req));
}

awaitable<Status> Engine::AbortNotify(std::string id) {
  Shard& shard = ShardFor(id);
  co_return co_await asio::co_spawn(shard.ioc, AbortNotifyOnShard(std::move(id)), OnShardToken());
}

awaitable<Status> Engine::AbortNotifyOnShard(std::string id) {
  if (stopped_) co_return Status::Unavailable("the server is shutting down");
  Shard& shard = ShardFor(id);
  GidGuard guard = co_await LockGid(shard, id);
  co_await WaitWhilePrepared(shard, id);  // a check-back in flight decides first
  Loaded loaded = co_await LoadOnShard(id);
  Result<core::TransSnapshot> snap = NotificationOf(std::move(loaded), id);
  if (!snap.ok()) co_return snap.status();
  const core::GlobalTrans& g = snap->global;
  if (g.status == core::GlobalStatus::kFailed && g.rollback_reason != core::kNotifyExhausted) {
    co_return Status::Ok();  // aborted already
  }
  if (g.status != core::GlobalStatus::kPrepared) {
    co_return Status::Conflict(fmt::format("notification '{}' is not prepared", id));
  }
  const int64_t now = clock_.NowMs();
  core::TransUpdate u;
  u.gid = id;
  u.expected_status = core::GlobalStatus::kPrepared;
  u.new_status = core::GlobalStatus::kFailed;
  u.rollback_reason = "aborted";
  u.finish_time_ms = now;
  u.rollback_time_ms = now;
  u.update_time_ms = now;
  co_return co_await Transition(std::move(u));
}

awaitable<Status> Engine::ResendNotify(std::string id) {
  Shard& shard = ShardFor(id);
  co_return co_await asio::co_spawn(shard.ioc, ResendNotifyOnShard(std::move(id)), OnShardToken());
}

awaitable<Status> Engine::ResendNotifyOnShard(std::string id) {
  if (stopped_) co_return Status::Unavailable("the server is shutting down");
  Shard& shard = ShardFor(id);
  GidGuard guard = co_await LockGid(shard, id);
  Loaded loaded = co_await LoadOnShard(id);
  Result<core::TransSnapshot> found = NotificationOf(std::move(loaded), id);
  if (!found.ok()) co_return found.status();
  core::TransSnapshot snap = std::move(*found);
  const core::GlobalTrans& g = snap.global;
  const bool resendable =
      g.status == core::GlobalStatus::kSucceed ||
      (g.status == core::GlobalStatus::kFailed && g.rollback_reason == core::kNotifyExhausted);
  if (!resendable || shard.active.contains(id)) {
    co_return Status::Conflict(
        fmt::format("notification '{}' is {}: only a delivered or failed one can be resent", id,
                    g.status == core::GlobalStatus::kFailed ? "aborted" : "pending"));
  }
  Result<core::NotifyState> state = core::DecodeNotifyState(g.custom_data);
  if (!state.ok()) co_return state.status();
  const int64_t now = clock_.NowMs();
  state->cycle_start_ms = now;
  state->cycle_attempts = 0;
  core::TransUpdate u;
  u.gid = id;
  u.expected_status = g.status;
  u.new_status = core::GlobalStatus::kSubmitted;
  u.custom_data = core::EncodeNotifyState(*state);
  u.rollback_reason = "";
  u.finish_time_ms = 0;
  u.next_cron_interval_ms = state->schedule_ms[0];
  u.next_cron_time_ms = now + state->timeout_ms + kLeaseMarginMs + 1000;
  u.lease_until_ms = u.next_cron_time_ms;  // the round started below holds it
  u.owner = options_.owner;
  u.update_time_ms = now;
  // The one move out of a final status (Engine::Transition refuses those): a resend restarts a
  // finished notification, whose row no round drives (no lease to fence).
  const core::TransUpdate applied = u;
  Status st =
      co_await AwaitStore<Status>([&](auto cb) { store_.Update(std::move(u), std::move(cb)); });
  if (!st.ok()) co_return st;
  snap.global.status = core::GlobalStatus::kSubmitted;
  snap.global.custom_data = *applied.custom_data;
  snap.global.rollback_reason.clear();
  snap.global.finish_time_ms = 0;
  snap.global.next_cron_interval_ms = *applied.next_cron_interval_ms;
  snap.global.next_cron_time_ms = *applied.next_cron_time_ms;
  snap.global.lease_until_ms = *applied.lease_until_ms;
  snap.global.owner = options_.owner;
  if (active_count_.load() < options_.max_active_transactions) {
    StartRound(shard, std::move(snap));
  }
  co_return Status::Ok();
}

}  // namespace dtx::engine
