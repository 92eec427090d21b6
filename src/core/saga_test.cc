// Unit tests of the saga state machine (core::Step for saga, ParseSagaLayout, IsWellFormedSaga),
// driven on explicit time through a tiny engine stand-in: it starts rounds, answers calls with
// given classes, applies every Decision.update to a separate "stored" copy (checking the
// compare-and-set status), and checks after each decision that the update alone reproduces the
// machine's view of the transaction. Covers PROTOCOL.md §1.4, §1.6, §3.4, §3.5 and checklist items
// SAGA-01..04, 06, 09..11, 14..17.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/machine.h"
#include "core/machine_test_util.h"
#include "core/model.h"
#include "core/retry_policy.h"

namespace dtx::core {
namespace {

using namespace test_util;  // NOLINT(google-build-using-namespace)

const std::string kF = "failed";

// Branch indices of step k (0-based): branches[2k] = compensate, branches[2k+1] = action.
constexpr size_t C(size_t step) { return 2 * step; }
constexpr size_t A(size_t step) { return 2 * step + 1; }

std::string ActionUrl(size_t step) { return "http://busi/TransOut" + std::to_string(step + 1); }
std::string CompUrl(size_t step) { return "http://busi/TransOutRevert" + std::to_string(step + 1); }

struct StepUrls {
  std::string action;
  std::string compensate;
};

std::vector<StepUrls> Steps(size_t n) {
  std::vector<StepUrls> steps;
  for (size_t k = 0; k < n; ++k) steps.push_back({ActionUrl(k), CompUrl(k)});
  return steps;
}

// A submitted saga as the API layer would store it (PROTOCOL.md §1.6 "Rows").
TransSnapshot MakeSaga(const std::vector<StepUrls>& steps, std::string custom_data = "",
                       TransOptions options = {}, const Settings& settings = {}) {
  TransSnapshot s;
  s.global.id = 1;
  s.global.gid = "saga-gid-1";
  s.global.trans_type = TransType::kSaga;
  s.global.status = GlobalStatus::kSubmitted;
  s.global.custom_data = std::move(custom_data);
  s.global.create_time_ms = kT0;
  s.global.update_time_ms = kT0;
  s.global.retry_count = options.retry_count;
  const int64_t i0 = InitialIntervalMs(options, settings);
  s.global.next_cron_interval_ms = i0;
  s.global.next_cron_time_ms = kT0 + i0;
  s.global.options = std::move(options);
  int64_t id = 1;
  for (size_t k = 0; k < steps.size(); ++k) {
    for (const char* op : {"compensate", "action"}) {
      BranchRow& row = s.branches.emplace_back();
      row.id = id++;
      row.gid = s.global.gid;
      row.url = std::string(op) == "action" ? steps[k].action : steps[k].compensate;
      row.bin_data = R"({"amount":30})";
      row.branch_id = BranchId(k);
      row.op = op;
      row.create_time_ms = kT0;
      row.update_time_ms = kT0;
    }
  }
  return s;
}

const TransUpdate::BranchUpdate* FindBranchUpdate(const TransUpdate& u, size_t step,
                                                  const std::string& op) {
  for (const auto& b : u.branches) {
    if (b.branch_id == BranchId(step) && b.op == op) return &b;
  }
  return nullptr;
}

// The engine stand-in (see machine_test_util.h); sagas also compare retry_count.
class SagaRun : public test_util::MachineRun<SagaRun> {
 public:
  explicit SagaRun(TransSnapshot snap, Settings settings = {})
      : MachineRun(std::move(snap), settings, /*compare_retry_count=*/true) {}

  bool CheckCall(size_t i, GlobalStatus /*before*/) const {
    EXPECT_LT(i, machine().branches.size());
    ExpectNotInFlight(i);
    EXPECT_FALSE(machine().branches[i].url.empty()) << "a call for an empty URL";
    return true;
  }
};

// ---------------------------------------------------------------------------------------------------
// Sequential forward phase.

// SAGA-01
TEST(SagaTest, TwoStepsSucceedOneCallAtATime) {
  SagaRun run(MakeSaga(Steps(2)));
  Decision d = run.Start();
  EXPECT_EQ(d.calls, Calls{A(0)});
  EXPECT_FALSE(d.update.has_value()) << "starting a round changes nothing";
  EXPECT_FALSE(d.round_over);

  d = run.Answer(A(0), CallClass::kSuccess);
  EXPECT_EQ(d.calls, Calls{A(1)});
  EXPECT_FALSE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->gid, "saga-gid-1");
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kSubmitted);
  EXPECT_FALSE(d.update->new_status.has_value());
  ExpectWakeup(*d.update, run.now, kI0);  // SUCCESS: reset to I0, renews the lease
  ASSERT_EQ(d.update->branches.size(), 1u);
  const auto& bu = d.update->branches[0];
  EXPECT_EQ(bu.branch_id, "01");
  EXPECT_EQ(bu.op, "action");
  EXPECT_EQ(bu.status, BranchStatus::kSucceed);
  EXPECT_EQ(bu.attempts, 1);
  EXPECT_EQ(bu.finish_time_ms, run.now);
  EXPECT_FALSE(bu.last_error.has_value());

  d = run.Answer(A(1), CallClass::kSuccess);
  EXPECT_TRUE(d.calls.empty());
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kSubmitted);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kSucceed);
  EXPECT_EQ(d.update->finish_time_ms, run.now);
  EXPECT_EQ(d.update->update_time_ms, run.now);
  EXPECT_FALSE(d.update->rollback_reason.has_value());
  EXPECT_FALSE(d.update->rollback_time_ms.has_value());
  const auto* a02 = FindBranchUpdate(*d.update, 1, "action");
  ASSERT_NE(a02, nullptr);
  EXPECT_EQ(a02->status, BranchStatus::kSucceed);

  EXPECT_EQ(run.status(), GlobalStatus::kSucceed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kP, kS, kP, kS}));
  EXPECT_EQ(run.global().rollback_reason, "");
  EXPECT_EQ(run.call_log(), (Calls{A(0), A(1)}));
  EXPECT_EQ(run.max_in_flight(), 1u);
  EXPECT_EQ(run.row(A(0)).attempts, 1);
  EXPECT_EQ(run.row(A(1)).attempts, 1);
  EXPECT_EQ(run.row(C(0)).attempts, 0);
}

