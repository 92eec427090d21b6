#include "util/backoff.h"

#include <gtest/gtest.h>

namespace dtx {
namespace {

using ms = std::chrono::milliseconds;

TEST(RetryBackoff, DoublesWithJitterUpToTheCapAndResets) {
  RetryBackoff b;  // 100 ms .. 5 s
  const int64_t expected[] = {100, 200, 400, 800, 1600, 3200, 5000, 5000};
  for (int64_t e : expected) {
    const int64_t d = b.Next().count();
    EXPECT_GE(d, e * 3 / 4);
    EXPECT_LE(d, e * 5 / 4);
  }
  b.Reset();
  EXPECT_LE(b.Next().count(), 125);
  for (int i = 0; i < 1000; ++i) {  // the cap holds for any attempt, and 1 ms is the floor
    EXPECT_LE(RetryBackoff::Delay(1000, ms(10), ms(40)).count(), 50);
    EXPECT_GE(RetryBackoff::Delay(1, ms(1), ms(1)).count(), 1);
  }
}

}  // namespace
}  // namespace dtx
