#include "engine/engine.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <deque>
#include <functional>
#include <unordered_map>

#include "engine/store_await.h"

namespace dtx::engine {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;

namespace {

// Completion handler for detached coroutines: a coroutine that throws is a bug; log it loudly.
struct LogException {
  const char* what;
  void operator()(const std::exception_ptr& e) const {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("{}: unexpected exception: {}", what, ex.what());
    } catch (...) {
      spdlog::error("{}: unexpected exception", what);
    }
  }
};

using SteadyClock = std::chrono::steady_clock;

}  // namespace

std::string CannotSubmitMessage(core::GlobalStatus status) {
  return fmt::format("current status '{}', cannot sumbmit. FAILURE", core::ToString(status));
}

// One transaction being processed in memory (a round in progress). Lives on its shard's thread.
struct Engine::Active {
  explicit Active(asio::any_io_executor ex) : signal(ex) {}
  core::TransSnapshot snap;
  core::Round round;
  std::deque<core::Event> events;  // finished calls not yet fed to the state machine
  asio::steady_timer signal;       // cancelled to wake the round when an event arrives
  bool done = false;
  Status outcome;  // non-ok if the round was abandoned (store error, lost CAS)
  std::vector<asio::steady_timer*> waiters;  // wait_result requests
  SteadyClock::time_point started = SteadyClock::now();
};

struct Engine::Shard {
  explicit Shard(asio::io_context& c) : ioc(c) {}
  asio::io_context& ioc;
  std::unique_ptr<BranchCaller> caller;
  std::unordered_map<std::string, std::shared_ptr<Active>> active;
};

struct Engine::CronState {
  explicit CronState(asio::any_io_executor ex) : timer(ex) {}
  asio::steady_timer timer;
};

