// Unit tests of the msg state machine (core::Step for msg) and of the guarded check-back
// classification (ClassifyCheckBack), driven on explicit time through a tiny engine stand-in like
// saga_test.cc's: it starts rounds, answers calls (the check-back included) with given classes,
// applies every Decision.update to a separate "stored" copy (checking the compare-and-set status)
// and checks after each decision that the update alone reproduces the machine's view. Covers
// PROTOCOL.md §1.4, §1.9, §3.3, §3.4, §3.5 and checklist items MSG-01..03, 06..08.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
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

constexpr int64_t kTimeout = 35'000;  // server default timeout_to_fail
constexpr size_t kCB = kCheckBackIndex;

std::string ActionUrl(size_t k) { return "http://busi/TransIn" + std::to_string(k + 1); }

// A msg with `n` actions in status `status` (submitted: plain submit; prepared: two-phase prepare
// with a check-back URL), as the API layer would store it (§1.9 "Rows").
TransSnapshot MakeMsg(size_t n, GlobalStatus status, TransOptions options = {},
                      const Settings& settings = {}) {
  TransSnapshot s;
  s.global.id = 1;
  s.global.gid = "msg-gid-1";
  s.global.trans_type = TransType::kMsg;
  s.global.status = status;
  s.global.query_prepared = "http://busi/QueryPrepared";
  s.global.create_time_ms = kT0;
  s.global.update_time_ms = kT0;
  const int64_t i0 = InitialIntervalMs(options, settings);
  s.global.next_cron_interval_ms = i0;
  s.global.next_cron_time_ms = kT0 + i0;
  s.global.options = std::move(options);
  for (size_t k = 0; k < n; ++k) {
    BranchRow& row = s.branches.emplace_back();
    row.id = static_cast<int64_t>(k + 1);
    row.gid = s.global.gid;
    row.url = ActionUrl(k);
    row.bin_data = R"({"amount":30})";
    row.branch_id = BranchId(k);
    row.op = "action";
    row.create_time_ms = kT0;
    row.update_time_ms = kT0;
  }
  return s;
}

TransOptions Concurrent() {
  TransOptions o;
  o.concurrent = true;
  return o;
}

const TransUpdate::BranchUpdate* FindBranchUpdate(const TransUpdate& u, size_t k) {
  for (const auto& b : u.branches) {
    if (b.branch_id == BranchId(k) && b.op == "action") return &b;
  }
  return nullptr;
}

// The engine stand-in (see machine_test_util.h), with the check-back (kCB) as an extra call.
class MsgRun : public test_util::MachineRun<MsgRun> {
 public:
  using MachineRun::MachineRun;

  // Answers the check-back with an HTTP answer, classified as the engine does (§3.3).
  Decision AnswerCheckBack(int http_status, const std::string& body, bool legacy = false) {
    return Answer(kCB, ClassifyCheckBack(http_status, body, legacy), body);
  }

  size_t check_backs() const {
    return static_cast<size_t>(std::count(call_log().begin(), call_log().end(), kCB));
  }

  bool CheckCall(size_t i, GlobalStatus before) const {
    ExpectNotInFlight(i);
    if (i == kCB) {
      EXPECT_EQ(before, GlobalStatus::kPrepared) << "a check-back for a msg not prepared";
    } else {
      EXPECT_LT(i, machine().branches.size());
      if (i >= machine().branches.size()) return false;
      EXPECT_FALSE(machine().branches[i].url.empty()) << "a call for an empty URL";
      EXPECT_EQ(machine().global.status, GlobalStatus::kSubmitted) << "an action not submitted";
    }
    return true;
  }
};

// A prepared msg whose check-back is due: the round's first decision makes it.
MsgRun DueForCheckBack(size_t n, TransOptions options = {}) {
  MsgRun run(MakeMsg(n, GlobalStatus::kPrepared, std::move(options)));
  run.now = kT0 + kTimeout;
  return run;
}

// ---------------------------------------------------------------------------------------------------
// Submitted: actions.

