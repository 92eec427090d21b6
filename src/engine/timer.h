// The time seam of the engine. Every wait of the engine for a moment on its Clock (a wait_result
// deadline, the recovery loop's sleep) goes through a Timer, so the same engine runs on real time
// in production (Asio timers) and on virtual time in the simulator (src/sim). Waits for an event —
// a branch result, a gid lock — are not waits for time and do not use it.
//
// Thread-safety: a Timer belongs to one executor; WaitUntil and Cancel are called on it.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <memory>

#include "util/clock.h"

namespace dtx::engine {

class Timer {
 public:
  virtual ~Timer() = default;
  // Completes when the engine's Clock reads >= deadline_ms, or earlier when Cancel() is called
  // (callers re-check their condition either way). One wait at a time.
  virtual boost::asio::awaitable<void> WaitUntil(int64_t deadline_ms) = 0;
  // Ends the current wait early; no effect when nothing waits.
  virtual void Cancel() = 0;
};

class TimerFactory {
 public:
  virtual ~TimerFactory() = default;
  virtual std::unique_ptr<Timer> NewTimer(boost::asio::any_io_executor executor) = 0;
};

// Asio steady timers; a deadline on `clock` becomes a relative wait from clock.NowMs().
std::unique_ptr<TimerFactory> NewAsioTimerFactory(const Clock& clock);

}  // namespace dtx::engine