Engine::Engine(EngineOptions options, store::Store& store, http::IoPool& pool, Clock& clock,
               ops::Metrics* metrics, CallerFactory caller_factory)
    : options_(std::move(options)), store_(store), pool_(pool), clock_(clock), metrics_(metrics) {
  if (!caller_factory) caller_factory = NewHttpBranchCaller;
  for (size_t i = 0; i < pool_.size(); ++i) {
    auto shard = std::make_unique<Shard>(pool_.Get(i));
    shard->caller = caller_factory(shard->ioc.get_executor());
    shards_.push_back(std::move(shard));
  }
  cron_ = std::make_shared<CronState>(pool_.Get(0).get_executor());
  if (metrics_) {
    metrics_->AddGauge("dtx_active_transactions", "Transactions with a processing round in memory",
                       [this] { return static_cast<double>(active_transactions()); });
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
  asio::post(cron->timer.get_executor(), [cron] { cron->timer.cancel(); });
}

Engine::Shard& Engine::ShardFor(const std::string& gid) {
  return *shards_[std::hash<std::string>{}(gid) % shards_.size()];
}

awaitable<Status> Engine::Submit(core::TransSnapshot proposed, bool wait_result) {
  Shard& shard = ShardFor(proposed.global.gid);
  co_return co_await asio::co_spawn(shard.ioc, SubmitOnShard(std::move(proposed), wait_result),
                                    use_awaitable);
}

awaitable<Status> Engine::SubmitOnShard(core::TransSnapshot proposed, bool wait_result) {
  if (stopped_) co_return Status::Unavailable("the server is shutting down");
  Shard& shard = ShardFor(proposed.global.gid);
  const std::string gid = proposed.global.gid;
  std::shared_ptr<Active> active;
  for (int attempt = 0; attempt < 3 && !active; ++attempt) {
    if (auto it = shard.active.find(gid); it != shard.active.end()) {
      core::GlobalStatus s = it->second->snap.global.status;
      if (s != core::GlobalStatus::kSubmitted) co_return Status::Conflict(CannotSubmitMessage(s));
      active = it->second;
      break;
    }
    Result<std::optional<core::TransSnapshot>> loaded =
        co_await AwaitStore<Result<std::optional<core::TransSnapshot>>>(
            [&](auto cb) { store_.Load(gid, std::move(cb)); });
    if (!loaded.ok()) co_return loaded.status();
    if (loaded->has_value()) {
      core::TransSnapshot& stored = **loaded;
      if (stored.global.trans_type != proposed.global.trans_type) {
        co_return Status::Conflict(fmt::format(
            "gid '{}' belongs to a transaction of type '{}', not '{}'. FAILURE", gid,
            core::ToString(stored.global.trans_type), core::ToString(proposed.global.trans_type)));
      }
      if (stored.global.status != core::GlobalStatus::kSubmitted) {
        co_return Status::Conflict(CannotSubmitMessage(stored.global.status));
      }
      // Re-submit of a submitted saga: resume from the stored state (§5 #15).
      active = StartRound(shard, std::move(stored));
      break;
    }
    if (active_count_.load() >= options_.max_active_transactions) {
      co_return Status::Unavailable(
          fmt::format("too many transactions in flight (limit {}); retry later",
                      options_.max_active_transactions));
    }
    const int64_t now = clock_.NowMs();
    core::GlobalTrans& g = proposed.global;
    g.status = core::GlobalStatus::kSubmitted;
    g.create_time_ms = g.update_time_ms = now;
    g.next_cron_interval_ms = core::InitialIntervalMs(g.options, options_.settings);
    g.next_cron_time_ms = now + g.next_cron_interval_ms;
    g.retry_count = g.options.retry_count;
    g.owner = options_.owner;
    for (auto& b : proposed.branches) {
      b.gid = gid;
      b.create_time_ms = b.update_time_ms = now;
    }
    Status created =
        co_await AwaitStore<Status>([&](auto cb) { store_.Create(proposed, std::move(cb)); });
    if (created.code() == Code::kAlreadyExists) continue;  // raced with another submit: re-read
    if (!created.ok()) co_return created;
    active = StartRound(shard, std::move(proposed));
  }
  if (!active) co_return Status::Internal("submit: could not settle a concurrent submit");
  if (!wait_result) co_return Status::Ok();
  const int64_t deadline = clock_.NowMs() +
                           core::RequestTimeoutMs(active->snap.global.options, options_.settings) +
                           2000;
  co_return co_await WaitRound(active, deadline);
}

std::shared_ptr<Engine::Active> Engine::StartRound(Shard& shard, core::TransSnapshot snap) {
  if (auto it = shard.active.find(snap.global.gid); it != shard.active.end()) return it->second;
  auto active = std::make_shared<Active>(shard.ioc.get_executor());
  active->snap = std::move(snap);
  shard.active.emplace(active->snap.global.gid, active);
  active_count_.fetch_add(1, std::memory_order_relaxed);
  asio::co_spawn(shard.ioc, RunRound(&shard, active), LogException{"round"});
  return active;
}

awaitable<void> Engine::RunRound(Shard* shard, std::shared_ptr<Active> a) {
  const core::Settings& settings = options_.settings;
  core::Decision d = core::Step(a->snap, a->round, core::Event{}, settings, clock_.NowMs());
  for (;;) {
    if (d.update) {
      Status st = co_await AwaitStore<Status>(
          [&](auto cb) { store_.Update(std::move(*d.update), std::move(cb)); });
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
    }
    for (size_t i : d.calls) {
      const core::BranchRow& row = a->snap.branches[i];
      BranchCallSpec spec = BuildBranchCall(
          a->snap.global, row, core::RequestTimeoutMs(a->snap.global.options, settings));
      asio::co_spawn(shard->ioc, CallBranch(shard, a, i, std::move(spec)),
                     LogException{"branch call"});
    }
    if (d.round_over || stopped_) break;
    while (a->events.empty()) {
      a->signal.expires_at(SteadyClock::time_point::max());
      co_await a->signal.async_wait(asio::as_tuple(use_awaitable));
    }
    core::Event ev = std::move(a->events.front());
    a->events.pop_front();
    d = core::Step(a->snap, a->round, ev, settings, clock_.NowMs());
  }
  // Calls still in flight after an abandoned round must come back before another round may start
  // for this gid: no compensation may overlap its own action (§1.6).
  while (a->round.in_flight_count > 0 && !stopped_) {
    while (a->events.empty()) {
      a->signal.expires_at(SteadyClock::time_point::max());
      co_await a->signal.async_wait(asio::as_tuple(use_awaitable));
    }
    core::Event ev = std::move(a->events.front());
    a->events.pop_front();
    a->round.in_flight[ev.branch_index] = 0;
    a->round.in_flight_count -= 1;
  }
  a->done = true;
  if (metrics_ && core::IsFinal(a->snap.global.status) && a->outcome.ok()) {
    double seconds = static_cast<double>(clock_.NowMs() - a->snap.global.create_time_ms) / 1000.0;
    metrics_->RecordTransaction(std::string(core::ToString(a->snap.global.trans_type)),
                                a->snap.global.status == core::GlobalStatus::kSucceed, seconds);
  }
  for (asio::steady_timer* w : a->waiters) w->cancel();
  a->waiters.clear();
  if (auto it = shard->active.find(a->snap.global.gid);
      it != shard->active.end() && it->second == a) {
    shard->active.erase(it);
    active_count_.fetch_sub(1, std::memory_order_relaxed);
  }
}

awaitable<void> Engine::CallBranch(Shard* shard, std::shared_ptr<Active> a, size_t index,
                                   BranchCallSpec spec) {
  BranchAnswer answer = co_await shard->caller->Call(std::move(spec));
  core::Event ev;
  ev.kind = core::Event::Kind::kResult;
  ev.branch_index = index;
  ev.result = core::ClassifyHttp(answer.http_status, answer.body);
  if (ev.result == core::CallClass::kError && answer.http_status > 0) {
    ev.answer = fmt::format("HTTP {}: {}", answer.http_status, answer.body);
  } else {
    ev.answer = std::move(answer.body);
  }
  if (metrics_) {
    const core::BranchRow& row = a->snap.branches[index];
    metrics_->RecordBranch(std::string(core::ToString(a->snap.global.trans_type)), row.branch_id,
                           row.op, ev.result == core::CallClass::kSuccess);
  }
  a->events.push_back(std::move(ev));
  a->signal.cancel();
}

awaitable<Status> Engine::WaitRound(std::shared_ptr<Active> a, int64_t deadline_ms) {
  if (!a->done) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    timer.expires_after(
        std::chrono::milliseconds(std::max<int64_t>(0, deadline_ms - clock_.NowMs())));
    a->waiters.push_back(&timer);
    co_await timer.async_wait(asio::as_tuple(use_awaitable));
    std::erase(a->waiters, &timer);
  }
  if (!a->done) co_return Status::Conflict("wait result not return success");
  if (!a->outcome.ok() && a->outcome.code() != Code::kConflict) co_return a->outcome;
  const core::GlobalTrans& g = a->snap.global;
  if (g.status == core::GlobalStatus::kSucceed) co_return Status::Ok();
  if (!g.rollback_reason.empty()) co_return Status::Conflict(g.rollback_reason);
  co_return Status::Conflict("wait result not return success");
}