// MSG-01
TEST(MsgTest, ActionsRunInOrderEachAfterThePreviousSuccess) {
  MsgRun run(MakeMsg(3, GlobalStatus::kSubmitted));
  Decision d = run.Start();
  EXPECT_EQ(d.calls, Calls{0});
  EXPECT_FALSE(d.update.has_value()) << "starting a round changes nothing";
  EXPECT_FALSE(d.round_over);

  d = run.Answer(0, CallClass::kSuccess);
  EXPECT_EQ(d.calls, Calls{1});
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->gid, "msg-gid-1");
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kSubmitted);
  EXPECT_FALSE(d.update->new_status.has_value());
  ExpectWakeup(*d.update, run.now, kI0);
  ASSERT_EQ(d.update->branches.size(), 1u);
  EXPECT_EQ(d.update->branches[0].branch_id, "01");
  EXPECT_EQ(d.update->branches[0].op, "action");
  EXPECT_EQ(d.update->branches[0].status, BranchStatus::kSucceed);
  EXPECT_EQ(d.update->branches[0].attempts, 1);
  EXPECT_EQ(d.update->branches[0].finish_time_ms, run.now);

  EXPECT_EQ(run.Answer(1, CallClass::kSuccess).calls, Calls{2});
  d = run.Answer(2, CallClass::kSuccess);
  EXPECT_TRUE(d.calls.empty());
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kSubmitted);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kSucceed);
  EXPECT_EQ(d.update->finish_time_ms, run.now);
  const auto* a03 = FindBranchUpdate(*d.update, 2);
  ASSERT_NE(a03, nullptr);
  EXPECT_EQ(a03->status, BranchStatus::kSucceed);

  EXPECT_EQ(run.status(), GlobalStatus::kSucceed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kS, kS}));
  EXPECT_EQ(run.call_log(), (Calls{0, 1, 2}));
  EXPECT_EQ(run.max_in_flight(), 1u);
  EXPECT_EQ(run.global().rollback_reason, "");
}

// Topic expansion gives rows "01-01", "01-02": still just rows, called in order.
TEST(MsgTest, TopicRowsAreCalledLikeAnyOther) {
  TransSnapshot snap = MakeMsg(3, GlobalStatus::kSubmitted);
  snap.branches[0].branch_id = "01-01";
  snap.branches[1].branch_id = "01-02";
  snap.branches[2].branch_id = "02";
  MsgRun run(snap);
  run.Start();
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.call_log(), (Calls{0, 1, 2}));
  EXPECT_EQ(run.status(), GlobalStatus::kSucceed);
}

// MSG-02
TEST(MsgTest, ConcurrentCallsAllActionsAtOnce) {
  MsgRun run(MakeMsg(3, GlobalStatus::kSubmitted, Concurrent()));
  Decision d = run.Start();
  EXPECT_EQ(d.calls, (Calls{0, 1, 2}));
  EXPECT_FALSE(d.update.has_value());
  d = run.Answer(2, CallClass::kSuccess);
  EXPECT_TRUE(d.calls.empty());
  EXPECT_FALSE(d.round_over);
  EXPECT_FALSE(d.update->new_status.has_value());
  d = run.Answer(0, CallClass::kSuccess);
  EXPECT_FALSE(d.round_over);
  d = run.Answer(1, CallClass::kSuccess);
  EXPECT_TRUE(d.round_over);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kSucceed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kS, kS}));
  EXPECT_EQ(run.max_in_flight(), 3u);
}

TEST(MsgTest, ConcurrentErrorRetriesOnlyThatActionNextRound) {
  MsgRun run(MakeMsg(3, GlobalStatus::kSubmitted, Concurrent()));
  run.Start();
  Decision d = run.Answer(1, CallClass::kError);
  EXPECT_TRUE(d.calls.empty()) << "not called again within the round";
  EXPECT_FALSE(d.round_over);
  ExpectWakeup(*d.update, run.now, 2 * kI0);
  run.Answer(0, CallClass::kSuccess);
  d = run.Answer(2, CallClass::kSuccess);
  EXPECT_TRUE(d.round_over);
  EXPECT_EQ(run.status(), GlobalStatus::kSubmitted);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kP, kS}));

  d = run.StartDueRound();
  EXPECT_EQ(d.calls, Calls{1});
  d = run.Answer(1, CallClass::kSuccess);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kSucceed);
  EXPECT_EQ(run.call_log(), (Calls{0, 1, 2, 1}));
}

