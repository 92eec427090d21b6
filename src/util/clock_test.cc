#include "util/clock.h"

#include <gtest/gtest.h>

namespace dtx {
namespace {

TEST(ClockTest, FormatsUtcWithMillis) {
  EXPECT_EQ(FormatTimeMs(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatTimeMs(1735696800123), "2025-01-01T02:00:00.123Z");
}

TEST(ClockTest, FakeClockMovesOnlyWhenTold) {
  FakeClock c(1000);
  EXPECT_EQ(c.NowMs(), 1000);
  c.Advance(500);
  EXPECT_EQ(c.NowMs(), 1500);
}

}  // namespace
}  // namespace dtx
