#include "engine/engine.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <deque>
#include <functional>
#include <random>
#include <unordered_map>
#include <utility>

#include "engine/store_await.h"
#include "util/mutation.h"

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

// The completion token for work hopped onto a shard. The empty cancellation slot cuts the link to
// the caller's cancellation: when the HTTP server cancels a request's coroutine (e.g. at shutdown),
// Asio 1.81 would otherwise post a terminal cancellation to the shard coroutine, which may already
// have finished and been freed (seen as a SIGSEGV in cancellation_signal::emit under load at
// SIGTERM). A shard operation, once started, runs to its end; its state change is durable anyway.
inline auto OnShardToken() {
  return asio::bind_cancellation_slot(asio::cancellation_slot(), use_awaitable);
}

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
  // The last non-SUCCESS answer of the round, for wait_result answers of tcc/xa/msg (§1.5).
  std::optional<core::CallClass> last_error_class;
  std::string last_error_text;
  size_t outstanding_calls = 0;  // spawned calls whose result has not been received yet
  std::vector<Timer*> waiters;   // wait_result requests
  // The status the store holds (the snapshot's may be ahead of it while a write is in flight),
  // and the API calls waiting for it to change (WaitWhilePrepared).
  core::GlobalStatus stored_status = core::GlobalStatus::kSubmitted;
  std::vector<Timer*> status_waiters;
  bool restart = false;  // abandoned to start over from the store at once
};

struct Engine::Shard {
  explicit Shard(asio::io_context& c) : ioc(c) {}
  asio::io_context& ioc;
  std::unique_ptr<BranchCaller> caller;
  std::unordered_map<std::string, std::shared_ptr<Active>> active;
  // Per-gid serialization of API transitions, registerBranch and round starts (see GidGuard).
  struct GidLock {
    bool held = false;
    std::deque<asio::steady_timer*> waiters;
  };
  std::unordered_map<std::string, std::shared_ptr<GidLock>> locks;
};

// Holds a gid's lock on its shard. Transitions, registerBranch and the start of a round (its load)
// take it, so a round never starts from a snapshot that misses rows registered meanwhile; rounds
// themselves run without it. Used only on the shard's thread.
class Engine::GidGuard {
 public:
  GidGuard(Shard* shard, std::string gid) : shard_(shard), gid_(std::move(gid)) {}
  GidGuard(GidGuard&& o) noexcept
      : shard_(std::exchange(o.shard_, nullptr)), gid_(std::move(o.gid_)) {}
  GidGuard(const GidGuard&) = delete;
  GidGuard& operator=(const GidGuard&) = delete;
  GidGuard& operator=(GidGuard&&) = delete;
  ~GidGuard() {
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

 private:
  Shard* shard_;
  std::string gid_;
};

struct Engine::CronState {
  std::unique_ptr<Timer> timer;
};

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
    asio::steady_timer timer(co_await asio::this_coro::executor, SteadyClock::time_point::max());
    lock->waiters.push_back(&timer);
    co_await timer.async_wait(asio::as_tuple(use_awaitable));
    std::erase(lock->waiters, &timer);
  }
  lock->held = true;
  co_return GidGuard(&shard, std::move(gid));
}

awaitable<Result<std::optional<core::TransSnapshot>>> Engine::LoadOnShard(std::string gid) {
  co_return co_await AwaitStore<Result<std::optional<core::TransSnapshot>>>(
      [&](auto cb) { store_.Load(gid, std::move(cb)); });
}

void Engine::InitNew(core::TransSnapshot& snap, core::GlobalStatus status, int64_t now) {
  core::GlobalTrans& g = snap.global;
  g.status = status;
  g.create_time_ms = g.update_time_ms = now;
  g.next_cron_interval_ms = core::InitialIntervalMs(g.options, options_.settings);
  g.next_cron_time_ms = now + g.next_cron_interval_ms;
  if (status == core::GlobalStatus::kPrepared) {
    // tcc/xa give up, and msg is first checked back, at create + timeout (§1.4).
    g.next_cron_time_ms = now + core::TimeoutToFailMs(g, options_.settings);
  }
  g.retry_count = g.options.retry_count;
  g.owner = options_.owner;
  for (auto& b : snap.branches) {
    b.gid = g.gid;
    b.create_time_ms = b.update_time_ms = now;
  }
}

awaitable<Status> Engine::Transition(core::TransUpdate update) {
  co_return co_await AwaitStore<Status>(
      [&](auto cb) { store_.Update(std::move(update), std::move(cb)); });
}