// MSG-03
TEST(MsgTest, FailureAndErrorAreRetriedAndASubmittedMsgNeverFails) {
  MsgRun run(MakeMsg(2, GlobalStatus::kSubmitted));
  run.Start();
  const std::string body = R"({"dtm_result":"FAILURE","message":"duplicate"})";
  Decision d = run.Answer(0, CallClass::kFailure, body);
  EXPECT_TRUE(d.calls.empty()) << "action 02 waits for action 01's SUCCESS";
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kSubmitted);
  EXPECT_FALSE(d.update->new_status.has_value());
  EXPECT_FALSE(d.update->rollback_reason.has_value());
  ExpectWakeup(*d.update, run.now, 2 * kI0);
  const auto* a01 = FindBranchUpdate(*d.update, 0);
  ASSERT_NE(a01, nullptr);
  EXPECT_FALSE(a01->status.has_value()) << "the row stays prepared";
  EXPECT_EQ(a01->attempts, 1);
  EXPECT_EQ(a01->last_error, "FAILURE: " + body);

  run.StartDueRound();
  d = run.Answer(0, CallClass::kError);
  EXPECT_FALSE(d.update->new_status.has_value());
  ExpectWakeup(*d.update, run.now, 4 * kI0);
  EXPECT_EQ(run.row(0).last_error, "ERROR: HTTP 500: internal error");

  run.StartDueRound();
  d = run.Answer(0, CallClass::kOngoing);
  ExpectWakeup(*d.update, run.now, 4 * kI0);  // ONGOING keeps the interval

  run.now = kT0 + 7LL * 24 * 3600 * 1000;  // a week later: no timeout after submit
  d = run.StartDueRound();
  EXPECT_EQ(d.calls, Calls{0});
  d = run.Answer(0, CallClass::kSuccess);
  ExpectWakeup(*d.update, run.now, kI0);  // SUCCESS resets
  EXPECT_EQ(d.calls, Calls{1});
  d = run.Answer(1, CallClass::kFailure);
  EXPECT_EQ(run.status(), GlobalStatus::kSubmitted);
  run.StartDueRound();
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kSucceed);
  EXPECT_EQ(run.row(0).attempts, 4);
  EXPECT_EQ(run.row(1).attempts, 2);
  EXPECT_EQ(run.call_log(), (Calls{0, 0, 0, 0, 1, 1}));
}

TEST(MsgTest, EmptyActionUrlSucceedsWithoutACall) {
  TransSnapshot snap = MakeMsg(2, GlobalStatus::kSubmitted);
  snap.branches[0].url = "";
  MsgRun run(snap);
  Decision d = run.Start();
  EXPECT_EQ(d.calls, Calls{1});
  ASSERT_TRUE(d.update.has_value());
  const auto* a01 = FindBranchUpdate(*d.update, 0);
  ASSERT_NE(a01, nullptr);
  EXPECT_EQ(a01->status, BranchStatus::kSucceed);
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kSucceed);
}

// The delay of custom_data is applied by the engine when it schedules the first round.
TEST(MsgTest, DelayIsTheEnginesBusiness) {
  TransSnapshot snap = MakeMsg(1, GlobalStatus::kSubmitted);
  snap.global.custom_data = R"({"Delay":10})";
  MsgRun run(snap);
  EXPECT_EQ(run.Start().calls, Calls{0});
}

// An operator's forceAbort: a msg has nothing to undo.
TEST(MsgTest, AbortingEndsFailedWithoutACall) {
  MsgRun run(MakeMsg(2, GlobalStatus::kAborting));
  Decision d = run.Start();
  EXPECT_TRUE(d.calls.empty());
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kAborting);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kFailed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kP, kP}));
}

// ---------------------------------------------------------------------------------------------------
// Prepared: the check-back.