// SAGA-02
TEST(SagaTest, StepTwoFailureCompensatesInReverseOneAtATime) {
  SagaRun run(MakeSaga(Steps(2)));
  run.Start();
  run.Answer(A(0), CallClass::kSuccess);
  const std::string body = R"({"dtm_result":"FAILURE","message":"insufficient balance"})";
  Decision d = run.Answer(A(1), CallClass::kFailure, body);
  EXPECT_EQ(d.calls, Calls{C(1)}) << "only the last step's compensation starts";
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kSubmitted);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kAborting);
  const std::string reason = "url:" + ActionUrl(1) + " return failed: " + body + " FAILURE";
  EXPECT_EQ(d.update->rollback_reason, reason);
  EXPECT_EQ(d.update->rollback_time_ms, run.now);
  EXPECT_FALSE(d.update->finish_time_ms.has_value());
  const auto* a02 = FindBranchUpdate(*d.update, 1, "action");
  ASSERT_NE(a02, nullptr);
  EXPECT_EQ(a02->status, BranchStatus::kFailed);
  EXPECT_EQ(a02->last_error, "FAILURE: " + body);

  d = run.Answer(C(1), CallClass::kSuccess);
  EXPECT_EQ(d.calls, Calls{C(0)});
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kAborting);
  EXPECT_FALSE(d.update->new_status.has_value());

  d = run.Answer(C(0), CallClass::kSuccess);
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kAborting);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kFailed);
  EXPECT_EQ(d.update->finish_time_ms, run.now);

  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.global().rollback_reason, reason);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kS, kS, kF}));
  EXPECT_EQ(run.call_log(), (Calls{A(0), A(1), C(1), C(0)}));
  EXPECT_EQ(run.max_in_flight(), 1u);
}

TEST(SagaTest, SequentialCompensationIsStrictlyReverse) {
  SagaRun run(MakeSaga(Steps(3)));
  run.Start();
  run.Answer(A(0), CallClass::kSuccess);
  run.Answer(A(1), CallClass::kSuccess);
  EXPECT_EQ(run.Answer(A(2), CallClass::kFailure).calls, Calls{C(2)});
  EXPECT_EQ(run.Answer(C(2), CallClass::kSuccess).calls, Calls{C(1)});
  EXPECT_EQ(run.Answer(C(1), CallClass::kSuccess).calls, Calls{C(0)});
  EXPECT_TRUE(run.Answer(C(0), CallClass::kSuccess).round_over);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kS, kS, kS, kS, kF}));
  EXPECT_EQ(run.max_in_flight(), 1u);
}

TEST(SagaTest, FirstStepFailureCompensatesOnlyItself) {
  SagaRun run(MakeSaga(Steps(2)));
  run.Start();
  EXPECT_EQ(run.Answer(A(0), CallClass::kFailure, "no").calls, Calls{C(0)});
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kF, kP, kP}));
  EXPECT_EQ(run.global().rollback_reason, "url:" + ActionUrl(0) + " return failed: no FAILURE");
  EXPECT_EQ(run.call_log(), (Calls{A(0), C(0)}));
}

TEST(SagaTest, RollbackReasonIsTruncated) {
  SagaRun run(MakeSaga(Steps(1)));
  run.Start();
  run.Answer(A(0), CallClass::kFailure, std::string(5000, 'x'));
  EXPECT_EQ(run.global().rollback_reason.size(), kMaxRollbackReasonBytes);
  EXPECT_EQ(run.global().rollback_reason.rfind("url:" + ActionUrl(0), 0), 0u);
  EXPECT_EQ(run.row(A(0)).last_error.size(), kMaxLastErrorBytes);
}

// SAGA-03
TEST(SagaTest, OngoingActionParksTheRoundThenSucceedsNextRound) {
  SagaRun run(MakeSaga(Steps(2)));
  run.Start();
  run.Answer(A(0), CallClass::kSuccess);
  Decision d = run.Answer(A(1), CallClass::kOngoing);
  EXPECT_TRUE(d.calls.empty()) << "ONGOING is not retried within the round";
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_FALSE(d.update->new_status.has_value());
  ExpectWakeup(*d.update, run.now, kI0);
  const auto* a02 = FindBranchUpdate(*d.update, 1, "action");
  ASSERT_NE(a02, nullptr);
  EXPECT_FALSE(a02->status.has_value()) << "the row stays prepared";
  EXPECT_EQ(a02->attempts, 1);
  EXPECT_EQ(a02->last_error, std::string("ONGOING: ") + R"({"dtm_result":"ONGOING"})");
  EXPECT_EQ(run.status(), GlobalStatus::kSubmitted);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kP, kS, kP, kP}));

  d = run.StartDueRound();
  EXPECT_EQ(d.calls, Calls{A(1)}) << "only the unfinished step runs again";
  d = run.Answer(A(1), CallClass::kSuccess);
  EXPECT_TRUE(d.round_over);
  EXPECT_EQ(run.status(), GlobalStatus::kSucceed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kP, kS, kP, kS}));
  EXPECT_EQ(run.row(A(1)).attempts, 2);
  EXPECT_EQ(run.call_log(), (Calls{A(0), A(1), A(1)}));
}

TEST(SagaTest, OngoingKeepsABackedOffInterval) {
  TransSnapshot snap = MakeSaga(Steps(1));
  snap.global.next_cron_interval_ms = 40'000;  // after two errors in earlier rounds
  SagaRun run(snap);
  run.Start();
  Decision d = run.Answer(A(0), CallClass::kOngoing);
  ASSERT_TRUE(d.update.has_value());
  ExpectWakeup(*d.update, run.now, 40'000);
}

TEST(SagaTest, ActionErrorBacksOffAndIsRetriedNextRound) {
  SagaRun run(MakeSaga(Steps(1)));
  run.Start();
  Decision d = run.Answer(A(0), CallClass::kError);
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  ExpectWakeup(*d.update, run.now, 2 * kI0);
  EXPECT_EQ(run.row(A(0)).last_error, "ERROR: HTTP 500: internal error");
  EXPECT_EQ(run.status(), GlobalStatus::kSubmitted);

  run.StartDueRound();
  d = run.Answer(A(0), CallClass::kError);
  ExpectWakeup(*d.update, run.now, 4 * kI0);
  run.StartDueRound();
  d = run.Answer(A(0), CallClass::kSuccess);
  ExpectWakeup(*d.update, run.now, kI0);  // SUCCESS resets
  EXPECT_EQ(run.status(), GlobalStatus::kSucceed);
  EXPECT_EQ(run.row(A(0)).attempts, 3);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kP, kS}));
}

