// Virtual time for the deterministic simulator: one world clock, timed events run in (time, seq)
// order, per-coordinator clocks with a fixed skew, engine timers on that clock, and the driver that
// runs every io_context of the world on one thread in an order chosen by the seeded RNG.
//
// Nothing here reads the wall clock or starts a thread: a run is a pure function of the seed.
#pragma once

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "engine/timer.h"
#include "util/clock.h"

namespace dtx::sim {

using Rng = std::mt19937_64;

// The world's time in ms (epoch-like values, so they look like real timestamps in traces).
class VirtualTime {
 public:
  explicit VirtualTime(int64_t start_ms) : now_ms_(start_ms) {}
  int64_t now_ms() const { return now_ms_; }
  // Runs `fn` when the world reaches `at_ms` (now if earlier). Returns an id for Cancel.
  uint64_t At(int64_t at_ms, std::function<void()> fn);
  uint64_t After(int64_t delay_ms, std::function<void()> fn) {
    return At(now_ms_ + delay_ms, std::move(fn));
  }
  void Cancel(uint64_t id);
  // Time of the earliest pending event, or -1.
  int64_t NextEventTime() const;
  // Advances to the earliest event and runs it; false if there is none.
  bool RunNext();
  size_t pending() const { return events_.size(); }

 private:
  int64_t now_ms_;
  uint64_t next_seq_ = 1;
  std::map<std::pair<int64_t, uint64_t>, std::function<void()>> events_;
  std::map<uint64_t, int64_t> time_of_;  // id (= seq) -> time, for Cancel
};

// A coordinator's clock: the world's time plus a fixed skew (bounded clock skew between nodes).
class SkewedClock final : public Clock {
 public:
  SkewedClock(const VirtualTime& time, int64_t skew_ms) : time_(time), skew_ms_(skew_ms) {}
  int64_t NowMs() const override { return time_.now_ms() + skew_ms_; }
  int64_t skew_ms() const { return skew_ms_; }

 private:
  const VirtualTime& time_;
  int64_t skew_ms_;
};

// engine::TimerFactory on virtual time: a deadline on `clock` fires when the world reaches it.
class VirtualTimerFactory final : public engine::TimerFactory {
 public:
  VirtualTimerFactory(VirtualTime& time, const SkewedClock& clock) : time_(time), clock_(clock) {}
  std::unique_ptr<engine::Timer> NewTimer(boost::asio::any_io_executor executor) override;

 private:
  VirtualTime& time_;
  const SkewedClock& clock_;
};

// Runs the world: io_contexts (each tagged with a group, e.g. one coordinator) and timed events.
class Driver {
 public:
  Driver(VirtualTime& time, Rng& rng) : time_(time), rng_(rng) {}
  void Add(boost::asio::io_context* ctx, int group);
  void Remove(boost::asio::io_context* ctx);
  // A paused group's contexts are not run (a process stopped by a GC pause or SIGSTOP).
  void SetPaused(int group, bool paused);
  // Runs ready handlers, one at a time from a randomly chosen context, until none is ready;
  // returns how many ran.
  size_t RunReady();
  // Alternates RunReady and the next timed event until `done()` or the world passes `until_ms`.
  // Returns done().
  bool RunUntil(const std::function<bool()>& done, int64_t until_ms);
  uint64_t handlers_run() const { return handlers_run_; }

 private:
  struct Ctx {
    boost::asio::io_context* ctx;
    int group;
  };
  VirtualTime& time_;
  Rng& rng_;
  std::vector<Ctx> contexts_;
  std::vector<int> paused_;
  uint64_t handlers_run_ = 0;
};

}  // namespace dtx::sim
