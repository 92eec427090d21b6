// Clock: the seam for time. Everything in dtx reads wall time through a Clock so tests can run on
// fake time. Times are UTC milliseconds since the Unix epoch (int64). Implementations are
// thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace dtx {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowMs() const = 0;
};

// The real system clock (CLOCK_REALTIME, UTC).
class SystemClock final : public Clock {
 public:
  int64_t NowMs() const override;
  static SystemClock& Instance();
};

// A clock that only moves when told to; for tests.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t now_ms = 1'700'000'000'000) : now_ms_(now_ms) {}
  int64_t NowMs() const override { return now_ms_.load(); }
  void Set(int64_t now_ms) { now_ms_.store(now_ms); }
  void Advance(int64_t delta_ms) { now_ms_.fetch_add(delta_ms); }

 private:
  std::atomic<int64_t> now_ms_;
};

// RFC 3339 in UTC with milliseconds and 'Z', e.g. 2025-01-01T02:00:00.000Z.
std::string FormatTimeMs(int64_t epoch_ms);

}  // namespace dtx