// MSG-06
TEST(MsgTest, NoCheckBackBeforeTheDefaultTimeout) {
  MsgRun run(MakeMsg(2, GlobalStatus::kPrepared));
  Decision d = run.StartDueRound();  // the first recovery pass, at create + I0
  EXPECT_EQ(run.now, kT0 + kI0);
  EXPECT_TRUE(d.calls.empty());
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kPrepared);
  EXPECT_FALSE(d.update->new_status.has_value());
  EXPECT_EQ(d.update->next_cron_time_ms, kT0 + kTimeout) << "exactly at create + timeout";
  EXPECT_EQ(d.update->next_cron_interval_ms, kI0);

  run.now = kT0 + kTimeout - 1;
  d = run.Restart();
  EXPECT_TRUE(d.calls.empty());
  EXPECT_FALSE(d.update.has_value()) << "the wake-up is already right";

  d = run.StartDueRound();
  EXPECT_EQ(run.now, kT0 + kTimeout);
  EXPECT_EQ(d.calls, Calls{kCB});
  EXPECT_FALSE(d.update.has_value());
  EXPECT_FALSE(d.round_over);
  EXPECT_EQ(run.check_backs(), 1u);
}

// MSG-06
TEST(MsgTest, CustomTimeoutOf120IsHonoured) {
  TransOptions o;
  o.timeout_to_fail_s = 120;
  MsgRun run(MakeMsg(1, GlobalStatus::kPrepared, o));
  run.now = kT0 + kTimeout;
  Decision d = run.Start();
  EXPECT_TRUE(d.calls.empty()) << "the server default does not apply";
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->next_cron_time_ms, kT0 + 120'000);
  run.now = kT0 + 119'999;
  EXPECT_TRUE(run.Restart().calls.empty());
  d = run.StartDueRound();
  EXPECT_EQ(run.now, kT0 + 120'000);
  EXPECT_EQ(d.calls, Calls{kCB});
}

// MSG-07
TEST(MsgTest, CheckBackSuccessSubmitsAndStartsTheActionsInTheSameRound) {
  MsgRun run = DueForCheckBack(2);
  EXPECT_EQ(run.Start().calls, Calls{kCB});
  Decision d = run.AnswerCheckBack(200, R"({"dtm_result":"SUCCESS"})");
  EXPECT_EQ(d.calls, Calls{0});
  EXPECT_FALSE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kPrepared);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kSubmitted);
  ExpectWakeup(*d.update, run.now, kI0);
  EXPECT_TRUE(d.update->branches.empty());
  EXPECT_FALSE(d.update->finish_time_ms.has_value());
  EXPECT_EQ(run.status(), GlobalStatus::kSubmitted);

  d = run.Answer(0, CallClass::kSuccess);
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kSubmitted);
  EXPECT_EQ(d.calls, Calls{1});
  d = run.Answer(1, CallClass::kSuccess);
  EXPECT_TRUE(d.round_over);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kSucceed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kS}));
  EXPECT_EQ(run.call_log(), (Calls{kCB, 0, 1}));
}

TEST(MsgTest, CheckBackSuccessStartsConcurrentActionsTogether) {
  MsgRun run = DueForCheckBack(3, Concurrent());
  run.Start();
  Decision d = run.Answer(kCB, CallClass::kSuccess);
  EXPECT_EQ(d.calls, (Calls{0, 1, 2}));
  EXPECT_EQ(d.update->new_status, GlobalStatus::kSubmitted);
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kSucceed);
}

// MSG-07
TEST(MsgTest, CheckBackFailureFailsWithoutTouchingABranch) {
  MsgRun run = DueForCheckBack(2);
  run.Start();
  Decision d = run.AnswerCheckBack(409, R"({"dtm_result":"FAILURE"})");
  EXPECT_TRUE(d.calls.empty());
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kPrepared);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kFailed);
  EXPECT_EQ(d.update->finish_time_ms, run.now);
  EXPECT_TRUE(d.update->branches.empty());
  EXPECT_FALSE(d.update->rollback_time_ms.has_value()) << "nothing was rolled back";
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kP, kP}));
  EXPECT_EQ(run.row(0).attempts, 0);
  EXPECT_EQ(run.call_log(), Calls{kCB});
}