namespace {

// msg: {"delay":N} in custom_data, key case-insensitive; 0 when absent or malformed (validated by
// the API before it is stored).
int64_t MsgDelayMs(std::string_view custom_data) {
  if (custom_data.empty()) return 0;
  boost::system::error_code ec;
  auto v = boost::json::parse(custom_data, ec);
  if (ec || !v.is_object()) return 0;
  for (const auto& kv : v.get_object()) {
    std::string k(kv.key());
    for (auto& c : k) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (k == "delay" && kv.value().is_int64() && kv.value().get_int64() > 0) {
      // Capped at 100 years (like the other durations), so that "* 1000" and "now + delay" fit.
      constexpr int64_t kMaxDelayS = int64_t{100} * 365 * 24 * 3600;
      return std::min(kv.value().get_int64(), kMaxDelayS) * 1000;
    }
  }
  return 0;
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
    std::shared_ptr<Active> a = it->second;
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
  const std::string gid = req.proposed.global.gid;
  const core::TransType type = req.proposed.global.trans_type;
  std::shared_ptr<Active> active;
  {
    GidGuard guard = co_await LockGid(shard, gid);
    // A round of a prepared transaction (a msg check-back, a tcc timeout check) decides from the
    // prepared state: let it finish, then judge the submit on what it left.
    co_await WaitWhilePrepared(shard, gid);
    if (auto it = shard.active.find(gid); it != shard.active.end()) {
      // What the store holds: the round's snapshot may be ahead of it.
      core::GlobalStatus s = it->second->stored_status;
      if (s != core::GlobalStatus::kSubmitted) co_return Status::Conflict(CannotSubmitMessage(s));
      active = it->second;
    } else {
      // A saga submit almost always names a new gid: try to create it first, and read what is
      // stored only when the gid exists (a re-submit). This saves a store read per saga; the
      // refused insert of a re-submit costs one savepoint in a group commit.
      if (type == core::TransType::kSaga &&
          active_count_.load() < options_.max_active_transactions) {
        InitNew(req.proposed, core::GlobalStatus::kSubmitted, clock_.NowMs());
        Status created = co_await AwaitStore<Status>(
            [&](auto cb) { store_.Create(req.proposed, std::move(cb)); });
        if (created.ok()) {
          active = StartRound(shard, std::move(req.proposed));
        } else if (created.code() != Code::kAlreadyExists) {
          co_return created;
        }
      }
    }
    if (!active) {
      Result<std::optional<core::TransSnapshot>> loaded = co_await LoadOnShard(gid);
      if (!loaded.ok()) co_return loaded.status();
      const int64_t now = clock_.NowMs();
      if (loaded->has_value()) {
        core::TransSnapshot& stored = **loaded;
        if (stored.global.trans_type != type) {
          co_return Status::Conflict(
              fmt::format("gid '{}' belongs to a transaction of type '{}', not '{}'. FAILURE", gid,
                          core::ToString(stored.global.trans_type), core::ToString(type)));
        }
        if (stored.global.status == core::GlobalStatus::kPrepared &&
            type != core::TransType::kSaga) {
          // prepared -> submitted; options present in the submit body override the stored ones.
          core::TransUpdate u;
          u.gid = gid;
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
          if (type == core::TransType::kMsg) {
            if (!req.custom_data.empty()) u.custom_data = req.custom_data;
            delay_ms = MsgDelayMs(u.custom_data ? *u.custom_data : stored.global.custom_data);
            if (delay_ms > 0) u.next_cron_time_ms = now + delay_ms;
          }
          core::TransUpdate applied = u;
          Status st = co_await Transition(std::move(u));
          if (!st.ok()) co_return st;
          if (delay_ms > 0) co_return Status::Ok();  // the recovery loop starts it when due
          core::TransSnapshot snap = std::move(stored);
          if (type == core::TransType::kTcc || type == core::TransType::kXa) {
            // registerBranch on another coordinator may have added rows since the load; none can
            // be added now that the store holds submitted.
            co_await ReloadBranches(snap);
          }
          snap.global.status = core::GlobalStatus::kSubmitted;
          snap.global.options = options;
          if (applied.custom_data) snap.global.custom_data = *applied.custom_data;
          snap.global.next_cron_interval_ms = *applied.next_cron_interval_ms;
          snap.global.next_cron_time_ms = *applied.next_cron_time_ms;
          snap.global.owner = options_.owner;
          active = StartRound(shard, std::move(snap));
        } else if (stored.global.status == core::GlobalStatus::kSubmitted) {
          // Re-submit: resume from the stored state (§5 #15) — if no coordinator holds a lease on
          // it; otherwise its owner (or recovery, when it is due) drives it.
          if (co_await ClaimForResume(stored)) active = StartRound(shard, std::move(stored));
        } else {
          co_return Status::Conflict(CannotSubmitMessage(stored.global.status));
        }
      } else {
        if (type != core::TransType::kSaga && type != core::TransType::kMsg) {
          co_return Status::Conflict(
              fmt::format("no trans with gid: {} status: prepared found FAILURE", gid));
        }
        if (active_count_.load() >= options_.max_active_transactions) {
          co_return Status::Unavailable(
              fmt::format("too many transactions in flight (limit {}); retry later",
                          options_.max_active_transactions));
        }
        InitNew(req.proposed, core::GlobalStatus::kSubmitted, now);
        int64_t delay_ms =
            type == core::TransType::kMsg ? MsgDelayMs(req.proposed.global.custom_data) : 0;
        if (delay_ms > 0) req.proposed.global.next_cron_time_ms = now + delay_ms;
        Status created = co_await AwaitStore<Status>(
            [&](auto cb) { store_.Create(req.proposed, std::move(cb)); });
        if (created.code() == Code::kAlreadyExists) {
          co_return Status::Unavailable("a concurrent request created this gid; retry");
        }
        if (!created.ok()) co_return created;
        if (delay_ms > 0) co_return Status::Ok();
        active = StartRound(shard, std::move(req.proposed));
      }
    }
  }
  if (!req.wait_result) co_return Status::Ok();
  if (!active) co_return co_await WaitStored(gid, WaitFor::kSubmit);
  const int64_t deadline = clock_.NowMs() +
                           core::RequestTimeoutMs(active->snap.global.options, options_.settings) +
                           2000;
  co_return co_await WaitRound(active, deadline, WaitFor::kSubmit);
}

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
  GidGuard guard = co_await LockGid(shard, gid);
  Result<std::optional<core::TransSnapshot>> loaded = co_await LoadOnShard(gid);
  if (!loaded.ok()) co_return loaded.status();
  if (loaded->has_value()) {
    const core::GlobalTrans& g = (*loaded)->global;
    if (g.trans_type != proposed.global.trans_type) {
      co_return Status::Conflict(
          fmt::format("gid '{}' belongs to a transaction of type '{}', not '{}'. FAILURE", gid,
                      core::ToString(g.trans_type), core::ToString(proposed.global.trans_type)));
    }
    if (g.status == core::GlobalStatus::kPrepared) co_return Status::Ok();
    co_return Status::Conflict(
        fmt::format("current status '{}', cannot prepare. FAILURE", core::ToString(g.status)));
  }
  InitNew(proposed, core::GlobalStatus::kPrepared, clock_.NowMs());
  Status created =
      co_await AwaitStore<Status>([&](auto cb) { store_.Create(proposed, std::move(cb)); });
  if (created.code() == Code::kAlreadyExists) co_return Status::Ok();
  co_return created;
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
  std::shared_ptr<Active> active;
  bool wait = false;
  {
    GidGuard guard = co_await LockGid(shard, gid);
    co_await WaitWhilePrepared(shard, gid);
    Result<std::optional<core::TransSnapshot>> loaded = co_await LoadOnShard(gid);
    if (!loaded.ok()) co_return loaded.status();
    if (!loaded->has_value()) {
      co_return Status::NotFound(fmt::format("no transaction with gid '{}'", gid));
    }
    core::TransSnapshot& stored = **loaded;
    const core::GlobalTrans& g = stored.global;
    wait = wait_result.value_or(g.options.wait_result);
    auto cannot = [&] {
      return Status::Conflict(
          fmt::format("trans type: '{}' current status '{}', cannot abort. FAILURE",
                      core::ToString(g.trans_type), core::ToString(g.status)));
    };
    const int64_t now = clock_.NowMs();
    switch (g.trans_type) {
      case core::TransType::kMsg: {
        if (g.status != core::GlobalStatus::kPrepared) co_return cannot();
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
      case core::TransType::kTcc:
      case core::TransType::kXa: {
        if (g.status == core::GlobalStatus::kAborting) {
          if (auto it = shard.active.find(gid); it != shard.active.end()) {
            active = it->second;
          } else if (co_await ClaimForResume(stored)) {
            active = StartRound(shard, std::move(stored));
          }
          break;
        }
        if (g.status != core::GlobalStatus::kPrepared) co_return cannot();
        core::TransUpdate u;
        u.gid = gid;
        u.expected_status = core::GlobalStatus::kPrepared;
        u.new_status = core::GlobalStatus::kAborting;
        u.rollback_time_ms = now;
        u.update_time_ms = now;
        u.owner = options_.owner;
        if (!rollback_reason.empty()) u.rollback_reason = rollback_reason;
        core::TransOptions options = g.options;
        if (!patch.empty()) {
          patch.ApplyTo(options);
          u.options = options;
        }
        Status st = co_await Transition(u);
        if (!st.ok()) co_return st;
        core::TransSnapshot snap = std::move(stored);
        co_await ReloadBranches(snap);  // rows registered on another coordinator meanwhile
        snap.global.status = core::GlobalStatus::kAborting;
        snap.global.options = options;
        snap.global.rollback_time_ms = now;
        snap.global.owner = options_.owner;
        if (u.rollback_reason) snap.global.rollback_reason = *u.rollback_reason;
        active = StartRound(shard, std::move(snap));
        break;
      }
      default:
        co_return cannot();
    }
  }
  if (!wait) co_return Status::Ok();
  if (!active) co_return co_await WaitStored(gid, WaitFor::kAbort);
  const int64_t deadline = clock_.NowMs() +
                           core::RequestTimeoutMs(active->snap.global.options, options_.settings) +
                           2000;
  co_return co_await WaitRound(active, deadline, WaitFor::kAbort);
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
  const std::string not_found =
      fmt::format("no trans with gid: {} status: prepared found FAILURE", gid);
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
    co_return Status::Conflict(not_found);
  }
  if (st.code() != Code::kAlreadyExists) co_return st;
  // Rows with these ids exist: an identical repeat is accepted (§5 #15), a different one is not.
  Result<std::optional<core::TransSnapshot>> loaded = co_await LoadOnShard(gid);
  if (!loaded.ok()) co_return loaded.status();
  if (!loaded->has_value()) co_return Status::Conflict(not_found);
  if ((*loaded)->global.trans_type != type) co_return Status::Conflict(not_found);
  for (const auto& r : rows) {
    bool same = false;
    for (const auto& b : (*loaded)->branches) {
      if (b.branch_id == r.branch_id && b.op == r.op) {
        same = b.url == r.url && b.bin_data == r.bin_data;
        break;
      }
    }
    if (!same) {
      co_return Status::Conflict(
          fmt::format("branch {} of gid {} is already registered with different content. FAILURE",
                      r.branch_id, gid));
    }
  }
  co_return Status::Ok();
}