// SAGA-04
TEST(SagaTest, CompensationErrorStaysAbortingWithBackoffThenFails) {
  SagaRun run(MakeSaga(Steps(2)));
  run.Start();
  run.Answer(A(0), CallClass::kSuccess);
  run.Answer(A(1), CallClass::kFailure);
  Decision d = run.Answer(C(1), CallClass::kError);
  EXPECT_TRUE(d.calls.empty()) << "c01 waits for c02";
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_FALSE(d.update->new_status.has_value());
  ExpectWakeup(*d.update, run.now, 2 * kI0);
  EXPECT_EQ(run.status(), GlobalStatus::kAborting);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kP, kS, kP, kF}));

  d = run.StartDueRound();
  EXPECT_EQ(d.calls, Calls{C(1)});
  d = run.Answer(C(1), CallClass::kError);
  ASSERT_TRUE(d.update.has_value());
  ExpectWakeup(*d.update, run.now, 4 * kI0);
  EXPECT_EQ(run.status(), GlobalStatus::kAborting);

  d = run.StartDueRound();
  EXPECT_EQ(d.calls, Calls{C(1)});
  EXPECT_EQ(run.Answer(C(1), CallClass::kSuccess).calls, Calls{C(0)});
  d = run.Answer(C(0), CallClass::kSuccess);
  EXPECT_TRUE(d.round_over);
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kAborting);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kS, kS, kF}));
  EXPECT_EQ(run.row(C(1)).attempts, 3);
}

TEST(SagaTest, CompensationFailureIsRetriedNeverFailed) {
  SagaRun run(MakeSaga(Steps(2)));
  run.Start();
  run.Answer(A(0), CallClass::kSuccess);
  run.Answer(A(1), CallClass::kFailure, "first");
  const std::string reason = run.global().rollback_reason;
  Decision d = run.Answer(C(1), CallClass::kFailure);
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_FALSE(d.update->new_status.has_value());
  ExpectWakeup(*d.update, run.now, 2 * kI0);
  const auto* c02 = FindBranchUpdate(*d.update, 1, "compensate");
  ASSERT_NE(c02, nullptr);
  EXPECT_FALSE(c02->status.has_value()) << "a compensation is never marked failed";
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kP, kS, kP, kF}));
  EXPECT_EQ(run.status(), GlobalStatus::kAborting);

  run.StartDueRound();
  run.Answer(C(1), CallClass::kFailure);
  EXPECT_EQ(run.status(), GlobalStatus::kAborting);
  EXPECT_EQ(run.global().next_cron_interval_ms, 4 * kI0);

  run.StartDueRound();
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.global().rollback_reason, reason) << "the reason is not overwritten";
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kS, kS, kF}));
}

TEST(SagaTest, CompensationOngoingKeepsTheInterval) {
  SagaRun run(MakeSaga(Steps(1)));
  run.Start();
  run.Answer(A(0), CallClass::kFailure);
  Decision d = run.Answer(C(0), CallClass::kOngoing);
  ASSERT_TRUE(d.update.has_value());
  ExpectWakeup(*d.update, run.now, kI0);
  EXPECT_EQ(run.status(), GlobalStatus::kAborting);
  run.StartDueRound();
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kF}));
}

// ---------------------------------------------------------------------------------------------------
// Empty URLs (SAGA-06, §3.1 rule 1).

TEST(SagaTest, EmptyActionUrlSucceedsWithoutACall) {
  auto steps = Steps(3);
  steps[1].action = "";
  SagaRun run(MakeSaga(steps));
  EXPECT_EQ(run.Start().calls, Calls{A(0)});
  Decision d = run.Answer(A(0), CallClass::kSuccess);
  EXPECT_EQ(d.calls, Calls{A(2)}) << "step 2 is skipped at once";
  ASSERT_TRUE(d.update.has_value());
  const auto* a02 = FindBranchUpdate(*d.update, 1, "action");
  ASSERT_NE(a02, nullptr);
  EXPECT_EQ(a02->status, BranchStatus::kSucceed);
  EXPECT_FALSE(a02->attempts.has_value()) << "no call was made";
  run.Answer(A(2), CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kSucceed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kP, kS, kP, kS, kP, kS}));
  EXPECT_EQ(run.call_log(), (Calls{A(0), A(2)}));
  EXPECT_EQ(run.row(A(1)).attempts, 0);
}

TEST(SagaTest, AllActionUrlsEmptySucceedsAtStart) {
  SagaRun run(MakeSaga({{"", CompUrl(0)}, {"", CompUrl(1)}}));
  Decision d = run.Start();
  EXPECT_TRUE(d.calls.empty());
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->new_status, GlobalStatus::kSucceed);
  EXPECT_EQ(d.update->finish_time_ms, run.now);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kP, kS, kP, kS}));
}

TEST(SagaTest, EmptyCompensateUrlSucceedsWithoutACall) {
  auto steps = Steps(2);
  steps[0].compensate = "";
  SagaRun run(MakeSaga(steps));
  run.Start();
  run.Answer(A(0), CallClass::kSuccess);
  EXPECT_EQ(run.Answer(A(1), CallClass::kFailure).calls, Calls{C(1)});
  Decision d = run.Answer(C(1), CallClass::kSuccess);
  EXPECT_TRUE(d.calls.empty());
  EXPECT_TRUE(d.round_over);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kFailed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kS, kS, kF}));
  EXPECT_EQ(run.call_log(), (Calls{A(0), A(1), C(1)}));
}

// ---------------------------------------------------------------------------------------------------
// Timing (SAGA-09, §1.4, §3.5, §5 #1).