// MSG-07
TEST(MsgTest, CheckBackOngoingStaysPreparedAndResetsTheInterval) {
  TransSnapshot snap = MakeMsg(1, GlobalStatus::kPrepared);
  snap.global.next_cron_interval_ms = 80'000;  // backed off by earlier indeterminate answers
  MsgRun run(snap);
  run.now = kT0 + kTimeout;
  run.Start();
  Decision d = run.AnswerCheckBack(200, R"({"dtm_result":"ONGOING"})");
  EXPECT_TRUE(d.calls.empty()) << "not asked again within the round";
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kPrepared);
  EXPECT_FALSE(d.update->new_status.has_value());
  ExpectWakeup(*d.update, run.now, kI0);
  EXPECT_TRUE(d.update->branches.empty());
  EXPECT_EQ(run.status(), GlobalStatus::kPrepared);

  d = run.StartDueRound();
  EXPECT_EQ(d.calls, Calls{kCB}) << "asked again at the next due round";
  d = run.Answer(kCB, CallClass::kSuccess);
  EXPECT_EQ(d.calls, Calls{0});
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kSucceed);
  EXPECT_EQ(run.check_backs(), 2u);
}

// MSG-08
TEST(MsgTest, IndeterminateCheckBackStaysPreparedWithBackoff) {
  MsgRun run = DueForCheckBack(1);
  run.Start();
  const std::string html = "<html><body><h1>Whitelabel Error Page</h1></body></html>";
  Decision d = run.AnswerCheckBack(200, html);
  EXPECT_TRUE(d.calls.empty());
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kPrepared);
  EXPECT_FALSE(d.update->new_status.has_value()) << "an error page does not commit the message";
  ExpectWakeup(*d.update, run.now, 2 * kI0);
  EXPECT_TRUE(d.update->branches.empty());

  d = run.StartDueRound();
  EXPECT_EQ(d.calls, Calls{kCB});
  d = run.AnswerCheckBack(200, R"({"dtm_result":"Object reference not set to an instance"})");
  EXPECT_FALSE(d.update->new_status.has_value());
  ExpectWakeup(*d.update, run.now, 4 * kI0);

  d = run.StartDueRound();
  d = run.AnswerCheckBack(503, "Service Unavailable");  // a plain error: same path
  ExpectWakeup(*d.update, run.now, 8 * kI0);
  EXPECT_EQ(run.status(), GlobalStatus::kPrepared);

  run.StartDueRound();
  d = run.AnswerCheckBack(200, "");
  EXPECT_EQ(d.update->new_status, GlobalStatus::kSubmitted);
  ExpectWakeup(*d.update, run.now, kI0);
  EXPECT_EQ(d.calls, Calls{0});
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kSucceed);
  EXPECT_EQ(run.check_backs(), 4u);
}

// MSG-08
TEST(MsgTest, LegacyPolicyCommitsOnAnError200) {
  MsgRun run = DueForCheckBack(1);
  run.Start();
  Decision d = run.AnswerCheckBack(200, "<html>oops</html>", /*legacy=*/true);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kSubmitted);
  EXPECT_EQ(d.calls, Calls{0});
}

// The AP submitted while the check-back was in flight: its decision stands.
TEST(MsgTest, CheckBackAnswerAfterAnExternalSubmitIsIgnored) {
  MsgRun run = DueForCheckBack(1);
  run.Start();
  run.SetStatusExternally(GlobalStatus::kSubmitted);
  Decision d = run.Answer(kCB, CallClass::kFailure);
  EXPECT_EQ(d.calls, Calls{0});
  EXPECT_FALSE(d.update.has_value());
  EXPECT_EQ(run.status(), GlobalStatus::kSubmitted);
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kSucceed);
}

// forceStop while the check-back is in flight: the round ends when it answers, nothing is written.
TEST(MsgTest, CheckBackAnswerAfterAnExternalFinalStateChangesNothing) {
  MsgRun run = DueForCheckBack(1);
  run.Start();
  run.SetStatusExternally(GlobalStatus::kFailed);
  const size_t updates = run.updates();
  Decision d = run.Answer(kCB, CallClass::kSuccess);
  EXPECT_FALSE(d.update.has_value());
  EXPECT_TRUE(d.calls.empty());
  EXPECT_TRUE(d.round_over);
  EXPECT_EQ(run.updates(), updates);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
}