awaitable<Status> Engine::Abort(std::string gid) {
  Result<std::optional<core::TransSnapshot>> loaded = co_await Query(gid);
  if (!loaded.ok()) co_return loaded.status();
  if (!loaded->has_value()) {
    co_return Status::NotFound(fmt::format("no transaction with gid '{}'", gid));
  }
  const core::GlobalTrans& g = (*loaded)->global;
  if (g.trans_type == core::TransType::kSaga) {
    co_return Status::Conflict(
        fmt::format("trans type: '{}' current status '{}', cannot abort. FAILURE",
                    core::ToString(g.trans_type), core::ToString(g.status)));
  }
  co_return Status::Unimplemented(
      fmt::format("abort of trans_type '{}' is not supported yet", core::ToString(g.trans_type)));
}

awaitable<Status> Engine::Prepare(core::TransSnapshot proposed) {
  if (proposed.global.trans_type == core::TransType::kSaga) {
    co_return Status::InvalidArgument("prepare is not allowed for a saga; submit it");
  }
  co_return Status::Unimplemented(fmt::format("trans_type '{}' is not supported yet",
                                              core::ToString(proposed.global.trans_type)));
}

awaitable<Status> Engine::ForceStop(std::string gid) {
  Shard& shard = ShardFor(gid);
  co_return co_await asio::co_spawn(shard.ioc, ForceStopOnShard(std::move(gid)), use_awaitable);
}

