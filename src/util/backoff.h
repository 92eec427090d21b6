// The retry backoff of the relay and the inbox (docs/outbox.md): a delay that doubles from `base`
// per attempt up to `max`, each drawn with +-25 % jitter (so that many clients that failed together
// do not retry together), never below 1 ms. Header-only: dtx_relay and the SDK's inbox share it.
//
// Thread-safety: a RetryBackoff object belongs to one thread; Delay is thread-safe (a
// thread-local generator).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>

namespace dtx {

class RetryBackoff {
 public:
  using ms = std::chrono::milliseconds;

  explicit RetryBackoff(ms base = ms(100), ms max = ms(5000)) : base_(base), max_(max) {}

  // The delay before retry number `attempt` (1 = the first retry): base * 2^(attempt-1), at most
  // max, jittered.
  static ms Delay(int attempt, ms base, ms max) {
    thread_local std::mt19937 gen{std::random_device{}()};
    int64_t d = std::max<int64_t>(base.count(), 1);
    for (int i = 1; i < attempt && d < max.count(); ++i) d *= 2;
    d = std::min<int64_t>(d, std::max<int64_t>(max.count(), 1));
    std::uniform_int_distribution<int64_t> jitter(d * 3 / 4, d * 5 / 4);
    return ms(std::max<int64_t>(1, jitter(gen)));
  }

  ms Next() { return Delay(++attempt_, base_, max_); }  // the next delay of this series
  void Reset() { attempt_ = 0; }                        // after a success

 private:
  ms base_, max_;
  int attempt_ = 0;
};

}  // namespace dtx