// SAGA-09
TEST(SagaTest, RetryInterval150OngoingKeepsErrorDoubles) {
  TransOptions o;
  o.retry_interval_s = 150;
  SagaRun run(MakeSaga(Steps(1), "", o));
  EXPECT_EQ(run.global().next_cron_interval_ms, 150'000);
  run.Start();
  Decision d = run.Answer(A(0), CallClass::kOngoing);
  ASSERT_TRUE(d.update.has_value());
  ExpectWakeup(*d.update, run.now, 150'000);

  run.StartDueRound();
  d = run.Answer(A(0), CallClass::kError);
  ASSERT_TRUE(d.update.has_value());
  ExpectWakeup(*d.update, run.now, 300'000);
  EXPECT_GE(*d.update->next_cron_time_ms, run.now + 270'000);
  EXPECT_LE(*d.update->next_cron_time_ms, run.now + 330'000);
  EXPECT_GT(*d.update->next_cron_time_ms, run.now + 180'000) << "not due at +180 s";
  EXPECT_LE(*d.update->next_cron_time_ms, run.now + 360'000) << "due at +360 s";
}

TEST(SagaTest, RepeatedErrorsNeverExceedTheCap) {
  Settings settings;
  settings.max_retry_interval_ms = 60'000;
  SagaRun run(MakeSaga(Steps(1), "", {}, settings), settings);
  run.Start();
  run.Answer(A(0), CallClass::kError);
  for (int i = 0; i < 10; ++i) {
    run.StartDueRound();
    Decision d = run.Answer(A(0), CallClass::kError);
    ASSERT_TRUE(d.update.has_value());
    EXPECT_LE(*d.update->next_cron_interval_ms, 60'000);
    EXPECT_LE(*d.update->next_cron_time_ms, run.now + 66'000);
  }
  EXPECT_EQ(run.global().next_cron_interval_ms, 60'000);
}

// The "non-final round always leaves a future wake-up" rule: here the round's last decision makes
// no call and has no result that schedules anything (the failing action's compensation URL is
// empty), while the wake-up stored earlier in the round has already passed.
TEST(SagaTest, NonFinalRoundAlwaysLeavesAFutureWakeup) {
  auto steps = Steps(2);
  steps[1].compensate = "";
  SagaRun run(MakeSaga(steps, R"({"concurrent":true})"));
  EXPECT_EQ(run.Start().calls, (Calls{A(0), A(1)}));
  EXPECT_EQ(run.Answer(A(0), CallClass::kFailure).calls, Calls{C(0)});
  Decision d = run.Answer(C(0), CallClass::kError);  // c01 parked, wake-up ~20 s later
  EXPECT_FALSE(d.round_over);
  const int64_t parked_wakeup = run.global().next_cron_time_ms;
  run.now = parked_wakeup + 30'000;  // the last action call was slow
  d = run.Answer(A(1), CallClass::kFailure);
  EXPECT_TRUE(d.calls.empty());
  EXPECT_TRUE(d.round_over);
  EXPECT_EQ(run.status(), GlobalStatus::kAborting);
  ASSERT_TRUE(d.update.has_value());
  ExpectWakeup(*d.update, run.now, 2 * kI0);  // the interval is kept
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kP, kF, kS, kF}));
  run.StartDueRound();
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kF, kS, kF}));
}

TEST(SagaTest, RoundOverKeepsAWakeupAlreadyInTheFuture) {
  auto steps = Steps(2);
  steps[1].compensate = "";
  SagaRun run(MakeSaga(steps, R"({"concurrent":true})"));
  run.Start();
  run.Answer(A(0), CallClass::kFailure);
  run.Answer(C(0), CallClass::kError);
  const int64_t parked_wakeup = run.global().next_cron_time_ms;
  Decision d = run.Answer(A(1), CallClass::kFailure);  // well before the parked wake-up
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_FALSE(d.update->next_cron_time_ms.has_value());
  EXPECT_EQ(run.global().next_cron_time_ms, parked_wakeup);
  EXPECT_EQ(run.global().next_cron_interval_ms, 2 * kI0);
}

// ---------------------------------------------------------------------------------------------------
// timeout_to_fail (SAGA-10).

// SAGA-10
TEST(SagaTest, TimeoutWhileStepOneOngoingCompensatesOnlyStepOne) {
  TransOptions o;
  o.timeout_to_fail_s = 3;
  SagaRun run(MakeSaga(Steps(2), "", o));
  EXPECT_EQ(run.global().next_cron_interval_ms, 3000) << "I0 = timeout_to_fail when shorter";
  run.Start();
  run.Answer(A(0), CallClass::kOngoing);
  EXPECT_EQ(run.status(), GlobalStatus::kSubmitted);

  run.now = kT0 + 2000;  // not yet
  run.Restart();
  EXPECT_EQ(run.pending(), Calls{A(0)});
  run.Answer(A(0), CallClass::kOngoing);
  EXPECT_EQ(run.status(), GlobalStatus::kSubmitted);

  run.now = kT0 + 3000;
  Decision d = run.Restart();
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kSubmitted);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kAborting);
  EXPECT_EQ(d.update->rollback_reason, "Timeout after 3 seconds");
  EXPECT_EQ(d.update->rollback_time_ms, run.now);
  EXPECT_EQ(d.calls, Calls{C(0)}) << "a01 may have run; a02 cannot have";
  d = run.Answer(C(0), CallClass::kSuccess);
  EXPECT_TRUE(d.round_over);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.global().rollback_reason, "Timeout after 3 seconds");
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kP, kP, kP}));
}

TEST(SagaTest, TimeoutNoticedOnAResultCompensatesTheStepAboutToStart) {
  TransOptions o;
  o.timeout_to_fail_s = 3;
  SagaRun run(MakeSaga(Steps(3), "", o));
  run.Start();
  run.now = kT0 + 5000;  // a01 answers late
  Decision d = run.Answer(A(0), CallClass::kSuccess);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kAborting);
  EXPECT_EQ(d.update->rollback_reason, "Timeout after 3 seconds");
  EXPECT_EQ(d.calls, Calls{C(1)}) << "a02 was about to start, so c02 runs; a03 was not";
  EXPECT_EQ(run.Answer(C(1), CallClass::kSuccess).calls, Calls{C(0)});
  run.Answer(C(0), CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kS, kS, kP, kP, kP}));
}

