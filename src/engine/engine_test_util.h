// Test-only: runs an Engine on fake time, on the test's own thread. A FakeClock, timers that fire
// only when the test moves that clock (ManualTimerFactory), and an IoPool(1) that is never started:
// the test polls its io_context itself. Nothing waits on the wall clock, and a run is the same
// every time.
#pragma once

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "engine/timer.h"
#include "runtime/io_pool.h"
#include "util/clock.h"

namespace dtx::engine::testing {

class ManualTimerFactory;

// A Timer whose deadline is reached when the test advances the FakeClock past it.
class ManualTimer final : public Timer {
 public:
  ManualTimer(boost::asio::any_io_executor ex, ManualTimerFactory& factory)
      : wake_(ex), factory_(factory) {}
  ~ManualTimer() override;
  boost::asio::awaitable<void> WaitUntil(int64_t deadline_ms) override;
  void Cancel() override { wake_.cancel(); }
  int64_t deadline_ms() const { return deadline_ms_; }

 private:
  boost::asio::steady_timer wake_;  // never expires by itself; cancelled to wake the waiter
  ManualTimerFactory& factory_;
  int64_t deadline_ms_ = 0;
};

class ManualTimerFactory final : public TimerFactory {
 public:
  explicit ManualTimerFactory(FakeClock& clock) : clock_(clock) {}
  std::unique_ptr<Timer> NewTimer(boost::asio::any_io_executor ex) override {
    return std::make_unique<ManualTimer>(ex, *this);
  }
  const FakeClock& clock() const { return clock_; }
  // The earliest deadline of a waiting timer, if any.
  std::optional<int64_t> NextDeadline() const {
    std::optional<int64_t> next;
    for (const ManualTimer* t : waiting_) {
      if (!next || t->deadline_ms() < *next) next = t->deadline_ms();
    }
    return next;
  }
  // Wakes every waiting timer whose deadline the clock has reached.
  void FireDue() {
    std::vector<ManualTimer*> due;
    for (ManualTimer* t : waiting_) {
      if (t->deadline_ms() <= clock_.NowMs()) due.push_back(t);
    }
    for (ManualTimer* t : due) t->Cancel();
  }
  void Add(ManualTimer* t) { waiting_.push_back(t); }
  void Remove(ManualTimer* t) { std::erase(waiting_, t); }

 private:
  FakeClock& clock_;
  std::vector<ManualTimer*> waiting_;
};

inline ManualTimer::~ManualTimer() { factory_.Remove(this); }

inline boost::asio::awaitable<void> ManualTimer::WaitUntil(int64_t deadline_ms) {
  if (factory_.clock().NowMs() >= deadline_ms) co_return;
  deadline_ms_ = deadline_ms;
  wake_.expires_at(std::chrono::steady_clock::time_point::max());
  factory_.Add(this);
  co_await wake_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
  factory_.Remove(this);
}

// The fake world of an engine test: clock, timers and one unstarted shard context.
class FakeRuntime {
 public:
  FakeRuntime() : timers_(clock_), pool_(1) {}
  FakeClock& clock() { return clock_; }
  ManualTimerFactory& timers() { return timers_; }
  runtime::IoPool& pool() { return pool_; }
  boost::asio::io_context& context() { return pool_.Get(0); }

  // Runs ready handlers until none is ready; returns how many ran.
  size_t Poll() {
    size_t total = 0;
    for (;;) {
      if (context().stopped()) context().restart();
      const size_t n = context().poll();
      if (n == 0) return total;
      total += n;
    }
  }

  // Runs handlers and moves the clock from timer deadline to timer deadline until `done` holds, or
  // until the clock would pass now + `limit_ms`. Returns done().
  bool RunUntil(const std::function<bool()>& done, int64_t limit_ms = 600'000) {
    const int64_t limit = clock_.NowMs() + limit_ms;
    for (;;) {
      Poll();
      if (done()) return true;
      std::optional<int64_t> next = timers_.NextDeadline();
      if (!next || *next > limit) return false;
      clock_.Set(std::max(clock_.NowMs(), *next));
      timers_.FireDue();
    }
  }

  // Moves the clock forward by `ms`, firing every timer due on the way, in deadline order.
  void Advance(int64_t ms) {
    const int64_t target = clock_.NowMs() + ms;
    RunUntil([] { return false; }, ms);
    clock_.Set(std::max(clock_.NowMs(), target));
    timers_.FireDue();
    Poll();
  }

  // Starts `aw` on the shard context and runs the world until it completes (or `limit_ms` of fake
  // time pass: then nullopt).
  template <class T>
  std::optional<T> Run(boost::asio::awaitable<T> aw, int64_t limit_ms = 600'000) {
    auto result = std::make_shared<std::optional<T>>();
    Spawn(std::move(aw), result);
    RunUntil([&] { return result->has_value(); }, limit_ms);
    return std::move(*result);
  }

  // Starts `aw` on the shard context without running it; `*result` is set when it completes.
  template <class T>
  void Spawn(boost::asio::awaitable<T> aw, std::shared_ptr<std::optional<T>> result) {
    boost::asio::co_spawn(context(), Deliver(std::move(aw), std::move(result)),
                          boost::asio::detached);
  }

 private:
  template <class T>
  static boost::asio::awaitable<void> Deliver(boost::asio::awaitable<T> aw,
                                              std::shared_ptr<std::optional<T>> result) {
    *result = co_await std::move(aw);
  }

  FakeClock clock_;
  ManualTimerFactory timers_;
  runtime::IoPool pool_;  // never started
};

}  // namespace dtx::engine::testing