TEST(MsgDeathTest, CheckBackResultWithoutACheckBackIsABug) {
  TransSnapshot snap = MakeMsg(1, GlobalStatus::kSubmitted);
  Round round;
  (void)Step(snap, round, Event{}, Settings{}, kT0);
  Event ev;
  ev.kind = Event::Kind::kResult;
  ev.branch_index = kCheckBackIndex;
  EXPECT_DEATH((void)Step(snap, round, ev, Settings{}, kT0), "check-back");
}

TEST(MsgDeathTest, ResultForACallNotInFlightIsABug) {
  TransSnapshot snap = MakeMsg(2, GlobalStatus::kSubmitted);
  Round round;
  (void)Step(snap, round, Event{}, Settings{}, kT0);
  Event ev;
  ev.kind = Event::Kind::kResult;
  ev.branch_index = 1;  // waits for action 01
  EXPECT_DEATH((void)Step(snap, round, ev, Settings{}, kT0), "not in flight");
}

// ---------------------------------------------------------------------------------------------------
// ClassifyCheckBack (§3.3 guarded rule, MSG-08).

TEST(ClassifyCheckBackTest, Guarded) {
  struct Case {
    int status;
    std::string body;
    CallClass want;
  };
  const std::vector<Case> cases = {
      // Success answers of DTM's test service and the SDK samples.
      {200, R"({"dtm_result":"SUCCESS"})", CallClass::kSuccess},
      {200, "null", CallClass::kSuccess},
      {200, "{}", CallClass::kSuccess},
      {200, "", CallClass::kSuccess},
      {200, "  \r\n\t ", CallClass::kSuccess},
      {200, R"({"message":"ok"})", CallClass::kSuccess},
      {200, "[]", CallClass::kSuccess},
      {200, "SUCCESS", CallClass::kSuccess},
      // Indeterminate 200 answers: an error page, an exception text.
      {200, "<html><body>Internal Server Error</body></html>", CallClass::kError},
      {200, R"({"dtm_result":"Object reference not set to an instance of an object."})",
       CallClass::kError},
      {200, R"({"dtm_result":null})", CallClass::kError},
      {200, R"({"dtm_result":"success"})", CallClass::kError},
      {200, "ok", CallClass::kError},
      // The §3.3 rules 1-3 are unchanged.
      {409, "", CallClass::kFailure},
      {409, R"({"dtm_result":"FAILURE"})", CallClass::kFailure},
      {200, R"({"dtm_result":"FAILURE"})", CallClass::kFailure},
      {500, "FAILURE", CallClass::kFailure},
      {425, "", CallClass::kOngoing},
      {200, R"({"dtm_result":"ONGOING"})", CallClass::kOngoing},
      {500, "boom", CallClass::kError},
      {204, "", CallClass::kError},
      {0, "connection refused", CallClass::kError},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(ClassifyCheckBack(c.status, c.body, false), c.want)
        << c.status << " '" << c.body << "': got "
        << ToString(ClassifyCheckBack(c.status, c.body, false));
  }
}

TEST(ClassifyCheckBackTest, LegacyCommitsOnEvery200) {
  for (const std::string body :
       {"<html><body>Internal Server Error</body></html>",
        R"({"dtm_result":"Object reference not set to an instance of an object."})", "ok", "",
        "null", R"({"dtm_result":"SUCCESS"})"}) {
    EXPECT_EQ(ClassifyCheckBack(200, body, true), CallClass::kSuccess) << body;
  }
  EXPECT_EQ(ClassifyCheckBack(409, "", true), CallClass::kFailure);
  EXPECT_EQ(ClassifyCheckBack(200, R"({"dtm_result":"FAILURE"})", true), CallClass::kFailure);
  EXPECT_EQ(ClassifyCheckBack(425, "", true), CallClass::kOngoing);
  EXPECT_EQ(ClassifyCheckBack(500, "<html>", true), CallClass::kError);
}

}  // namespace
}  // namespace dtx::core