awaitable<Status> Engine::ForceStopOnShard(std::string gid) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    Result<std::optional<core::TransSnapshot>> loaded =
        co_await AwaitStore<Result<std::optional<core::TransSnapshot>>>(
            [&](auto cb) { store_.Load(gid, std::move(cb)); });
    if (!loaded.ok()) co_return loaded.status();
    if (!loaded->has_value()) {
      co_return Status::NotFound(fmt::format("no transaction with gid '{}'", gid));
    }
    const core::GlobalTrans& g = (*loaded)->global;
    if (core::IsFinal(g.status)) {
      co_return Status::Conflict(
          fmt::format("global transaction force stop error. status: {}. error: FAILURE",
                      core::ToString(g.status)));
    }
    const int64_t now = clock_.NowMs();
    core::TransUpdate u;
    u.gid = gid;
    u.expected_status = g.status;
    u.new_status = core::GlobalStatus::kFailed;
    u.finish_time_ms = now;
    u.update_time_ms = now;
    if (g.rollback_reason.empty()) u.rollback_reason = "force stopped by operator";
    Status st =
        co_await AwaitStore<Status>([&](auto cb) { store_.Update(std::move(u), std::move(cb)); });
    if (st.code() == Code::kConflict) continue;  // the status moved meanwhile: look again
    if (st.ok())
      spdlog::warn("gid {}: force stopped by operator (was {})", gid, core::ToString(g.status));
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
  co_return co_await AwaitStore<Result<std::optional<core::TransSnapshot>>>(
      [&](auto cb) { store_.Load(gid, std::move(cb)); });
}

awaitable<Result<store::ListPage>> Engine::List(store::ListQuery query) {
  co_return co_await AwaitStore<Result<store::ListPage>>(
      [&](auto cb) { store_.List(std::move(query), std::move(cb)); });
}

awaitable<void> Engine::ResumeOnShard(std::string gid) {
  Shard& shard = ShardFor(gid);
  if (stopped_ || shard.active.count(gid)) co_return;
  Result<std::optional<core::TransSnapshot>> loaded =
      co_await AwaitStore<Result<std::optional<core::TransSnapshot>>>(
          [&](auto cb) { store_.Load(gid, std::move(cb)); });
  if (!loaded.ok()) {
    spdlog::error("gid {}: cannot load for recovery: {}", gid, loaded.status().ToString());
    co_return;
  }
  if (!loaded->has_value() || core::IsFinal((*loaded)->global.status)) co_return;
  if ((*loaded)->global.trans_type != core::TransType::kSaga) co_return;  // later issues
  if (stopped_ || shard.active.count(gid)) co_return;
  StartRound(shard, std::move(**loaded));
}

awaitable<void> Engine::CronLoop() {
  auto cron = cron_;
  const int64_t lease_ms = std::max(options_.settings.retry_interval_ms, options_.cron_interval_ms);
  while (!stopped_) {
    size_t active = active_count_.load();
    size_t room =
        active < options_.max_active_transactions ? options_.max_active_transactions - active : 0;
    int limit = static_cast<int>(std::min<size_t>(room, static_cast<size_t>(options_.claim_batch)));
    size_t claimed = 0;
    if (limit > 0) {
      const int64_t now = clock_.NowMs();
      Result<std::vector<std::string>> due =
          co_await AwaitStore<Result<std::vector<std::string>>>([&](auto cb) {
            store_.ClaimDue(now, limit, now + lease_ms, options_.owner, std::move(cb));
          });
      if (!due.ok()) {
        spdlog::error("recovery: claiming due transactions failed: {}", due.status().ToString());
      } else {
        claimed = due->size();
        for (std::string& gid : *due) {
          Shard& shard = ShardFor(gid);
          asio::co_spawn(shard.ioc, ResumeOnShard(std::move(gid)), LogException{"resume"});
        }
      }
    }
    if (stopped_) break;
    if (limit > 0 && claimed == static_cast<size_t>(limit)) continue;  // more may be due at once
    cron->timer.expires_after(std::chrono::milliseconds(options_.cron_interval_ms));
    co_await cron->timer.async_wait(asio::as_tuple(use_awaitable));
  }
}

}  // namespace dtx::engine
