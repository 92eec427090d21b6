// Histogram: a fixed-bucket distribution (Prometheus "histogram" semantics: cumulative buckets by
// upper bound, a count and a sum), recorded with relaxed atomics so that a hot path (a store's
// writer thread, a branch call) pays a few uncontended atomic adds and never takes a lock.
//
// Thread-safe: Observe and Read may be called from any thread at once. A Read racing with Observe
// may see the count and a bucket a moment apart (each value is exact on its own); Prometheus
// tolerates that. The bucket bounds are fixed at construction (ascending, at most kMaxBuckets).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "util/assert.h"

namespace dtx {

class Histogram {
 public:
  static constexpr size_t kMaxBuckets = 32;

  // `upper_bounds` ascending; values above the last go to the implicit +Inf bucket.
  explicit Histogram(std::initializer_list<double> upper_bounds) : bounds_(upper_bounds) {
    DTX_ASSERT(!bounds_.empty() && bounds_.size() <= kMaxBuckets);
    DTX_ASSERT(std::is_sorted(bounds_.begin(), bounds_.end()));
  }
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  void Observe(double v) {
    const size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) -
                                         bounds_.begin());  // == size(): +Inf
    buckets_[i].fetch_add(1, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(v, std::memory_order_relaxed);
  }

  struct Snapshot {
    std::vector<double> bounds;        // upper bounds, without +Inf
    std::vector<uint64_t> cumulative;  // bounds.size() + 1 entries; the last one is +Inf (= count)
    uint64_t count = 0;
    double sum = 0;
  };

  Snapshot Read() const {
    Snapshot s;
    s.bounds = bounds_;
    s.cumulative.resize(bounds_.size() + 1);
    uint64_t running = 0;
    for (size_t i = 0; i <= bounds_.size(); ++i) {
      running += buckets_[i].load(std::memory_order_relaxed);
      s.cumulative[i] = running;
    }
    s.count = running;  // consistent with the buckets (count_ may be a moment ahead)
    s.sum = sum_.load(std::memory_order_relaxed);
    return s;
  }

  uint64_t count() const { return count_.load(std::memory_order_relaxed); }

 private:
  const std::vector<double> bounds_;
  std::array<std::atomic<uint64_t>, kMaxBuckets + 1> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

}  // namespace dtx