// DTM checks "every action succeeded" before the timeout (trans_type_saga.go), and rolling back a
// saga whose every action succeeded would undo completed business work for nothing.
TEST(SagaTest, LastActionSucceedingAfterTheTimeoutStillSucceeds) {
  TransOptions o;
  o.timeout_to_fail_s = 3;
  SagaRun run(MakeSaga(Steps(2), "", o));
  run.Start();
  run.Answer(A(0), CallClass::kSuccess);
  run.now = kT0 + 4000;
  Decision d = run.Answer(A(1), CallClass::kSuccess);
  EXPECT_TRUE(d.calls.empty());
  EXPECT_TRUE(d.round_over);
  EXPECT_EQ(run.status(), GlobalStatus::kSucceed);
  EXPECT_EQ(run.global().rollback_reason, "");
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kP, kS, kP, kS}));
}

TEST(SagaTest, NoTimeoutWithoutTimeoutToFail) {
  SagaRun run(MakeSaga(Steps(1)));
  run.Start();
  run.Answer(A(0), CallClass::kError);
  run.now = kT0 + 7LL * 24 * 3600 * 1000;  // a week later
  EXPECT_EQ(run.StartDueRound().calls, Calls{A(0)});
  EXPECT_EQ(run.status(), GlobalStatus::kSubmitted);
}

// ---------------------------------------------------------------------------------------------------
// retry_limit (SAGA-11, §5 #2).

// SAGA-11
TEST(SagaTest, RetryLimitThreeSurvivesTwoErrors) {
  TransOptions o;
  o.retry_limit = 3;
  SagaRun run(MakeSaga(Steps(2), "", o));
  run.Start();
  Decision d = run.Answer(A(0), CallClass::kError);
  EXPECT_EQ(d.calls, Calls{A(0)}) << "called again at once";
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->retry_count, 1);
  EXPECT_FALSE(d.update->new_status.has_value());
  d = run.Answer(A(0), CallClass::kOngoing);
  EXPECT_EQ(d.calls, Calls{A(0)});
  EXPECT_EQ(d.update->retry_count, 2);
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kSucceed);
  EXPECT_EQ(run.global().retry_count, 2);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kP, kS, kP, kS}));
  EXPECT_EQ(run.row(A(0)).attempts, 3);
  EXPECT_EQ(run.call_log(), (Calls{A(0), A(0), A(0), A(1)}));
}

TEST(SagaTest, RetryLimitOneAbortsOnTheSecondError) {
  TransOptions o;
  o.retry_limit = 1;
  SagaRun run(MakeSaga(Steps(2), "", o));
  run.Start();
  run.Answer(A(0), CallClass::kSuccess);
  Decision d = run.Answer(A(1), CallClass::kError);
  EXPECT_EQ(d.calls, Calls{A(1)});
  EXPECT_EQ(d.update->retry_count, 1);
  d = run.Answer(A(1), CallClass::kError);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->new_status, GlobalStatus::kAborting);
  EXPECT_EQ(d.update->rollback_reason, "RetryCount is greater than RetryLimit, RetryLimit: 1");
  EXPECT_FALSE(d.update->retry_count.has_value()) << "the counter does not move past the limit";
  EXPECT_EQ(d.calls, Calls{C(1)}) << "a02 may have run";
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.global().rollback_reason, "RetryCount is greater than RetryLimit, RetryLimit: 1");
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kS, kS, kP}));
  EXPECT_EQ(run.global().retry_count, 1);
  EXPECT_EQ(run.call_log(), (Calls{A(0), A(1), A(1), C(1), C(0)}));
}

TEST(SagaTest, RetryCountPersistsAcrossRounds) {
  TransOptions o;
  o.retry_limit = 2;
  TransSnapshot snap = MakeSaga(Steps(1), "", o);
  snap.global.retry_count = 2;  // spent in earlier rounds, before a restart
  SagaRun run(snap);
  run.Start();
  Decision d = run.Answer(A(0), CallClass::kOngoing);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kAborting);
  EXPECT_EQ(d.update->rollback_reason, "RetryCount is greater than RetryLimit, RetryLimit: 2");
  EXPECT_EQ(d.calls, Calls{C(0)});
}

TEST(SagaTest, RetryLimitDoesNotDelayAFailure) {
  TransOptions o;
  o.retry_limit = 5;
  SagaRun run(MakeSaga(Steps(1), "", o));
  run.Start();
  Decision d = run.Answer(A(0), CallClass::kFailure, "nope");
  EXPECT_EQ(d.update->new_status, GlobalStatus::kAborting);
  EXPECT_FALSE(d.update->retry_count.has_value());
  EXPECT_EQ(run.global().rollback_reason, "url:" + ActionUrl(0) + " return failed: nope FAILURE");
  EXPECT_EQ(d.calls, Calls{C(0)});
}

TEST(SagaTest, RetryLimitDoesNotApplyToCompensations) {
  TransOptions o;
  o.retry_limit = 1;
  SagaRun run(MakeSaga(Steps(1), "", o));
  run.Start();
  run.Answer(A(0), CallClass::kFailure);
  Decision d = run.Answer(C(0), CallClass::kError);
  EXPECT_TRUE(d.calls.empty());
  EXPECT_TRUE(d.round_over);
  EXPECT_FALSE(d.update->retry_count.has_value());
  EXPECT_EQ(run.status(), GlobalStatus::kAborting);
}

// ---------------------------------------------------------------------------------------------------
// Concurrent sagas (SAGA-14, SAGA-15, SAGA-17).

// SAGA-14
TEST(SagaTest, ConcurrentWithoutOrdersStartsAllActions) {
  SagaRun run(MakeSaga(Steps(3), R"({"concurrent":true})"));
  Decision d = run.Start();
  EXPECT_EQ(d.calls, (Calls{A(0), A(1), A(2)}));
  run.Answer(A(2), CallClass::kSuccess);
  run.Answer(A(0), CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kSubmitted);
  d = run.Answer(A(1), CallClass::kSuccess);
  EXPECT_TRUE(d.round_over);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kSucceed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kP, kS, kP, kS, kP, kS}));
}

