// Unit tests of the retry policy and result classification (PROTOCOL.md §1.4, §3.3, §3.5, §5 #1;
// checklist CALL-01..03, CALL-07, SAGA-09).

#include "core/retry_policy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>

#include "core/model.h"

namespace dtx::core {
namespace {

constexpr int64_t kNow = 1'700'000'000'000;

// ---------------------------------------------------------------------------------------------------
// ClassifyHttp (§3.3).

struct HttpCase {
  int status;
  const char* body;
  CallClass want;
};

TEST(ClassifyHttpTest, Table) {
  const HttpCase cases[] = {
      // Rule 4: exactly 200 -> SUCCESS.
      {200, R"({"dtm_result":"SUCCESS"})", CallClass::kSuccess},
      {200, "", CallClass::kSuccess},
      {200, "null", CallClass::kSuccess},
      {200, "ok", CallClass::kSuccess},
      // CALL-01: FAILURE in the body, whatever the status (ONGOING not present).
      {200, R"({"dtm_result":"FAILURE"})", CallClass::kFailure},
      {500, R"({"dtm_result":"FAILURE","message":"x"})", CallClass::kFailure},
      {404, "FAILURE", CallClass::kFailure},
      {0, "FAILURE", CallClass::kFailure},
      {409, "", CallClass::kFailure},
      {409, "conflict", CallClass::kFailure},
      // CALL-02: ONGOING wins over everything.
      {200, R"({"dtm_result":"ONGOING"})", CallClass::kOngoing},
      {200, "the job is ONGOING", CallClass::kOngoing},
      {409, R"({"dtm_result":"ONGOING"})", CallClass::kOngoing},
      {425, "", CallClass::kOngoing},
      {425, "FAILURE", CallClass::kOngoing},
      {500, "ONGOING FAILURE", CallClass::kOngoing},
      // CALL-03: anything but exactly 200 without those words -> ERROR.
      {201, "", CallClass::kError},
      {204, "", CallClass::kError},
      {302, "", CallClass::kError},
      {400, "bad request", CallClass::kError},
      {404, "not found", CallClass::kError},
      {500, "internal error", CallClass::kError},
      {503, "", CallClass::kError},
      {0, "connection refused", CallClass::kError},  // no answer
      {-1, "timeout", CallClass::kError},
      // The body tests are case-sensitive.
      {200, "failure", CallClass::kSuccess},
      {200, "ongoing", CallClass::kSuccess},
      {500, "failure", CallClass::kError},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(testing::Message() << c.status << " '" << c.body << "'");
    EXPECT_EQ(ClassifyHttp(c.status, c.body), c.want)
        << "got " << ToString(ClassifyHttp(c.status, c.body)) << ", want " << ToString(c.want);
  }
}

TEST(ClassifyHttpTest, CallClassNames) {
  EXPECT_EQ(ToString(CallClass::kSuccess), "SUCCESS");
  EXPECT_EQ(ToString(CallClass::kFailure), "FAILURE");
  EXPECT_EQ(ToString(CallClass::kOngoing), "ONGOING");
  EXPECT_EQ(ToString(CallClass::kError), "ERROR");
}

// ---------------------------------------------------------------------------------------------------
// InitialIntervalMs (§1.4 I0).

TransOptions Opts(int64_t retry_interval_s, int64_t timeout_to_fail_s) {
  TransOptions o;
  o.retry_interval_s = retry_interval_s;
  o.timeout_to_fail_s = timeout_to_fail_s;
  return o;
}

TEST(InitialIntervalTest, Rules) {
  Settings s;  // server retry interval 10 s
  EXPECT_EQ(InitialIntervalMs(Opts(0, 0), s), 10'000);
  EXPECT_EQ(InitialIntervalMs(Opts(150, 0), s), 150'000) << "retry_interval wins";
  EXPECT_EQ(InitialIntervalMs(Opts(150, 3), s), 150'000) << "retry_interval wins over timeout";
  EXPECT_EQ(InitialIntervalMs(Opts(1, 0), s), 1'000);
  EXPECT_EQ(InitialIntervalMs(Opts(0, 3), s), 3'000) << "short timeout_to_fail";
  EXPECT_EQ(InitialIntervalMs(Opts(0, 9), s), 9'000);
  EXPECT_EQ(InitialIntervalMs(Opts(0, 10), s), 10'000) << "not shorter than the server value";
  EXPECT_EQ(InitialIntervalMs(Opts(0, 35), s), 10'000);
  EXPECT_EQ(InitialIntervalMs(Opts(-5, -5), s), 10'000) << "non-positive values are ignored";
}

TEST(InitialIntervalTest, FractionalServerInterval) {
  Settings s;
  s.retry_interval_ms = 2'500;  // --retry-interval 2.5
  EXPECT_EQ(InitialIntervalMs(Opts(0, 0), s), 2'500);
  EXPECT_EQ(InitialIntervalMs(Opts(0, 2), s), 2'000);
  EXPECT_EQ(InitialIntervalMs(Opts(0, 3), s), 2'500);
}

// ---------------------------------------------------------------------------------------------------
// TimeoutToFailMs and RequestTimeoutMs (§1.3, §1.4 table).

TEST(TimeoutToFailTest, PerMode) {
  Settings s;  // server timeout_to_fail 35 s
  GlobalTrans g;
  g.trans_type = TransType::kSaga;
  EXPECT_EQ(TimeoutToFailMs(g, s), 0) << "saga: never by default";
  g.options.timeout_to_fail_s = 60;
  EXPECT_EQ(TimeoutToFailMs(g, s), 60'000);
  for (TransType t : {TransType::kTcc, TransType::kXa, TransType::kMsg}) {
    SCOPED_TRACE(ToString(t));
    g.trans_type = t;
    g.options.timeout_to_fail_s = 0;
    EXPECT_EQ(TimeoutToFailMs(g, s), 35'000) << "server default";
    g.options.timeout_to_fail_s = 120;
    EXPECT_EQ(TimeoutToFailMs(g, s), 120'000);
  }
  g.trans_type = TransType::kWorkflow;
  g.options.timeout_to_fail_s = 0;
  EXPECT_EQ(TimeoutToFailMs(g, s), 0) << "workflow: not checked";
  g.options.timeout_to_fail_s = 5;
  EXPECT_EQ(TimeoutToFailMs(g, s), 0);
  s.timeout_to_fail_ms = 7'000;
  g.trans_type = TransType::kTcc;
  g.options.timeout_to_fail_s = 0;
  EXPECT_EQ(TimeoutToFailMs(g, s), 7'000);
}

TEST(RequestTimeoutTest, OptionOrServerDefault) {
  Settings s;
  EXPECT_EQ(RequestTimeoutMs(TransOptions{}, s), 3'000);
  TransOptions o;
  o.request_timeout_s = 6;
  EXPECT_EQ(RequestTimeoutMs(o, s), 6'000);
  s.request_timeout_ms = 1'500;
  EXPECT_EQ(RequestTimeoutMs(TransOptions{}, s), 1'500);
}

// ---------------------------------------------------------------------------------------------------
// NextWakeup (§1.4, §3.5, §5 #1).

void ExpectWithinJitter(const Wakeup& w, int64_t interval_ms) {
  EXPECT_EQ(w.interval_ms, interval_ms);
  EXPECT_GE(w.next_cron_time_ms, kNow + interval_ms * 9 / 10);
  EXPECT_LE(w.next_cron_time_ms, kNow + interval_ms * 11 / 10);
}

TEST(NextWakeupTest, SuccessResetsOngoingKeepsErrorDoubles) {
  Settings s;
  ExpectWithinJitter(NextWakeup(CallClass::kSuccess, 80'000, 10'000, s, "g", kNow), 10'000);
  ExpectWithinJitter(NextWakeup(CallClass::kOngoing, 80'000, 10'000, s, "g", kNow), 80'000);
  ExpectWithinJitter(NextWakeup(CallClass::kError, 80'000, 10'000, s, "g", kNow), 160'000);
  ExpectWithinJitter(NextWakeup(CallClass::kFailure, 80'000, 10'000, s, "g", kNow), 160'000);
}

TEST(NextWakeupTest, UnsetIntervalStartsAtI0) {
  Settings s;
  ExpectWithinJitter(NextWakeup(CallClass::kOngoing, 0, 10'000, s, "g", kNow), 10'000);
  ExpectWithinJitter(NextWakeup(CallClass::kError, 0, 10'000, s, "g", kNow), 20'000);
}

// SAGA-09 at the policy level: 150 s -> 300 s after one error, due between +270 s and +330 s.
TEST(NextWakeupTest, DtmTimingOneFiftyToThreeHundred) {
  Settings s;
  Wakeup w = NextWakeup(CallClass::kError, 150'000, 150'000, s, "saga-9", kNow);
  ExpectWithinJitter(w, 300'000);
  EXPECT_GT(w.next_cron_time_ms, kNow + 180'000);
  EXPECT_LE(w.next_cron_time_ms, kNow + 360'000);
  ExpectWithinJitter(NextWakeup(CallClass::kOngoing, 150'000, 150'000, s, "saga-9", kNow), 150'000);
}

TEST(NextWakeupTest, DoublingStopsAtTheCap) {
  Settings s;  // cap 1800 s
  ExpectWithinJitter(NextWakeup(CallClass::kError, 900'000, 10'000, s, "g", kNow), 1'800'000);
  ExpectWithinJitter(NextWakeup(CallClass::kError, 1'000'000, 10'000, s, "g", kNow), 1'800'000);
  ExpectWithinJitter(NextWakeup(CallClass::kError, 1'800'000, 10'000, s, "g", kNow), 1'800'000);
  // A stored interval above the cap (e.g. written by DTM) is capped even when kept.
  ExpectWithinJitter(NextWakeup(CallClass::kOngoing, 5'400'000, 10'000, s, "g", kNow), 1'800'000);
}

// CALL-07
TEST(NextWakeupTest, ManyErrorsNeverExceedTheCap) {
  for (int64_t cap : {1'800'000LL, 60'000LL, 25'000LL}) {
    Settings s;
    s.max_retry_interval_ms = cap;
    int64_t interval = 10'000;
    int64_t now = kNow;
    for (int i = 0; i < 200; ++i) {
      Wakeup w =
          NextWakeup(CallClass::kError, interval, 10'000, s, "gid-" + std::to_string(i), now);
      ASSERT_LE(w.interval_ms, cap);
      ASSERT_GE(w.interval_ms, interval) << "errors never shorten the interval";
      ASSERT_GE(w.next_cron_time_ms, now + w.interval_ms * 9 / 10);
      ASSERT_LE(w.next_cron_time_ms, now + w.interval_ms * 11 / 10);
      interval = w.interval_ms;
      now = w.next_cron_time_ms;
    }
    EXPECT_EQ(interval, cap);
  }
}

TEST(NextWakeupTest, NoOverflowWithHugeIntervals) {
  Settings s;
  s.max_retry_interval_ms = INT64_MAX / 4;
  Wakeup w = NextWakeup(CallClass::kError, INT64_MAX / 4, 10'000, s, "g", 0);
  EXPECT_EQ(w.interval_ms, INT64_MAX / 4);
  EXPECT_GT(w.next_cron_time_ms, 0);
}

TEST(NextWakeupTest, WakeupIsAlwaysInTheFuture) {
  Settings s;
  Wakeup w = NextWakeup(CallClass::kOngoing, 1, 1, s, "g", kNow);
  EXPECT_EQ(w.interval_ms, 1);
  EXPECT_EQ(w.next_cron_time_ms, kNow + 1);
}

TEST(NextWakeupTest, Deterministic) {
  Settings s;
  Wakeup a = NextWakeup(CallClass::kError, 20'000, 10'000, s, "gid", kNow);
  Wakeup b = NextWakeup(CallClass::kError, 20'000, 10'000, s, "gid", kNow);
  EXPECT_EQ(a.interval_ms, b.interval_ms);
  EXPECT_EQ(a.next_cron_time_ms, b.next_cron_time_ms);
  EXPECT_EQ(a.next_cron_time_ms,
            kNow + static_cast<int64_t>(40'000 * JitterFactor("gid", kNow, 40'000)));
}

// ---------------------------------------------------------------------------------------------------
// JitterFactor (§5 #1).

TEST(JitterTest, AlwaysWithinTenPercentAndNotConstant) {
  double lo = 2.0;
  double hi = 0.0;
  double sum = 0.0;
  std::set<double> distinct;
  int n = 0;
  for (int g = 0; g < 50; ++g) {
    std::string gid = "gid-" + std::to_string(g);
    for (int t = 0; t < 40; ++t) {
      for (int64_t interval : {1LL, 1'000LL, 10'000LL, 300'000LL, 1'800'000LL}) {
        double j = JitterFactor(gid, kNow + t * 997, interval);
        ASSERT_GE(j, 0.9);
        ASSERT_LE(j, 1.1);
        lo = std::min(lo, j);
        hi = std::max(hi, j);
        sum += j;
        distinct.insert(j);
        ++n;
      }
    }
  }
  EXPECT_LT(lo, 0.905);
  EXPECT_GT(hi, 1.095);
  EXPECT_NEAR(sum / n, 1.0, 0.01);
  EXPECT_GT(distinct.size(), static_cast<size_t>(n) * 9 / 10);
  // Extreme inputs stay in range too.
  for (int64_t now : {INT64_MIN, int64_t{-1}, int64_t{0}, INT64_MAX}) {
    for (int64_t interval : {INT64_MIN, int64_t{0}, INT64_MAX}) {
      double j = JitterFactor("", now, interval);
      EXPECT_GE(j, 0.9);
      EXPECT_LE(j, 1.1);
    }
  }
}

TEST(JitterTest, EachInputMatters) {
  const double base = JitterFactor("gid-a", kNow, 10'000);
  EXPECT_EQ(JitterFactor("gid-a", kNow, 10'000), base);
  auto differs = [&](auto f) {
    for (int i = 1; i < 20; ++i) {
      if (f(i) != base) return true;
    }
    return false;
  };
  EXPECT_TRUE(
      differs([](int i) { return JitterFactor("gid-" + std::to_string(i), kNow, 10'000); }));
  EXPECT_TRUE(differs([](int i) { return JitterFactor("gid-a", kNow + i, 10'000); }));
  EXPECT_TRUE(differs([](int i) { return JitterFactor("gid-a", kNow, 10'000 * (i + 1)); }));
}

}  // namespace
}  // namespace dtx::core

namespace dtx::core {
namespace {

TEST(ImmediateRetryDelay, DoublesFromTheBaseUpToTheCap) {
  Settings s;  // 10 ms, doubled, capped at 1 s
  EXPECT_EQ(ImmediateRetryDelayMs(0, s), 10);
  EXPECT_EQ(ImmediateRetryDelayMs(1, s), 20);
  EXPECT_EQ(ImmediateRetryDelayMs(6, s), 640);
  EXPECT_EQ(ImmediateRetryDelayMs(7, s), 1000);
  EXPECT_EQ(ImmediateRetryDelayMs(int64_t{1} << 62, s), 1000);  // no overflow, no long loop
  s.immediate_retry_base_ms = 0;
  EXPECT_EQ(ImmediateRetryDelayMs(5, s), 0);
}

}  // namespace
}  // namespace dtx::core
