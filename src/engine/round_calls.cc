// One branch call of a round: it goes through the BranchCaller seam, its answer is classified
// (core/retry_policy.h) into the event the round feeds back to core::Step, and it is counted in the
// metrics; an ERROR answer may raise an alert (ops/alerts.h), sent through the same seam.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <chrono>

#include "core/machine.h"
#include "engine/engine_internal.h"
#include "ops/alerts.h"

namespace dtx::engine {

using asio::awaitable;

namespace {

struct Classified {
  core::Event event;
  // A check-back's 200 whose body is not a real answer (an error page): the message must never be
  // committed on it.
  bool indeterminate = false;
};

Classified Classify(const std::string& gid, size_t index, BranchAnswer answer,
                    bool legacy_check_back) {
  Classified c;
  core::Event& ev = c.event;
  ev.kind = core::Event::Kind::kResult;
  ev.branch_index = index;
  const bool check_back = index == core::kCheckBackIndex;
  ev.result = check_back
                  ? core::ClassifyCheckBack(answer.http_status, answer.body, legacy_check_back)
                  : core::ClassifyHttp(answer.http_status, answer.body);
  c.indeterminate = check_back && ev.result == core::CallClass::kError && answer.http_status == 200;
  if (c.indeterminate) {
    spdlog::warn("gid {}: indeterminate check-back answer, the message stays prepared: {}", gid,
                 answer.body.substr(0, 200));
    answer.body = "indeterminate check-back answer: " + answer.body;
  }
  if (ev.result == core::CallClass::kError && answer.http_status > 0) {
    ev.answer = fmt::format("HTTP {}: {}", answer.http_status, answer.body);
  } else {
    ev.answer = std::move(answer.body);
  }
  return c;
}

// The facts of a failed call for ops::BuildAlert. Branch rows count their attempts; the check-back,
// which has no row, derives its retry count from the backoff like DTM.
ops::FailedCall FailedCallOf(const core::TransSnapshot& snap, const core::Event& ev,
                             bool indeterminate, const core::Settings& settings) {
  ops::FailedCall call;
  call.gid = snap.global.gid;
  call.status = std::string(core::ToString(snap.global.status));
  call.error = ev.answer;
  call.check_back = ev.branch_index == core::kCheckBackIndex;
  call.indeterminate = indeterminate;
  if (call.check_back) {
    call.branch = snap.global.query_prepared;
    const int64_t i0 = core::InitialIntervalMs(snap.global.options, settings);
    for (int64_t v = snap.global.next_cron_interval_ms; i0 > 0 && v >= 2 * i0; v /= 2) {
      ++call.retry_count;
    }
  } else {
    const core::BranchRow& row = snap.branches[ev.branch_index];
    call.branch = row.url;
    call.retry_count = row.attempts + 1;
  }
  return call;
}

// Its own coroutine: written inline in CallBranch (the timer a local of the if block), GCC 12 built
// a CallBranch that never completed, even for calls that did not pause.
awaitable<void> PauseUntil(TimerFactory& timers, int64_t until_ms) {
  asio::any_io_executor executor = co_await asio::this_coro::executor;
  std::unique_ptr<Timer> timer = timers.NewTimer(executor);
  co_await timer->WaitUntil(until_ms);
}

// The participant's host[:port], the label of the latency metric (no scheme, path or credentials).
std::string HostOf(std::string_view url) {
  if (auto p = url.find("://"); p != std::string_view::npos) url.remove_prefix(p + 3);
  url = url.substr(0, url.find_first_of("/?#"));
  if (auto at = url.rfind('@'); at != std::string_view::npos) url.remove_prefix(at + 1);
  return url.empty() ? std::string("unknown") : std::string(url);
}

}  // namespace

awaitable<BranchAnswer> Engine::MeteredCall(Shard* shard, BranchCallSpec spec) {
  std::string host = metrics_ ? HostOf(spec.url) : std::string();
  const auto start = std::chrono::steady_clock::now();
  calls_in_flight_.fetch_add(1, std::memory_order_relaxed);
  BranchAnswer answer = co_await shard->caller->Call(std::move(spec));
  calls_in_flight_.fetch_sub(1, std::memory_order_relaxed);
  if (metrics_) {
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    metrics_->RecordBranchCall(host, took.count());
  }
  co_return answer;
}

awaitable<void> Engine::CallBranch(Shard* shard, ActivePtr a, size_t index, BranchCallSpec spec) {
  const int64_t start_ms = clock_.NowMs();
  BranchAnswer answer = co_await MeteredCall(shard, std::move(spec));
  const int http_status = answer.http_status;
  Classified c =
      Classify(a->snap.global.gid, index, std::move(answer), options_.settings.legacy_check_back);
  c.event.http_status = http_status;
  c.event.latency_ms = clock_.NowMs() - start_ms;
  RecordCallMetric(*a, c.event);
  if (c.event.result == core::CallClass::kError) MaybeAlert(shard, *a, c.event, c.indeterminate);
  if (index != core::kCheckBackIndex &&
      core::SagaRetriesAtOnce(a->snap.global, index, c.event.result) && !stopped_) {
    // A saga's retry_limit re-invokes the action at once; a short backoff spaces the calls (issue
    // 15, a difference from DTM). No call is in flight meanwhile, and the next one starts only
    // after the round's fenced write, so the pause cannot outlive a lease unnoticed.
    const int64_t until_ms =
        clock_.NowMs() + core::ImmediateRetryDelayMs(a->snap.global.retry_count, options_.settings);
    co_await PauseUntil(*timers_, until_ms);
  }
  a->events.push_back(std::move(c.event));
  a->signal.cancel();
}

void Engine::RecordCallMetric(const Active& a, const core::Event& ev) {
  if (!metrics_) return;
  const bool ok = ev.result == core::CallClass::kSuccess;
  const std::string model(core::ToString(a.snap.global.trans_type));
  if (ev.branch_index == core::kCheckBackIndex) {
    metrics_->RecordBranch(model, "00", "msg", ok);
  } else {
    const core::BranchRow& row = a.snap.branches[ev.branch_index];
    metrics_->RecordBranch(model, row.branch_id, row.op, ok);
  }
}

void Engine::MaybeAlert(Shard* shard, const Active& a, const core::Event& ev, bool indeterminate) {
  if (options_.alert_webhook.empty()) return;
  ops::AlertOptions alert_options;
  alert_options.webhook = options_.alert_webhook;
  alert_options.retry_limit = options_.alert_retry_limit;
  alert_options.timeout_ms = options_.settings.request_timeout_ms;
  std::optional<ops::AlertRequest> alert =
      ops::BuildAlert(alert_options, FailedCallOf(a.snap, ev, indeterminate, options_.settings));
  if (!alert) return;
  BranchCallSpec spec;
  spec.method = "POST";
  spec.url = std::move(alert->url);
  spec.headers.emplace_back("Content-Type", "application/json");
  spec.timeout_ms = alert->timeout_ms;
  spec.body = std::move(alert->body);
  asio::co_spawn(shard->ioc, SendAlert(shard, std::move(spec)), LogException{"alert"});
}

awaitable<void> Engine::SendAlert(Shard* shard, BranchCallSpec alert) {
  BranchAnswer answer = co_await shard->caller->Call(std::move(alert));
  ops::LogAlertAnswer(answer.http_status, answer.body);
}

}  // namespace dtx::engine