std::shared_ptr<Engine::Active> Engine::StartRound(Shard& shard, core::TransSnapshot snap) {
  if (auto it = shard.active.find(snap.global.gid); it != shard.active.end()) return it->second;
  auto active = std::make_shared<Active>(shard.ioc.get_executor());
  active->stored_status = snap.global.status;
  active->snap = std::move(snap);
  shard.active.emplace(active->snap.global.gid, active);
  active_count_.fetch_add(1, std::memory_order_relaxed);
  asio::co_spawn(shard.ioc, RunRound(&shard, active), LogException{"round"});
  return active;
}

namespace {

// A decision's update may wait for the round's next one when it records only branch successes and
// the wake-up that follows them — no status, option or retry change — and the wake-up already
// stored covers every call in flight (`lease_needed`: their deadline plus the skew margin). Losing
// it in a crash only means the branch is called again when the transaction resumes, at the stored
// (earlier) wake-up — and every call is at-least-once anyway. Nothing is acknowledged on it: every
// status change, and so every answer to a client, comes after a commit that includes it.
bool CanDefer(const core::TransUpdate& u, int64_t stored_wakeup_ms, int64_t lease_needed_ms) {
  if (u.new_status || u.rollback_reason || u.custom_data || u.options || u.retry_count ||
      u.finish_time_ms || u.rollback_time_ms) {
    return false;
  }
  if (u.branches.empty() || stored_wakeup_ms < lease_needed_ms) return false;
  for (const auto& b : u.branches) {
    if (b.status != core::BranchStatus::kSucceed) return false;
  }
  return true;
}

// Folds `later` into `into`, as if applied one after the other: branch updates are appended (the
// store applies them in order, so a later update of the same row wins) and a global field set in
// `later` replaces the held one.
void MergeInto(std::optional<core::TransUpdate>& into, core::TransUpdate later) {
  if (!into) {
    into = std::move(later);
    return;
  }
  core::TransUpdate& u = *into;
  u.expected_status = later.expected_status;
  auto take = [](auto& mine, auto& theirs) {
    if (theirs) mine = std::move(theirs);
  };
  take(u.new_status, later.new_status);
  take(u.rollback_reason, later.rollback_reason);
  take(u.custom_data, later.custom_data);
  take(u.options, later.options);
  take(u.next_cron_time_ms, later.next_cron_time_ms);
  take(u.next_cron_interval_ms, later.next_cron_interval_ms);
  take(u.retry_count, later.retry_count);
  take(u.finish_time_ms, later.finish_time_ms);
  take(u.rollback_time_ms, later.rollback_time_ms);
  u.update_time_ms = later.update_time_ms;
  u.branches.insert(u.branches.end(), std::make_move_iterator(later.branches.begin()),
                    std::make_move_iterator(later.branches.end()));
}

}  // namespace