TEST(SagaTest, ConcurrentKeyIsCaseInsensitive) {
  SagaRun run(MakeSaga(Steps(2), R"({"Concurrent":true,"Orders":{}})"));
  EXPECT_EQ(run.Start().calls, (Calls{A(0), A(1)}));
}

// SAGA-14
TEST(SagaTest, ConcurrentOrderedStepNeverCalledWhenItsPredecessorFails) {
  SagaRun run(MakeSaga(Steps(2), R"({"concurrent":true,"orders":{"1":[0]}})"));
  EXPECT_EQ(run.Start().calls, Calls{A(0)});
  Decision d = run.Answer(A(0), CallClass::kFailure);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kAborting);
  EXPECT_EQ(d.calls, Calls{C(0)});
  d = run.Answer(C(0), CallClass::kSuccess);
  EXPECT_TRUE(d.round_over);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kF, kP, kP}));
  EXPECT_EQ(run.call_log(), (Calls{A(0), C(0)}));
}

TEST(SagaTest, ConcurrentRoundKeepsRunningIndependentBranches) {
  // 2 after 0 and 1; 1 is independent of 0.
  SagaRun run(MakeSaga(Steps(3), R"({"concurrent":true,"orders":{"2":[0,1]}})"));
  EXPECT_EQ(run.Start().calls, (Calls{A(0), A(1)}));
  Decision d = run.Answer(A(0), CallClass::kOngoing);
  EXPECT_TRUE(d.calls.empty());
  EXPECT_FALSE(d.round_over);
  d = run.Answer(A(1), CallClass::kSuccess);
  EXPECT_TRUE(d.calls.empty()) << "step 2 still waits for step 0";
  EXPECT_TRUE(d.round_over);
  EXPECT_EQ(run.status(), GlobalStatus::kSubmitted);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kP, kP, kP, kS, kP, kP}));

  d = run.StartDueRound();
  EXPECT_EQ(d.calls, Calls{A(0)});
  EXPECT_EQ(run.Answer(A(0), CallClass::kSuccess).calls, Calls{A(2)});
  run.Answer(A(2), CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kSucceed);
}

// SAGA-15
TEST(SagaTest, ConcurrentOrderedFailureCompensatesDependentFirst) {
  SagaRun run(MakeSaga(Steps(2), R"({"concurrent":true,"orders":{"1":[0]}})"));
  run.Start();
  EXPECT_EQ(run.Answer(A(0), CallClass::kSuccess).calls, Calls{A(1)});
  Decision d = run.Answer(A(1), CallClass::kFailure);
  EXPECT_EQ(d.calls, Calls{C(1)}) << "comp 0 waits for comp 1";
  EXPECT_EQ(run.Answer(C(1), CallClass::kSuccess).calls, Calls{C(0)});
  d = run.Answer(C(0), CallClass::kSuccess);
  EXPECT_TRUE(d.round_over);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kS, kS, kF}));
  EXPECT_EQ(run.call_log(), (Calls{A(0), A(1), C(1), C(0)}));
}

// dtx-sim seeds 22 and 736: step 3 depends on 0 and 2; step 1 fails while 0 and 2 are in flight.
// Step 3's compensation is not required when the abort begins, but becomes required (it "may have
// run") once both predecessors succeed, so comp 2 and comp 0 must wait for it instead of starting
// as soon as their own actions return.
TEST(SagaTest, DependentThatBecomesRequiredDuringAbortIsCompensatedFirst) {
  SagaRun run(MakeSaga(Steps(4), R"({"concurrent":true,"orders":{"3":[0,2]}})"));
  EXPECT_EQ(run.Start().calls, (Calls{A(0), A(1), A(2)}));
  EXPECT_EQ(run.Answer(A(1), CallClass::kFailure).calls, Calls{C(1)});
  EXPECT_TRUE(run.Answer(A(2), CallClass::kSuccess).calls.empty()) << "comp 2 waits: step 3";
  EXPECT_EQ(run.Answer(A(0), CallClass::kSuccess).calls, Calls{C(3)});
  run.Answer(C(1), CallClass::kSuccess);
  Decision d = run.Answer(C(3), CallClass::kSuccess);
  EXPECT_EQ(std::set<size_t>(d.calls.begin(), d.calls.end()), (std::set<size_t>{C(0), C(2)}));
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
}

// A dependent whose predecessor failed can never run: it does not hold up the compensations.
TEST(SagaTest, DependentOfAFailedStepDoesNotHoldUpCompensation) {
  SagaRun run(MakeSaga(Steps(3), R"({"concurrent":true,"orders":{"2":[0,1]}})"));
  EXPECT_EQ(run.Start().calls, (Calls{A(0), A(1)}));
  EXPECT_EQ(run.Answer(A(0), CallClass::kFailure).calls, Calls{C(0)});
  EXPECT_EQ(run.Answer(A(1), CallClass::kSuccess).calls, Calls{C(1)});
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
}

TEST(SagaTest, ConcurrentUnorderedCompensationsRunInParallel) {
  SagaRun run(MakeSaga(Steps(2), R"({"concurrent":true})"));
  run.Start();
  run.Answer(A(0), CallClass::kSuccess);
  Decision d = run.Answer(A(1), CallClass::kFailure);
  EXPECT_EQ(std::set<size_t>(d.calls.begin(), d.calls.end()), (std::set<size_t>{C(0), C(1)}));
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kS, kS, kF}));
}

TEST(SagaTest, ConcurrentTwoFailuresKeepTheFirstReason) {
  SagaRun run(MakeSaga(Steps(2), R"({"concurrent":true})"));
  run.Start();
  run.Answer(A(1), CallClass::kFailure, "second step");
  Decision d = run.Answer(A(0), CallClass::kFailure, "first step");
  ASSERT_TRUE(d.update.has_value());
  EXPECT_FALSE(d.update->new_status.has_value());
  EXPECT_FALSE(d.update->rollback_reason.has_value());
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.global().rollback_reason,
            "url:" + ActionUrl(1) + " return failed: second step FAILURE");
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kF, kS, kF}));
}

