// Unit tests of PlanWrite: when a step's outcome is held, flushed, merged, or made to carry the
// lease (docs/ARCHITECTURE.md "Durability", "Several coordinators").

#include "core/write_plan.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>

#include "core/model.h"

namespace dtx::core {
namespace {

constexpr int64_t kNow = 1'700'000'000'000;
constexpr int64_t kStored = kNow + 10'000;  // the wake-up the store holds
constexpr int64_t kLease = kNow + 5'000;    // a call's deadline plus the margin (covered)

TransUpdate::BranchUpdate Row(const std::string& id, BranchStatus status) {
  TransUpdate::BranchUpdate b;
  b.branch_id = id;
  b.op = "action";
  b.status = status;
  b.attempts = 1;
  b.finish_time_ms = kNow;
  return b;
}

// A decision's update that records one branch success and the wake-up that follows it.
TransUpdate Success(const std::string& id, int64_t wakeup = kNow + 200) {
  TransUpdate u;
  u.gid = "g";
  u.expected_status = GlobalStatus::kSubmitted;
  u.update_time_ms = kNow;
  u.next_cron_time_ms = wakeup;
  u.next_cron_interval_ms = 200;
  u.branches.push_back(Row(id, BranchStatus::kSucceed));
  return u;
}

// `stored`: the stored wake-up; `stored_lease`: the stored lease (-1 = the same as the wake-up).
WriteContext Ctx(int64_t lease_needed = kLease, int64_t stored = kStored,
                 int64_t stored_lease = -1) {
  WriteContext c;
  c.gid = "g";
  c.status = GlobalStatus::kSubmitted;
  c.stored_wakeup_ms = stored;
  c.stored_lease_ms = stored_lease < 0 ? stored : stored_lease;
  c.lease_needed_ms = lease_needed;
  c.now_ms = kNow;
  return c;
}

TEST(WritePlanTest, SuccessCoveredByTheStoredWakeupIsHeld) {
  WritePlan p = PlanWrite(Success("01"), std::nullopt, Ctx());
  EXPECT_FALSE(p.write);
  ASSERT_TRUE(p.held);
  ASSERT_EQ(p.held->branches.size(), 1u);
  EXPECT_EQ(p.held->branches[0].branch_id, "01");
  EXPECT_FALSE(p.lease_ms);
}

TEST(WritePlanTest, SuccessWithNothingInFlightIsHeld) {
  WritePlan p = PlanWrite(Success("01"), std::nullopt, Ctx(/*lease_needed=*/0));
  EXPECT_FALSE(p.write);
  EXPECT_TRUE(p.held);
}

TEST(WritePlanTest, HeldSuccessesAccumulate) {
  WritePlan p = PlanWrite(Success("02"), Success("01"), Ctx());
  EXPECT_FALSE(p.write);
  ASSERT_TRUE(p.held);
  ASSERT_EQ(p.held->branches.size(), 2u);
  EXPECT_EQ(p.held->branches[0].branch_id, "01");
  EXPECT_EQ(p.held->branches[1].branch_id, "02");
}

TEST(WritePlanTest, NothingToWriteAndNothingHeld) {
  WritePlan p = PlanWrite(std::nullopt, std::nullopt, Ctx());
  EXPECT_FALSE(p.write);
  EXPECT_FALSE(p.held);
  EXPECT_FALSE(p.lease_ms);
}

TEST(WritePlanTest, NoUpdateKeepsWhatIsHeldWhileTheLeaseIsCovered) {
  WritePlan p = PlanWrite(std::nullopt, Success("01"), Ctx());
  EXPECT_FALSE(p.write);
  EXPECT_TRUE(p.held);
}

TEST(WritePlanTest, StatusChangeFlushesWhatIsHeld) {
  TransUpdate fail;
  fail.gid = "g";
  fail.expected_status = GlobalStatus::kSubmitted;
  fail.new_status = GlobalStatus::kAborting;
  fail.rollback_reason = "no stock";
  fail.update_time_ms = kNow + 7;
  fail.branches.push_back(Row("02", BranchStatus::kFailed));
  WritePlan p = PlanWrite(fail, Success("01"), Ctx(/*lease_needed=*/0));  // nothing in flight
  EXPECT_FALSE(p.held);
  ASSERT_TRUE(p.write);
  EXPECT_EQ(p.write->new_status, GlobalStatus::kAborting);
  EXPECT_EQ(p.write->rollback_reason, "no stock");
  EXPECT_EQ(p.write->update_time_ms, kNow + 7);
  ASSERT_EQ(p.write->branches.size(), 2u) << "the held success goes first";
  EXPECT_EQ(p.write->branches[0].branch_id, "01");
  EXPECT_EQ(p.write->branches[1].branch_id, "02");
  EXPECT_EQ(p.write->next_cron_time_ms, kNow + 200) << "kept from the held update";
  EXPECT_FALSE(p.lease_ms) << "no call in flight needs a lease";
}

TEST(WritePlanTest, EveryNonSuccessFieldIsWrittenAtOnce) {
  auto check = [](TransUpdate u, const char* what) {
    WritePlan p = PlanWrite(std::move(u), std::nullopt, Ctx());
    EXPECT_TRUE(p.write) << what;
    EXPECT_FALSE(p.held) << what;
  };
  TransUpdate u = Success("01");
  u.branches[0].status = BranchStatus::kFailed;
  check(u, "a failed branch");
  u = Success("01");
  u.branches[0].status.reset();
  check(u, "an error (attempts only)");
  u = Success("01");
  u.branches.clear();
  check(u, "a wake-up only");
  u = Success("01");
  u.retry_count = 1;
  check(u, "retry_count");
  u = Success("01");
  u.options = TransOptions{};
  check(u, "options");
  u = Success("01");
  u.custom_data = "{}";
  check(u, "custom_data");
  u = Success("01");
  u.finish_time_ms = kNow;
  check(u, "finish_time");
  u = Success("01");
  u.rollback_time_ms = kNow;
  check(u, "rollback_time");
}

TEST(WritePlanTest, RoundEndFlushesWhatIsHeld) {
  WriteContext c = Ctx(0);
  c.round_over = true;
  WritePlan p = PlanWrite(std::nullopt, Success("01"), c);
  EXPECT_FALSE(p.held);
  ASSERT_TRUE(p.write);
  EXPECT_EQ(p.write->branches.size(), 1u);
}

TEST(WritePlanTest, RoundEndWritesAHoldableUpdate) {
  WriteContext c = Ctx(0);
  c.round_over = true;
  WritePlan p = PlanWrite(Success("02"), Success("01"), c);
  EXPECT_FALSE(p.held);
  ASSERT_TRUE(p.write);
  EXPECT_EQ(p.write->branches.size(), 2u);
}

TEST(WritePlanTest, StoppingWritesAHoldableUpdate) {
  WriteContext c = Ctx();
  c.stopping = true;
  WritePlan p = PlanWrite(Success("01"), std::nullopt, c);
  EXPECT_FALSE(p.held);
  EXPECT_TRUE(p.write);
}

TEST(WritePlanTest, ShortStoredWakeupForcesTheSuccessToBeWrittenWithTheLease) {
  const int64_t lease = kStored + 1;  // the next call's deadline lies beyond the stored wake-up
  WritePlan p = PlanWrite(Success("01"), std::nullopt, Ctx(lease));
  EXPECT_FALSE(p.held);
  ASSERT_TRUE(p.write);
  EXPECT_EQ(p.write->branches.size(), 1u);
  EXPECT_EQ(p.write->next_cron_time_ms, lease) << "the update's own short wake-up is pushed";
  EXPECT_EQ(p.write->lease_until_ms, lease);
  EXPECT_EQ(p.lease_ms, lease);
}

TEST(WritePlanTest, LeaseOnlyUpdateTakesTheHeldAlong) {
  const int64_t lease = kStored + 1;
  WritePlan p = PlanWrite(std::nullopt, Success("01"), Ctx(lease));
  EXPECT_FALSE(p.held);
  ASSERT_TRUE(p.write);
  EXPECT_EQ(p.write->gid, "g");
  EXPECT_EQ(p.write->expected_status, GlobalStatus::kSubmitted);
  EXPECT_EQ(p.write->next_cron_time_ms, lease);
  EXPECT_EQ(p.write->update_time_ms, kNow);
  ASSERT_EQ(p.write->branches.size(), 1u);
  EXPECT_EQ(p.write->branches[0].branch_id, "01");
  EXPECT_EQ(p.lease_ms, lease);
}

TEST(WritePlanTest, LeaseOnlyUpdateWithNothingHeld) {
  WriteContext c = Ctx(kStored + 1);
  c.status = GlobalStatus::kAborting;
  WritePlan p = PlanWrite(std::nullopt, std::nullopt, c);
  ASSERT_TRUE(p.write);
  EXPECT_EQ(p.write->expected_status, GlobalStatus::kAborting);
  EXPECT_TRUE(p.write->branches.empty());
  EXPECT_FALSE(p.write->new_status);
  EXPECT_EQ(p.lease_ms, kStored + 1);
}

// An update written at once (an error with its backed-off wake-up) may bring the wake-up in front
// of a call still in flight: the stored lease, kept apart, still covers the call (recovery claims
// only once both have passed), so nothing more is written.
TEST(WritePlanTest, AnUpdatesShortWakeupLeavesTheStoredLease) {
  TransUpdate err = Success("01", /*wakeup=*/kNow + 400);
  err.branches[0].status.reset();
  err.branches[0].last_error = "boom";
  WritePlan p = PlanWrite(err, std::nullopt, Ctx());  // the stored lease covers
  ASSERT_TRUE(p.write);
  EXPECT_EQ(p.write->next_cron_time_ms, kNow + 400);
  EXPECT_FALSE(p.write->lease_until_ms);
  EXPECT_FALSE(p.lease_ms);
}

// A stored wake-up that covers the calls is not a lease (an operator may have made it due): when
// the stored lease does not cover them, the lease is written even though the wake-up lies later.
TEST(WritePlanTest, ALongWakeupIsNotALease) {
  WritePlan p =
      PlanWrite(std::nullopt, std::nullopt, Ctx(kLease, /*stored=*/kStored, /*stored_lease=*/kNow));
  ASSERT_TRUE(p.write);
  EXPECT_EQ(p.write->lease_until_ms, kLease);
  EXPECT_FALSE(p.write->next_cron_time_ms) << "the later wake-up stays";
  EXPECT_EQ(p.lease_ms, kLease);
}

TEST(WritePlanTest, AWriteWithNothingInFlightEndsTheLease) {
  TransUpdate err = Success("01", /*wakeup=*/kNow + 300);
  err.branches[0].status.reset();
  WritePlan p = PlanWrite(err, std::nullopt, Ctx(/*lease_needed=*/0));
  ASSERT_TRUE(p.write);
  EXPECT_EQ(p.write->lease_until_ms, kNow) << "the short backoff is not held back by a lease";
  EXPECT_EQ(p.write->next_cron_time_ms, kNow + 300);
  WritePlan expired = PlanWrite(err, std::nullopt, Ctx(0, kStored, /*stored_lease=*/kNow - 1));
  ASSERT_TRUE(expired.write);
  EXPECT_FALSE(expired.write->lease_until_ms) << "nothing to end";
}

TEST(WritePlanTest, AnUpdatesLongWakeupIsKept) {
  TransUpdate err = Success("01", /*wakeup=*/kLease + 1);
  err.branches[0].status.reset();
  WritePlan p = PlanWrite(err, std::nullopt, Ctx(kLease, /*stored=*/kNow));
  ASSERT_TRUE(p.write);
  EXPECT_EQ(p.write->next_cron_time_ms, kLease + 1);
  EXPECT_EQ(p.write->lease_until_ms, kLease);
}

TEST(WritePlanTest, AnUpdateWithoutWakeupIsCheckedAgainstTheStoredOne) {
  TransUpdate u = Success("01");
  u.next_cron_time_ms.reset();
  u.branches[0].status = BranchStatus::kFailed;
  WritePlan covered = PlanWrite(u, std::nullopt, Ctx());
  ASSERT_TRUE(covered.write);
  EXPECT_FALSE(covered.write->next_cron_time_ms);
  EXPECT_FALSE(covered.lease_ms);
  WritePlan short_stored = PlanWrite(u, std::nullopt, Ctx(kLease, /*stored=*/kLease - 1));
  ASSERT_TRUE(short_stored.write);
  EXPECT_EQ(short_stored.write->next_cron_time_ms, kLease);
}

TEST(WritePlanTest, MergeAppliesTheLaterUpdateOverTheHeldOne) {
  std::optional<TransUpdate> into = Success("01", kNow + 200);
  into->retry_count = 3;
  TransUpdate later;
  later.gid = "g";
  later.expected_status = GlobalStatus::kAborting;
  later.update_time_ms = kNow + 9;
  later.new_status = GlobalStatus::kFailed;
  later.next_cron_time_ms = kNow + 900;
  later.branches.push_back(Row("01", BranchStatus::kFailed));  // the same row again
  MergeInto(into, later);
  ASSERT_TRUE(into);
  EXPECT_EQ(into->expected_status, GlobalStatus::kAborting);
  EXPECT_EQ(into->new_status, GlobalStatus::kFailed);
  EXPECT_EQ(into->next_cron_time_ms, kNow + 900);
  EXPECT_EQ(into->next_cron_interval_ms, 200) << "not set later: the held value stays";
  EXPECT_EQ(into->retry_count, 3);
  EXPECT_EQ(into->update_time_ms, kNow + 9);
  ASSERT_EQ(into->branches.size(), 2u);
  EXPECT_EQ(into->branches[0].status, BranchStatus::kSucceed);
  EXPECT_EQ(into->branches[1].status, BranchStatus::kFailed) << "applied last, so it wins";

  std::optional<TransUpdate> empty;
  MergeInto(empty, later);
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->branches.size(), 1u);
}

TEST(WritePlanTest, CanHoldNeedsTheStoredWakeupToCoverTheLease) {
  EXPECT_TRUE(CanHold(Success("01"), kLease, kLease));
  EXPECT_FALSE(CanHold(Success("01"), kLease - 1, kLease));
  EXPECT_TRUE(CanHold(Success("01"), 0, 0));
}

}  // namespace
}  // namespace dtx::core