bool Engine::LeaseCovers(const core::TransSnapshot& snap, int64_t stored_wakeup_ms) const {
  // Half the margin is spent on the time between the write and the call; the other half covers
  // clock skew between coordinators.
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
  u.update_time_ms = now;
  const int64_t lease = *u.next_cron_time_ms;
  Status st =
      co_await AwaitStore<Status>([&](auto cb) { store_.Update(std::move(u), std::move(cb)); });
  if (!st.ok()) co_return false;
  snap.global.owner = options_.owner;
  snap.global.next_cron_time_ms = lease;
  co_return true;
}

awaitable<void> Engine::ReloadBranches(core::TransSnapshot& snap) {
  Result<std::optional<core::TransSnapshot>> fresh = co_await LoadOnShard(snap.global.gid);
  // On a failed read the round starts from what it has; a round that then misses a row is
  // caught by RunRound's own check after its first status change.
  if (fresh.ok() && fresh->has_value()) snap.branches = std::move((*fresh)->branches);
}

awaitable<Status> Engine::WaitStored(std::string gid, WaitFor what) {
  // Another coordinator drives the transaction: follow the store until it is final or the
  // wait_result deadline passes.
  const int64_t deadline = clock_.NowMs() + options_.settings.request_timeout_ms + 2000;
  std::unique_ptr<Timer> timer = timers_->NewTimer(co_await asio::this_coro::executor);
  for (;;) {
    Result<std::optional<core::TransSnapshot>> loaded = co_await LoadOnShard(gid);
    if (!loaded.ok()) co_return loaded.status();
    if (!loaded->has_value()) co_return Status::NotFound("no transaction with gid '" + gid + "'");
    const core::GlobalStatus s = (*loaded)->global.status;
    if (core::IsFinal(s)) {
      const core::GlobalStatus wanted =
          what == WaitFor::kSubmit ? core::GlobalStatus::kSucceed : core::GlobalStatus::kFailed;
      if (s == wanted) co_return Status::Ok();
      if (what == WaitFor::kSubmit && !(*loaded)->global.rollback_reason.empty()) {
        co_return Status::Conflict((*loaded)->global.rollback_reason);
      }
      co_return Status::Conflict("wait result not return success");
    }
    if (clock_.NowMs() >= deadline) co_return Status::Conflict("wait result not return success");
    co_await timer->WaitUntil(std::min(deadline, clock_.NowMs() + 100));
  }
}