// SAGA-17
TEST(SagaTest, NoCompensationWhileItsActionIsInFlight) {
  SagaRun run(MakeSaga(Steps(2), R"({"concurrent":true})"));
  EXPECT_EQ(run.Start().calls, (Calls{A(0), A(1)}));
  Decision d = run.Answer(A(0), CallClass::kFailure);
  EXPECT_EQ(d.calls, Calls{C(0)}) << "comp 1 must wait for action 1's call";
  d = run.Answer(C(0), CallClass::kSuccess);
  EXPECT_TRUE(d.calls.empty());
  EXPECT_FALSE(d.round_over);
  EXPECT_EQ(run.status(), GlobalStatus::kAborting);
  d = run.Answer(A(1), CallClass::kSuccess);  // the late action succeeded: it must be undone
  EXPECT_EQ(d.calls, Calls{C(1)});
  d = run.Answer(C(1), CallClass::kSuccess);
  EXPECT_TRUE(d.round_over);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kF, kS, kS}));
  EXPECT_EQ(run.call_log(), (Calls{A(0), A(1), C(0), C(1)}));
}

TEST(SagaTest, InFlightActionAnsweringErrorIsStillCompensated) {
  SagaRun run(MakeSaga(Steps(2), R"({"concurrent":true})"));
  run.Start();
  run.Answer(A(0), CallClass::kFailure);
  run.Answer(C(0), CallClass::kSuccess);
  Decision d = run.Answer(A(1), CallClass::kError);  // may have written before failing
  EXPECT_EQ(d.calls, Calls{C(1)});
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kF, kS, kP}));
}

TEST(SagaTest, OrderedCompensationWaitsForInFlightDependent) {
  // Steps 1 and 2 both run after step 0.
  SagaRun run(MakeSaga(Steps(3), R"({"concurrent":true,"orders":{"1":[0],"2":[0]}})"));
  EXPECT_EQ(run.Start().calls, Calls{A(0)});
  EXPECT_EQ(run.Answer(A(0), CallClass::kSuccess).calls, (Calls{A(1), A(2)}));
  Decision d = run.Answer(A(2), CallClass::kFailure);
  EXPECT_EQ(d.calls, Calls{C(2)}) << "comp 1: action in flight; comp 0: dependents not undone";
  d = run.Answer(C(2), CallClass::kSuccess);
  EXPECT_TRUE(d.calls.empty());
  EXPECT_FALSE(d.round_over);
  d = run.Answer(A(1), CallClass::kSuccess);
  EXPECT_EQ(d.calls, Calls{C(1)});
  EXPECT_EQ(run.Answer(C(1), CallClass::kSuccess).calls, Calls{C(0)});
  d = run.Answer(C(0), CallClass::kSuccess);
  EXPECT_TRUE(d.round_over);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kS, kS, kS, kS, kF}));
  EXPECT_EQ(run.call_log(), (Calls{A(0), A(1), A(2), C(2), C(1), C(0)}));
}

// §1.6: a prepared action needs compensating only if its predecessors had all succeeded *when the
// abort was decided*. Here step 1 (after step 0) never started: step 2 failed while step 0 was in
// flight, so step 0's later SUCCESS must not make comp 1 required. Disabled: saga.cc evaluates the
// predecessors at compensation time, so comp 1 is called (a null compensation, harmless only behind
// a barrier); fixing it needs the abort-time decision to be persisted (see the core test report).
TEST(SagaTest, DISABLED_StepNeverStartedIsNotCompensatedWhenItsPredecessorSucceedsLate) {
  SagaRun run(MakeSaga(Steps(3), R"({"concurrent":true,"orders":{"1":[0]}})"));
  EXPECT_EQ(run.Start().calls, (Calls{A(0), A(2)}));
  EXPECT_EQ(run.Answer(A(2), CallClass::kFailure).calls, Calls{C(2)});
  run.Answer(C(2), CallClass::kSuccess);
  Decision d = run.Answer(A(0), CallClass::kSuccess);
  EXPECT_EQ(d.calls, Calls{C(0)});
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kS, kP, kP, kS, kF}));
  EXPECT_EQ(run.call_log(), (Calls{A(0), A(2), C(2), C(0)}));
}

// ---------------------------------------------------------------------------------------------------
// External final states.

TEST(SagaTest, ResultsAfterAnExternalFinalStateChangeNothing) {
  SagaRun run(MakeSaga(Steps(2), R"({"concurrent":true})"));
  run.Start();
  run.SetStatusExternally(GlobalStatus::kFailed);  // forceStop while both actions are in flight
  const size_t updates = run.updates();
  Decision d = run.Answer(A(0), CallClass::kSuccess);
  EXPECT_FALSE(d.update.has_value());
  EXPECT_TRUE(d.calls.empty());
  EXPECT_FALSE(d.round_over) << "action 1 is still in flight";
  d = run.Answer(A(1), CallClass::kFailure);
  EXPECT_FALSE(d.update.has_value());
  EXPECT_TRUE(d.calls.empty());
  EXPECT_TRUE(d.round_over);
  EXPECT_EQ(run.updates(), updates);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kP, kP, kP, kP}));
}

TEST(SagaTest, StartOnAFinalSnapshotDoesNothing) {
  for (GlobalStatus s : {GlobalStatus::kSucceed, GlobalStatus::kFailed}) {
    TransSnapshot snap = MakeSaga(Steps(2));
    snap.global.status = s;
    Round round;
    Decision d = Step(snap, round, Event{}, Settings{}, kT0);
    EXPECT_FALSE(d.update.has_value());
    EXPECT_TRUE(d.calls.empty());
    EXPECT_TRUE(d.round_over);
    EXPECT_EQ(snap.global.status, s);
  }
}

TEST(SagaTest, ExternalAbortMidRoundSwitchesToCompensation) {
  SagaRun run(MakeSaga(Steps(2)));
  run.Start();
  run.SetStatusExternally(GlobalStatus::kAborting);  // e.g. an operator's forceAbort
  Decision d = run.Answer(A(0), CallClass::kSuccess);
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kAborting);
  EXPECT_EQ(d.calls, Calls{C(1)}) << "a02 was about to start, so it may have run";
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kS, kS, kP}));
}

