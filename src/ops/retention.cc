#include "ops/retention.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <chrono>

#include "engine/store_await.h"

namespace dtx::ops {

namespace asio = boost::asio;
using asio::awaitable;
using engine::AwaitStore;

namespace {

// The key-value categories of the audit log ("dtx-audit" and "dtx-audit:<gid>") and of the resolve
// marks (ops/admin.cc).
constexpr const char* kAuditCats[] = {"dtx-audit", "dtx-resolved"};

awaitable<void> Pause(int64_t ms) {
  if (ms <= 0) co_return;
  asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::milliseconds(ms));
  co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
}

}  // namespace

struct RetentionJob::State {
  store::Store& store;
  Clock& clock;
  Metrics* metrics;
  RetentionOptions options;
  std::atomic<bool> stopped{false};
  std::unique_ptr<asio::steady_timer> timer;  // the loop's, on its executor

  State(store::Store& s, Clock& c, Metrics* m, RetentionOptions o)
      : store(s), clock(c), metrics(m), options(o) {}

  awaitable<Result<RetentionRun>> Run();
  static awaitable<void> Loop(std::shared_ptr<State> self);
};

Status ValidateRetention(const RetentionOptions& o) {
  if (o.retain_finished_ms < 0 || o.retain_audit_ms < 0) {
    return Status::InvalidArgument("retention durations must be >= 0");
  }
  if (o.batch_rows < 1 || o.batch_rows > store::kMaxRetentionBatch) {
    return Status::InvalidArgument(
        fmt::format("retention batch must be 1..{}", store::kMaxRetentionBatch));
  }
  if (o.max_batches_per_run < 1 || o.max_batches_per_run > 100'000) {
    return Status::InvalidArgument("retention batches per run must be 1..100000");
  }
  if (o.pause_ms < 0 || o.interval_ms < 1) {
    return Status::InvalidArgument("retention pause must be >= 0 and interval >= 1 ms");
  }
  return Status::Ok();
}

RetentionJob::RetentionJob(store::Store& store, Clock& clock, Metrics* metrics,
                           RetentionOptions options)
    : state_(std::make_shared<State>(store, clock, metrics, options)) {}

RetentionJob::~RetentionJob() { Stop(); }

void RetentionJob::Start(asio::any_io_executor executor) {
  const RetentionOptions& o = state_->options;
  if (o.retain_finished_ms == 0 && o.retain_audit_ms == 0) return;
  state_->timer = std::make_unique<asio::steady_timer>(executor);
  asio::co_spawn(executor, State::Loop(state_), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("retention loop: {}", ex.what());
    }
  });
}

void RetentionJob::Stop() {
  if (state_->stopped.exchange(true) || !state_->timer) return;
  auto state = state_;
  asio::post(state->timer->get_executor(), [state] { state->timer->cancel(); });
}

awaitable<Result<RetentionRun>> RetentionJob::RunOnce() { return state_->Run(); }

awaitable<void> RetentionJob::State::Loop(std::shared_ptr<State> self) {
  while (!self->stopped.load()) {
    Result<RetentionRun> run = co_await self->Run();
    if (!run.ok()) {
      spdlog::warn("retention: {} (tried again in {} ms)", run.status().ToString(),
                   self->options.interval_ms);
    } else if (run->transactions + run->audit > 0) {
      spdlog::info("retention: deleted {} finished transactions ({} branch rows), {} audit rows{}",
                   run->transactions, run->branches, run->audit,
                   run->more ? "; more left for the next run" : "");
    }
    if (self->stopped.load()) break;
    self->timer->expires_after(std::chrono::milliseconds(self->options.interval_ms));
    co_await self->timer->async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

awaitable<Result<RetentionRun>> RetentionJob::State::Run() {
  RetentionRun run;
  const int64_t now = clock.NowMs();
  const RetentionOptions& o = options;
  if (o.retain_finished_ms > 0) {
    const int64_t before = now - o.retain_finished_ms;
    for (int i = 0;; ++i) {
      if (i == o.max_batches_per_run) {
        run.more = true;
        break;
      }
      if (i > 0) co_await Pause(o.pause_ms);
      if (stopped.load()) co_return run;
      Result<store::RetentionCount> n = co_await AwaitStore<Result<store::RetentionCount>>(
          [&](auto cb) { store.DeleteFinished(before, o.batch_rows, std::move(cb)); });
      if (!n.ok()) co_return n.status();
      run.batches += 1;
      run.transactions += n->transactions;
      run.branches += n->branches;
      if (metrics) {
        metrics->RecordRetentionDeleted("transactions", static_cast<uint64_t>(n->transactions));
        metrics->RecordRetentionDeleted("branches", static_cast<uint64_t>(n->branches));
      }
      if (n->transactions < o.batch_rows) break;
    }
  }
  if (o.retain_audit_ms > 0) {
    const int64_t before = now - o.retain_audit_ms;
    for (const char* cat : kAuditCats) {
      for (int i = 0;; ++i) {
        if (i == o.max_batches_per_run) {
          run.more = true;
          break;
        }
        if (i > 0) co_await Pause(o.pause_ms);
        if (stopped.load()) co_return run;
        std::string category = cat;
        Result<int64_t> n = co_await AwaitStore<Result<int64_t>>([&](auto cb) {
          store.DeleteKvBefore(std::move(category), before, o.batch_rows, std::move(cb));
        });
        if (!n.ok()) co_return n.status();
        run.batches += 1;
        run.audit += *n;
        if (metrics) metrics->RecordRetentionDeleted("audit", static_cast<uint64_t>(*n));
        if (*n < o.batch_rows) break;
      }
    }
  }
  co_return run;
}

}  // namespace dtx::ops