int64_t Engine::LeaseUntil(const core::TransSnapshot& snap) const {
  return clock_.NowMs() + core::RequestTimeoutMs(snap.global.options, options_.settings) +
         kLeaseMarginMs;
}

void Engine::ExtendLease(core::TransSnapshot& snap, std::optional<core::TransUpdate>& update,
                         int64_t stored_wakeup_ms, int64_t lease_needed_ms) {
  // While calls are in flight the stored wake-up must lie beyond their deadline (plus a margin for
  // clock skew between coordinators), or another coordinator sharing the store could claim the
  // transaction and call the same branch concurrently. The results' own updates then set the real
  // wake-up (reset, kept or backed off) once nothing is in flight.
  const int64_t effective =
      update && update->next_cron_time_ms ? *update->next_cron_time_ms : stored_wakeup_ms;
  if (effective >= lease_needed_ms) return;
  if (!update) {
    update.emplace();
    update->gid = snap.global.gid;
    update->expected_status = snap.global.status;
    update->update_time_ms = clock_.NowMs();
  }
  if (DTX_MUTANT(kSkipLeaseExtension)) return;
  update->next_cron_time_ms = lease_needed_ms;
  snap.global.next_cron_time_ms = lease_needed_ms;
}

awaitable<void> Engine::RunRound(Shard* shard, std::shared_ptr<Active> a) {
  const core::Settings& settings = options_.settings;
  core::Decision d = core::Step(a->snap, a->round, core::Event{}, settings, clock_.NowMs());
  // Branch successes that change nothing else are written with the round's next update instead of
  // in a commit of their own (see CanDefer). The round's snapshot is committed when it starts.
  std::optional<core::TransUpdate> deferred;
  int64_t stored_wakeup = a->snap.global.next_cron_time_ms;
  int64_t lease_needed = 0;  // the wake-up that covers every call made so far, plus the margin
  for (;;) {
    if (!d.calls.empty()) lease_needed = std::max(lease_needed, LeaseUntil(a->snap));
    const bool in_flight = !d.calls.empty() || a->outstanding_calls > 0;
    const int64_t need = in_flight ? lease_needed : 0;
    if (d.update && !d.round_over && !stopped_ && CanDefer(*d.update, stored_wakeup, need)) {
      MergeInto(deferred, std::move(*d.update));
      d.update.reset();
    } else {
      // What is held goes with the next write (or at the round's end).
      auto take_held = [&] {
        if (!deferred) return;
        if (d.update) MergeInto(deferred, std::move(*d.update));
        d.update = std::move(deferred);
        deferred.reset();
      };
      if (d.update || d.round_over) take_held();
      if (need > 0) {
        ExtendLease(a->snap, d.update, stored_wakeup, need);
        if (d.update) take_held();  // a lease-only update takes what is held along
      }
    }
    if (d.update && d.round_over && DTX_MUTANT(kAckBeforeCommit)) {
      store_.Update(std::move(*d.update), [](Status) {});  // broken on purpose: not awaited
      d.update.reset();
    }
    // A round's writes are fenced on the owner: a coordinator whose lease another one took over
    // (it was paused past it) cannot write, so it abandons the round before calling anyone.
    if (d.update) d.update->expected_owner = options_.owner;
    if (d.update) {
      const std::optional<int64_t> wakeup = d.update->next_cron_time_ms;
      const std::optional<core::GlobalStatus> new_status = d.update->new_status;
      Status st = co_await AwaitStore<Status>(
          [&](auto cb) { store_.Update(std::move(*d.update), std::move(cb)); });
      if (st.ok() && wakeup) stored_wakeup = *wakeup;
      bool restart = false;
      if (st.ok() && new_status) {
        // tcc/xa: registerBranch on another coordinator may have added rows after this round's
        // snapshot was loaded, up to the moment this write moved the status out of prepared (no
        // row can be added after it). A round that misses them would never confirm or cancel
        // them (dtx-sim seed 5523): look, and start over from the store if they differ.
        // (core/tcc.cc ends the round with that decision; the next one starts from the store.)
        restart = a->stored_status == core::GlobalStatus::kPrepared &&
                  !core::IsFinal(*new_status) &&
                  (a->snap.global.trans_type == core::TransType::kTcc ||
                   a->snap.global.trans_type == core::TransType::kXa);
        a->stored_status = *new_status;
        for (Timer* w : a->status_waiters) w->Cancel();
      }
      if (restart) {
        a->outcome = Status::Unavailable("left prepared: the round restarts from the store");
        a->restart = true;
        break;
      }
      // Time passed while the write was in flight (a slow commit, a pause): the calls it orders
      // start only while the stored lease still covers their deadline; else extend it again.
      if (st.ok() && !d.calls.empty() && !LeaseCovers(a->snap, stored_wakeup) &&
          !DTX_MUTANT(kSkipLeaseExtension)) {
        lease_needed = LeaseUntil(a->snap);
        d.update = core::TransUpdate{};
        d.update->gid = a->snap.global.gid;
        d.update->expected_status = a->snap.global.status;
        d.update->update_time_ms = clock_.NowMs();
        d.update->next_cron_time_ms = lease_needed;
        d.update->expected_owner = options_.owner;
        a->snap.global.next_cron_time_ms = lease_needed;
        const int64_t again = lease_needed;
        st = co_await AwaitStore<Status>(
            [&](auto cb) { store_.Update(std::move(*d.update), std::move(cb)); });
        d.update.reset();
        if (st.ok()) stored_wakeup = again;
        if (st.ok() && !LeaseCovers(a->snap, stored_wakeup)) {
          st = Status::Unavailable("the store is too slow to hold a lease; round abandoned");
        }
      }
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
      const int64_t timeout_ms = core::RequestTimeoutMs(a->snap.global.options, settings);
      BranchCallSpec spec = i == core::kCheckBackIndex
                                ? BuildCheckBackCall(a->snap.global, timeout_ms)
                                : BuildBranchCall(a->snap.global, a->snap.branches[i], timeout_ms);
      a->outstanding_calls += 1;
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
    a->outstanding_calls -= 1;
    if (ev.result != core::CallClass::kSuccess) {
      a->last_error_class = ev.result;
      a->last_error_text = ev.answer;
    }
    d = core::Step(a->snap, a->round, ev, settings, clock_.NowMs());
  }
  // Calls still in flight after an abandoned round must come back before another round may start
  // for this gid: no compensation may overlap its own action (§1.6).
  while (a->outstanding_calls > 0 && !stopped_) {
    while (a->events.empty()) {
      a->signal.expires_at(SteadyClock::time_point::max());
      co_await a->signal.async_wait(asio::as_tuple(use_awaitable));
    }
    a->events.pop_front();
    a->outstanding_calls -= 1;
  }
  a->done = true;
  if (metrics_ && core::IsFinal(a->snap.global.status) && a->outcome.ok()) {
    double seconds = static_cast<double>(clock_.NowMs() - a->snap.global.create_time_ms) / 1000.0;
    metrics_->RecordTransaction(std::string(core::ToString(a->snap.global.trans_type)),
                                a->snap.global.status == core::GlobalStatus::kSucceed, seconds);
  }
  for (Timer* w : a->waiters) w->Cancel();
  a->waiters.clear();
  for (Timer* w : a->status_waiters) w->Cancel();
  if (auto it = shard->active.find(a->snap.global.gid);
      it != shard->active.end() && it->second == a) {
    shard->active.erase(it);
    active_count_.fetch_sub(1, std::memory_order_relaxed);
  }
  if (a->restart && !stopped_) {
    resuming_.fetch_add(1, std::memory_order_relaxed);
    asio::co_spawn(shard->ioc, ResumeOnShard(a->snap.global.gid), LogException{"resume"});
  }
}

awaitable<void> Engine::CallBranch(Shard* shard, std::shared_ptr<Active> a, size_t index,
                                   BranchCallSpec spec) {
  BranchAnswer answer = co_await shard->caller->Call(std::move(spec));
  core::Event ev;
  ev.kind = core::Event::Kind::kResult;
  ev.branch_index = index;
  const bool check_back = index == core::kCheckBackIndex;
  ev.result = check_back ? core::ClassifyCheckBack(answer.http_status, answer.body,
                                                   options_.settings.legacy_check_back)
                         : core::ClassifyHttp(answer.http_status, answer.body);
  const bool indeterminate =
      check_back && ev.result == core::CallClass::kError && answer.http_status == 200;
  if (indeterminate) {
    // A 200 whose body is not a real answer (an error page): never commit the message on it.
    spdlog::warn("gid {}: indeterminate check-back answer, the message stays prepared: {}",
                 a->snap.global.gid, answer.body.substr(0, 200));
    answer.body = "indeterminate check-back answer: " + answer.body;
  }
  if (ev.result == core::CallClass::kError && answer.http_status > 0) {
    ev.answer = fmt::format("HTTP {}: {}", answer.http_status, answer.body);
  } else {
    ev.answer = std::move(answer.body);
  }
  if (metrics_) {
    const bool ok = ev.result == core::CallClass::kSuccess;
    const std::string model(core::ToString(a->snap.global.trans_type));
    if (check_back) {
      metrics_->RecordBranch(model, "00", "msg", ok);
    } else {
      const core::BranchRow& row = a->snap.branches[index];
      metrics_->RecordBranch(model, row.branch_id, row.op, ok);
    }
  }
  if (ev.result == core::CallClass::kError && !options_.alert_webhook.empty()) {
    // §3.6: after an ERROR (not ONGOING) once the retry count reaches the limit. Branch rows count
    // their attempts; the check-back, which has no row, derives it from the backoff like DTM.
    int64_t retry_count = 0;
    std::string branch;
    if (check_back) {
      branch = a->snap.global.query_prepared;
      const int64_t i0 = core::InitialIntervalMs(a->snap.global.options, options_.settings);
      for (int64_t v = a->snap.global.next_cron_interval_ms; i0 > 0 && v >= 2 * i0; v /= 2) {
        ++retry_count;
      }
    } else {
      const core::BranchRow& row = a->snap.branches[index];
      branch = row.url;
      retry_count = row.attempts + 1;
    }
    // An indeterminate check-back answer alerts at once: an operator must look at the producer.
    if (indeterminate || retry_count >= options_.alert_retry_limit) {
      BranchCallSpec alert;
      alert.method = "POST";
      alert.url = options_.alert_webhook;
      alert.headers.emplace_back("Content-Type", "application/json");
      alert.timeout_ms = options_.settings.request_timeout_ms;
      alert.body = boost::json::serialize(boost::json::object{
          {"gid", a->snap.global.gid},
          {"status", core::ToString(a->snap.global.status)},
          {"branch", branch},
          {"error", ev.answer.substr(0, 1024)},
          {"retry_count", retry_count},
          {"kind", indeterminate ? "indeterminate_check_back"
                                 : (check_back ? "check_back_error" : "branch_error")}});
      asio::co_spawn(shard->ioc, SendAlert(shard, std::move(alert)), LogException{"alert"});
    }
  }
  a->events.push_back(std::move(ev));
  a->signal.cancel();
}

awaitable<void> Engine::SendAlert(Shard* shard, BranchCallSpec alert) {
  BranchAnswer answer = co_await shard->caller->Call(std::move(alert));
  if (answer.http_status != 200) {
    // A failing webhook is logged and ignored (§3.6).
    spdlog::warn("alert webhook failed: {} {}", answer.http_status, answer.body.substr(0, 200));
  }
}

awaitable<Status> Engine::WaitRound(std::shared_ptr<Active> a, int64_t deadline_ms, WaitFor what) {
  if (!a->done) {
    std::unique_ptr<Timer> timer = timers_->NewTimer(co_await asio::this_coro::executor);
    a->waiters.push_back(timer.get());
    co_await timer->WaitUntil(deadline_ms);
    std::erase(a->waiters, timer.get());
  }
  if (!a->done) co_return Status::Conflict("wait result not return success");
  if (!a->outcome.ok() && a->outcome.code() != Code::kConflict) co_return a->outcome;
  const core::GlobalTrans& g = a->snap.global;
  const core::GlobalStatus wanted =
      what == WaitFor::kSubmit ? core::GlobalStatus::kSucceed : core::GlobalStatus::kFailed;
  if (g.status == wanted) co_return Status::Ok();
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
  co_return Status::Conflict("wait result not return success");
}

awaitable<Status> Engine::ForceStop(std::string gid) {
  Shard& shard = ShardFor(gid);
  co_return co_await asio::co_spawn(shard.ioc, ForceStopOnShard(std::move(gid)), OnShardToken());
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

namespace {

constexpr const char* kTopicsCat = "topics";
constexpr int kTopicCasAttempts = 8;

std::string EncodeSubscribers(const std::vector<Engine::Subscriber>& subs) {
  boost::json::array a;
  for (const auto& s : subs) a.push_back(boost::json::object{{"url", s.url}, {"remark", s.remark}});
  return boost::json::serialize(a);
}

Result<std::vector<Engine::Subscriber>> DecodeSubscribers(const std::string& topic,
                                                          const std::string& v) {
  auto corrupt = [&] {
    return Status::Internal("topic " + topic + ": stored value is not a list");
  };
  boost::system::error_code ec;
  boost::json::value parsed = boost::json::parse(v, ec);
  if (ec || !parsed.is_array()) return corrupt();
  std::vector<Engine::Subscriber> subs;
  for (const auto& e : parsed.get_array()) {
    if (!e.is_object()) return corrupt();
    Engine::Subscriber s;
    const auto& o = e.get_object();
    if (const auto* u = o.if_contains("url"); u != nullptr && u->is_string()) {
      s.url = std::string(u->get_string());
    }
    if (const auto* r = o.if_contains("remark"); r != nullptr && r->is_string()) {
      s.remark = std::string(r->get_string());
    }
    subs.push_back(std::move(s));
  }
  return subs;
}

}  // namespace

awaitable<Result<std::vector<Engine::Subscriber>>> Engine::TopicSubscribers(std::string topic) {
  auto row = co_await AwaitStore<Result<std::optional<store::KvRow>>>(
      [&](auto cb) { store_.KvGet(kTopicsCat, topic, std::move(cb)); });
  if (!row.ok()) co_return row.status();
  if (!row->has_value()) co_return std::vector<Subscriber>();
  co_return DecodeSubscribers(topic, (*row)->v);
}

awaitable<Status> Engine::ChangeTopic(
    const std::string& topic, bool create,
    const std::function<Status(std::vector<Subscriber>&)>& change) {
  for (int attempt = 0; attempt < kTopicCasAttempts; ++attempt) {
    auto row = co_await AwaitStore<Result<std::optional<store::KvRow>>>(
        [&](auto cb) { store_.KvGet(kTopicsCat, topic, std::move(cb)); });
    if (!row.ok()) co_return row.status();
    std::vector<Subscriber> subs;
    int64_t version = 0;
    if (row->has_value()) {
      auto decoded = DecodeSubscribers(topic, (*row)->v);
      if (!decoded.ok()) co_return decoded.status();
      subs = std::move(decoded).value();
      version = (*row)->version;
    } else if (!create) {
      co_return Status::NotFound("no such a topic");
    }
    if (Status s = change(subs); !s.ok()) co_return s;
    std::string v = EncodeSubscribers(subs);
    const int64_t now = clock_.NowMs();
    Status put = co_await AwaitStore<Status>([&](auto cb) {
      store_.KvPut(kTopicsCat, topic, std::move(v), version, now, std::move(cb));
    });
    if (put.code() != Code::kConflict) co_return put;
  }
  co_return Status::Unavailable("topic " + topic + " keeps changing concurrently; retry");
}

awaitable<Status> Engine::Subscribe(std::string topic, std::string url, std::string remark) {
  if (topic.empty()) co_return Status::InvalidArgument("empty topic");
  if (url.empty()) co_return Status::InvalidArgument("empty url");
  Status s = co_await ChangeTopic(topic, /*create=*/true, [&](std::vector<Subscriber>& subs) {
    for (const auto& sub : subs) {
      if (sub.url == url) return Status::AlreadyExists("this url exists");
    }
    subs.push_back(Subscriber{url, remark});
    return Status::Ok();
  });
  co_return s;
}

awaitable<Status> Engine::Unsubscribe(std::string topic, std::string url) {
  if (topic.empty()) co_return Status::InvalidArgument("empty topic");
  if (url.empty()) co_return Status::InvalidArgument("empty url");
  Status s = co_await ChangeTopic(topic, /*create=*/false, [&](std::vector<Subscriber>& subs) {
    auto it = std::find_if(subs.begin(), subs.end(),
                           [&](const Subscriber& sub) { return sub.url == url; });
    if (it == subs.end()) return Status::NotFound("no such an url");
    subs.erase(it);
    return Status::Ok();
  });
  co_return s;
}

awaitable<Status> Engine::DeleteTopic(std::string topic) {
  Status s = co_await AwaitStore<Status>(
      [&](auto cb) { store_.KvDelete(kTopicsCat, topic, std::move(cb)); });
  if (s.code() == Code::kNotFound) co_return Status::NotFound("storage: NotFound");
  co_return s;
}

awaitable<Result<store::KvPage>> Engine::ScanKv(std::string cat, int64_t before_id, int limit) {
  co_return co_await AwaitStore<Result<store::KvPage>>(
      [&](auto cb) { store_.KvScan(cat, before_id, limit, std::move(cb)); });
}

awaitable<Result<std::vector<store::KvRow>>> Engine::QueryKv(std::string cat, std::string key) {
  co_return co_await AwaitStore<Result<std::vector<store::KvRow>>>(
      [&](auto cb) { store_.KvQuery(cat, key, std::move(cb)); });
}

awaitable<void> Engine::ResumeOnShard(std::string gid) {
  // Counted by CronLoop when claimed; from here on the round (if any) counts in active_count_.
  struct Resumed {
    std::atomic<size_t>& n;
    ~Resumed() { n.fetch_sub(1, std::memory_order_relaxed); }
  } resumed{resuming_};
  Shard& shard = ShardFor(gid);
  if (stopped_ || shard.active.count(gid)) co_return;
  GidGuard guard = co_await LockGid(shard, gid);
  if (stopped_ || shard.active.count(gid)) co_return;
  Result<std::optional<core::TransSnapshot>> loaded = co_await LoadOnShard(gid);
  if (!loaded.ok()) {
    spdlog::error("gid {}: cannot load for recovery: {}", gid, loaded.status().ToString());
    co_return;
  }
  if (!loaded->has_value() || core::IsFinal((*loaded)->global.status)) co_return;
  if ((*loaded)->global.trans_type == core::TransType::kWorkflow) co_return;  // later issue
  // Another coordinator claimed it after this one did (its lease had run out): it is theirs.
  if ((*loaded)->global.owner != options_.owner) co_return;
  if (stopped_ || shard.active.count(gid)) co_return;
  StartRound(shard, std::move(**loaded));
}

awaitable<void> Engine::CronLoop() {
  auto cron = cron_;
  const int64_t lease_ms = std::max(options_.settings.retry_interval_ms, options_.cron_interval_ms);
  while (!stopped_) {
    // Claimed transactions whose round has not started yet count too: the claim loop runs ahead
    // of the loads, and without them it would claim everything due at once.
    const size_t busy = active_count_.load() + resuming_.load();
    size_t room =
        busy < options_.max_active_transactions ? options_.max_active_transactions - busy : 0;
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
        resuming_.fetch_add(claimed, std::memory_order_relaxed);
        for (std::string& gid : *due) {
          Shard& shard = ShardFor(gid);
          asio::co_spawn(shard.ioc, ResumeOnShard(std::move(gid)), LogException{"resume"});
        }
      }
    }
    if (stopped_) break;
    if (limit > 0 && claimed == static_cast<size_t>(limit)) continue;  // more may be due at once
    co_await cron->timer->WaitUntil(clock_.NowMs() + options_.cron_interval_ms);
  }
}

}  // namespace dtx::engine