TEST(SagaDeathTest, ResultForACallNotInFlightIsABug) {
  TransSnapshot snap = MakeSaga(Steps(1));
  Round round;
  (void)Step(snap, round, Event{}, Settings{}, kT0);
  Event ev;
  ev.kind = Event::Kind::kResult;
  ev.branch_index = C(0);  // never called
  EXPECT_DEATH((void)Step(snap, round, ev, Settings{}, kT0), "not in flight");
}

// ---------------------------------------------------------------------------------------------------
// ParseSagaLayout (SAGA-16) and IsWellFormedSaga.

using Preds = std::vector<std::vector<size_t>>;

TEST(SagaLayoutTest, EmptyAndNullAreSequential) {
  for (const char* text : {"", "null", "{}", R"({"concurrent":false})", R"({"concurrent":null})"}) {
    SCOPED_TRACE(text);
    auto l = ParseSagaLayout(text, 3);
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    EXPECT_FALSE(l->concurrent);
    EXPECT_EQ(l->predecessors, (Preds{{}, {0}, {1}}));
  }
}

TEST(SagaLayoutTest, ConcurrentWithoutOrdersHasNoPredecessors) {
  auto l = ParseSagaLayout(R"({"concurrent":true})", 3);
  ASSERT_TRUE(l.ok());
  EXPECT_TRUE(l->concurrent);
  EXPECT_EQ(l->predecessors, (Preds{{}, {}, {}}));
}

TEST(SagaLayoutTest, OrdersBecomePredecessors) {
  auto l = ParseSagaLayout(R"({"concurrent":true,"orders":{"2":[0,1],"1":[0,0]}})", 3);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->predecessors, (Preds{{}, {0}, {0, 1}}));
}

TEST(SagaLayoutTest, KeysAreCaseInsensitive) {
  auto l = ParseSagaLayout(R"({"Concurrent":true,"Orders":{"1":[0]}})", 2);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_TRUE(l->concurrent);
  EXPECT_EQ(l->predecessors, (Preds{{}, {0}}));
  l = ParseSagaLayout(R"({"CONCURRENT":true,"ORDERS":{"0":[1]}})", 2);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->predecessors, (Preds{{1}, {}}));
}

TEST(SagaLayoutTest, SequentialIgnoresOrders) {
  auto l = ParseSagaLayout(R"({"orders":{"0":[2]}})", 3);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_FALSE(l->concurrent);
  EXPECT_EQ(l->predecessors, (Preds{{}, {0}, {1}}));
}

TEST(SagaLayoutTest, InvalidLayoutsAreRejected) {
  const char* bad[] = {
      R"({"concurrent":true,"orders":{"0":[1],"1":[0]}})",             // cycle
      R"({"concurrent":true,"orders":{"0":[2],"1":[0],"2":[1]}})",     // longer cycle
      R"({"concurrent":true,"orders":{"1":[1]}})",                     // self-dependency
      R"({"concurrent":true,"orders":{"3":[0]}})",                     // key out of range
      R"({"concurrent":true,"orders":{"-1":[0]}})",                    // negative key
      R"({"concurrent":true,"orders":{"1":[3]}})",                     // value out of range
      R"({"concurrent":true,"orders":{"1":[-1]}})",                    // negative value
      R"({"concurrent":true,"orders":{"a":[0]}})",                     // non-integer key
      R"({"concurrent":true,"orders":{"1.0":[0]}})",                   // non-integer key
      R"({"concurrent":true,"orders":{"":[0]}})",                      // empty key
      R"({"concurrent":true,"orders":{"99999999999999999999":[0]}})",  // overflowing key
      R"({"concurrent":true,"orders":{"1":[0.5]}})",                   // non-integer value
      R"({"concurrent":true,"orders":{"1":["0"]}})",                   // string value
      R"({"concurrent":true,"orders":{"1":0}})",                       // not an array
      R"({"concurrent":true,"orders":[]})",                            // orders not an object
      R"({"concurrent":"true"})",                                      // not a boolean
      R"([])",                                                         // not an object
      R"({"concurrent":tru})",                                         // not JSON
  };
  for (const char* text : bad) {
    SCOPED_TRACE(text);
    auto l = ParseSagaLayout(text, 3);
    ASSERT_FALSE(l.ok());
    EXPECT_EQ(l.status().code(), Code::kInvalidArgument);
  }
}

TEST(SagaLayoutTest, SelfDependencyIsNamed) {
  auto l = ParseSagaLayout(R"({"concurrent":true,"orders":{"1":[0,1]}})", 2);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), Code::kInvalidArgument);
  EXPECT_NE(l.status().message().find("depends on itself"), std::string::npos)
      << l.status().message();
}

TEST(SagaLayoutTest, DiamondIsNotACycle) {
  auto l = ParseSagaLayout(R"({"concurrent":true,"orders":{"1":[0],"2":[0],"3":[1,2]}})", 4);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->predecessors, (Preds{{}, {0}, {0}, {1, 2}}));
}

TEST(SagaWellFormedTest, RowsMustBeCompensateActionPairs) {
  EXPECT_TRUE(IsWellFormedSaga(MakeSaga(Steps(3))));
  EXPECT_TRUE(IsWellFormedSaga(MakeSaga({})));
  TransSnapshot swapped = MakeSaga(Steps(2));
  std::swap(swapped.branches[2], swapped.branches[3]);
  EXPECT_FALSE(IsWellFormedSaga(swapped));
  TransSnapshot odd = MakeSaga(Steps(2));
  odd.branches.pop_back();
  EXPECT_FALSE(IsWellFormedSaga(odd));
  TransSnapshot bad_id = MakeSaga(Steps(2));
  bad_id.branches[2].branch_id = "2";
  bad_id.branches[3].branch_id = "2";
  EXPECT_FALSE(IsWellFormedSaga(bad_id));
  TransSnapshot ten = MakeSaga(Steps(10));
  EXPECT_EQ(ten.branches[19].branch_id, "10");
  EXPECT_TRUE(IsWellFormedSaga(ten));
}

}  // namespace
}  // namespace dtx::core
