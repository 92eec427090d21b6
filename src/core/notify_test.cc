// Unit tests of the notify state machine (core/notify.h) and its pieces (presets, success rules,
// state codec), driven on explicit time by the engine stand-in of machine_test_util.h: every
// decision's update is applied to a separate stored copy, so the tests also check that what is
// written alone reproduces the machine's view (an attempt is recorded in the same write as the next
// wake-up).

#include "core/notify.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/machine.h"
#include "core/machine_test_util.h"

namespace dtx::core {
namespace {

using namespace test_util;  // NOLINT(google-build-using-namespace)

class NotifyRun : public MachineRun<NotifyRun> {
 public:
  using MachineRun::MachineRun;
  bool CheckCall(size_t i, GlobalStatus before) const {
    ExpectNotInFlight(i);
    if (i == kCheckBackIndex) {
      EXPECT_EQ(before, GlobalStatus::kPrepared);
    } else {
      EXPECT_EQ(i, 0U);
      EXPECT_EQ(machine().global.status, GlobalStatus::kSubmitted);
    }
    return true;
  }
  // Answers attempt 0 with an HTTP status and body, classified by the notification's rule.
  Decision AnswerHttp(int http_status, const std::string& body) {
    NotifyState s = State();
    const bool ok = IsNotifySuccess(s.success, http_status, body);
    return Answer(0, ok ? CallClass::kSuccess : CallClass::kError, body);
  }
  NotifyState State() const {
    Result<NotifyState> s = DecodeNotifyState(global().custom_data);
    EXPECT_TRUE(s.ok());
    return s.ok() ? *s : NotifyState{};
  }
};

TransSnapshot MakeNotify(std::vector<int64_t> schedule_ms, GlobalStatus status,
                         SuccessRule rule = {}) {
  TransSnapshot s;
  s.global.id = 1;
  s.global.gid = "order-1-paid";
  s.global.trans_type = TransType::kNotify;
  s.global.status = status;
  s.global.query_prepared = "http://gw/query";
  s.global.create_time_ms = kT0;
  s.global.update_time_ms = kT0;
  NotifyState st;
  st.schedule_ms = std::move(schedule_ms);
  st.success = std::move(rule);
  st.timeout_ms = 1000;
  st.cycle_start_ms = status == GlobalStatus::kSubmitted ? kT0 : 0;
  s.global.custom_data = EncodeNotifyState(st);
  s.global.next_cron_interval_ms = kI0;
  s.global.next_cron_time_ms =
      status == GlobalStatus::kSubmitted ? kT0 + st.schedule_ms[0] : kT0 + 35'000;
  BranchRow& row = s.branches.emplace_back();
  row.id = 1;
  row.gid = s.global.gid;
  row.url = "http://merchant/notify";
  row.bin_data = R"({"order":1})";
  row.branch_id = "01";
  row.op = "notify";
  return s;
}

TEST(NotifyPresetTest, PresetsAreExactlyThePublishedLadders) {
  auto wechat = NotifyPreset("wechat");
  ASSERT_TRUE(wechat.ok());
  EXPECT_EQ(*wechat, (std::vector<int64_t>{0, 15'000, 15'000, 30'000, 180'000, 600'000, 1'200'000,
                                           1'800'000, 1'800'000, 1'800'000, 3'600'000, 10'800'000,
                                           10'800'000, 10'800'000, 21'600'000, 21'600'000}));
  auto alipay = NotifyPreset("alipay");
  ASSERT_TRUE(alipay.ok());
  EXPECT_EQ(*alipay, (std::vector<int64_t>{0, 120'000, 600'000, 600'000, 3'600'000, 7'200'000,
                                           21'600'000, 54'000'000}));
  int64_t alipay_total = 0;
  for (int64_t v : *alipay) alipay_total += v;
  EXPECT_EQ(alipay_total, (24 * 60 + 22) * 60'000);  // ~24 h 22 m
  auto svix = NotifyPreset("svix");
  ASSERT_TRUE(svix.ok());
  EXPECT_EQ(*svix, (std::vector<int64_t>{0, 5'000, 300'000, 1'800'000, 7'200'000, 18'000'000,
                                         36'000'000, 36'000'000}));
  auto rocketmq = NotifyPreset("rocketmq");
  ASSERT_TRUE(rocketmq.ok());
  ASSERT_EQ(rocketmq->size(), 17U);
  EXPECT_EQ((*rocketmq)[1], 10'000);
  EXPECT_EQ((*rocketmq)[16], 7'200'000);
  EXPECT_FALSE(NotifyPreset("stripe").ok());
}

TEST(NotifySuccessTest, EachRule) {
  SuccessRule s2xx;
  EXPECT_TRUE(IsNotifySuccess(s2xx, 200, "x"));
  EXPECT_TRUE(IsNotifySuccess(s2xx, 204, ""));
  EXPECT_FALSE(IsNotifySuccess(s2xx, 302, ""));
  EXPECT_FALSE(IsNotifySuccess(s2xx, 0, "connection refused"));
  SuccessRule body{SuccessRule::Kind::kBody, "", "success"};
  EXPECT_TRUE(IsNotifySuccess(body, 200, " success\n"));
  EXPECT_FALSE(IsNotifySuccess(body, 200, "fail"));
  EXPECT_FALSE(IsNotifySuccess(body, 200, "successful"));
  EXPECT_FALSE(IsNotifySuccess(body, 500, "success"));
  SuccessRule js{SuccessRule::Kind::kJson, "code", "SUCCESS"};
  EXPECT_TRUE(IsNotifySuccess(js, 200, R"({"code":"SUCCESS","message":"ok"})"));
  EXPECT_FALSE(IsNotifySuccess(js, 200, R"({"code":"FAIL"})"));
  EXPECT_FALSE(IsNotifySuccess(js, 200, R"({"data":{"code":"SUCCESS"}})"));  // top level only
  EXPECT_FALSE(IsNotifySuccess(js, 200, "SUCCESS"));
  SuccessRule num{SuccessRule::Kind::kJson, "errcode", "0"};
  EXPECT_TRUE(IsNotifySuccess(num, 200, R"({"errcode":0})"));
}

TEST(NotifyStateTest, CodecRoundTripAndLogCap) {
  NotifyState s;
  s.preset = "svix";
  s.schedule_ms = {0, 5000};
  s.success = {SuccessRule::Kind::kJson, "code", "SUCCESS"};
  s.timeout_ms = 2500;
  s.secret = "whsec_abc";
  s.request_hash = "h";
  s.cycle_start_ms = 7;
  for (int i = 1; i <= 60; ++i) {
    AppendNotifyAttempt(s, NotifyAttempt{i, i * 10, 500, 3, "not a success answer", "nope"});
  }
  ASSERT_EQ(s.log.size(), kMaxNotifyLog);
  EXPECT_EQ(s.log.front().n, 11);  // the oldest ones are dropped
  auto back = DecodeNotifyState(EncodeNotifyState(s));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->schedule_ms, s.schedule_ms);
  EXPECT_EQ(back->success, s.success);
  EXPECT_EQ(back->secret, "whsec_abc");
  EXPECT_EQ(back->log.size(), kMaxNotifyLog);
  EXPECT_EQ(back->log.back().n, 60);
  EXPECT_EQ(back->log.back().response, "nope");
  EXPECT_FALSE(DecodeNotifyState("[]").ok());
}

TEST(NotifyTest, DeliveredOnTheFirstAttempt) {
  NotifyRun run(MakeNotify({0, 1000}, GlobalStatus::kSubmitted));
  Decision d = run.Start();
  ASSERT_EQ(run.pending(), Calls{0});
  run.AnswerHttp(200, "ok");
  EXPECT_EQ(run.status(), GlobalStatus::kSucceed);
  NotifyState s = run.State();
  ASSERT_EQ(s.log.size(), 1U);
  EXPECT_EQ(s.log[0].n, 1);
  EXPECT_EQ(s.log[0].http_status, 0);  // the stand-in does not carry the status (see below)
  EXPECT_EQ(s.total_attempts, 1);
}

TEST(NotifyTest, FailedAttemptsFollowTheScheduleThenSucceed) {
  NotifyRun run(MakeNotify({0, 1000, 4000, 9000}, GlobalStatus::kSubmitted));
  run.Start();
  run.AnswerHttp(500, "down");
  // The attempt and the next wake-up are one write: 1000 ms after the attempt ended.
  EXPECT_EQ(run.global().next_cron_time_ms, kT0 + kAnswerDelayMs + 1000);
  EXPECT_EQ(run.State().cycle_attempts, 1);
  EXPECT_TRUE(run.pending().empty());
  run.StartDueRound();
  ASSERT_EQ(run.pending(), Calls{0});
  const int64_t second_end = run.now + kAnswerDelayMs;
  run.AnswerHttp(503, "still down");
  EXPECT_EQ(run.global().next_cron_time_ms, second_end + 4000);
  run.StartDueRound();
  run.AnswerHttp(200, "ok");
  EXPECT_EQ(run.status(), GlobalStatus::kSucceed);
  NotifyState s = run.State();
  ASSERT_EQ(s.log.size(), 3U);
  EXPECT_EQ(s.log[0].error, "down");  // no HTTP status in the stand-in: the answer is the error
  EXPECT_EQ(s.log[2].error, "");
  EXPECT_EQ(run.row(0).attempts, 3);
}

TEST(NotifyTest, ExhaustedScheduleFails) {
  NotifyRun run(MakeNotify({0, 1000}, GlobalStatus::kSubmitted));
  run.Start();
  run.AnswerHttp(500, "x");
  run.StartDueRound();
  run.AnswerHttp(500, "x");
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.global().rollback_reason, kNotifyExhausted);
  EXPECT_EQ(run.State().total_attempts, 2);
}

TEST(NotifyTest, ZeroWaitRetriesInTheSameRoundAfterTheRecord) {
  NotifyRun run(MakeNotify({0, 0, 0}, GlobalStatus::kSubmitted));
  run.Start();
  const size_t writes_before = run.updates();
  Decision d = run.AnswerHttp(500, "x");
  EXPECT_GT(run.updates(), writes_before);  // recorded before the next call is handed out
  EXPECT_EQ(d.calls, Calls{0});
  EXPECT_EQ(run.State().cycle_attempts, 1);
}

TEST(NotifyTest, FirstAttemptWaitsForScheduleZero) {
  NotifyRun run(MakeNotify({2000, 1000}, GlobalStatus::kSubmitted));
  run.Start();
  EXPECT_TRUE(run.pending().empty());
  EXPECT_EQ(run.global().next_cron_time_ms, kT0 + 2000);
  run.StartDueRound();
  EXPECT_EQ(run.pending(), Calls{0});
}

TEST(NotifyTest, AnOverdueAttemptAfterACrashIsMadeAtOnceNotSkipped) {
  NotifyRun run(MakeNotify({0, 1000, 1000}, GlobalStatus::kSubmitted));
  run.Start();
  run.AnswerHttp(500, "x");
  // The coordinator dies; recovery resumes an hour later: attempt 2 is made, attempt 3 still
  // follows one second after it.
  run.now += 3'600'000;
  run.Restart();
  ASSERT_EQ(run.pending(), Calls{0});
  const int64_t end = run.now + kAnswerDelayMs;
  run.AnswerHttp(500, "x");
  EXPECT_EQ(run.global().next_cron_time_ms, end + 1000);
  EXPECT_EQ(run.State().cycle_attempts, 2);
}

TEST(NotifyTest, BodyRuleDecidesSuccess) {
  NotifyRun run(MakeNotify({0, 1000}, GlobalStatus::kSubmitted,
                           SuccessRule{SuccessRule::Kind::kBody, "", "success"}));
  run.Start();
  run.AnswerHttp(200, "fail");
  EXPECT_EQ(run.status(), GlobalStatus::kSubmitted);
  run.StartDueRound();
  run.AnswerHttp(200, "success\n");
  EXPECT_EQ(run.status(), GlobalStatus::kSucceed);
}

TEST(NotifyTest, TwoPhaseCheckBackSubmitsAndStartsTheSchedule) {
  NotifyRun run(MakeNotify({0, 1000}, GlobalStatus::kPrepared));
  run.Start();
  EXPECT_TRUE(run.pending().empty());  // not yet: timeout_to_fail (35 s) after creation
  run.now = kT0 + 35'000;
  run.Restart();
  ASSERT_EQ(run.pending(), Calls{kCheckBackIndex});
  Decision d = run.Answer(kCheckBackIndex, CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kSubmitted);
  EXPECT_EQ(d.calls, Calls{0});  // schedule[0] == 0: the first attempt follows at once
  EXPECT_EQ(run.State().cycle_start_ms, run.now);
}

TEST(NotifyTest, TwoPhaseCheckBackFailureAborts) {
  NotifyRun run(MakeNotify({0}, GlobalStatus::kPrepared));
  run.now = kT0 + 35'000;
  run.Start();
  run.Answer(kCheckBackIndex, CallClass::kFailure);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_NE(run.global().rollback_reason, kNotifyExhausted);
  EXPECT_EQ(run.row(0).attempts, 0);
}

TEST(NotifyTest, ResendStartsTheScheduleAgainAndKeepsTheLog) {
  NotifyRun run(MakeNotify({0}, GlobalStatus::kSubmitted));
  run.Start();
  run.AnswerHttp(500, "x");
  ASSERT_EQ(run.status(), GlobalStatus::kFailed);
  // What the engine's resend writes: submitted, cycle restarted (cycle_start 0 = now).
  NotifyState s = run.State();
  s.cycle_start_ms = 0;
  s.cycle_attempts = 0;
  TransSnapshot snap = MakeNotify({0}, GlobalStatus::kSubmitted);
  snap.global.custom_data = EncodeNotifyState(s);
  NotifyRun again(snap);
  again.now = run.now + 5000;
  again.Start();
  ASSERT_EQ(again.pending(), Calls{0});
  again.AnswerHttp(200, "ok");
  EXPECT_EQ(again.status(), GlobalStatus::kSucceed);
  NotifyState after = again.State();
  ASSERT_EQ(after.log.size(), 2U);
  EXPECT_EQ(after.log[1].n, 2);
}

TEST(NotifyTest, AttemptRecordsStatusLatencyAndResponse) {
  TransSnapshot snap = MakeNotify({0, 1000}, GlobalStatus::kSubmitted);
  Round round;
  Settings settings;
  Decision d = Step(snap, round, Event{}, settings, kT0);
  ASSERT_EQ(d.calls, std::vector<size_t>{0});
  Event ev;
  ev.kind = Event::Kind::kResult;
  ev.branch_index = 0;
  ev.result = CallClass::kError;
  ev.http_status = 500;
  ev.latency_ms = 42;
  ev.answer = std::string(3000, 'x');
  d = Step(snap, round, ev, settings, kT0 + 50);
  ASSERT_TRUE(d.update && d.update->custom_data);
  auto s = DecodeNotifyState(*d.update->custom_data);
  ASSERT_TRUE(s.ok());
  ASSERT_EQ(s->log.size(), 1U);
  EXPECT_EQ(s->log[0].http_status, 500);
  EXPECT_EQ(s->log[0].latency_ms, 42);
  EXPECT_EQ(s->log[0].time_ms, kT0 + 8);
  EXPECT_EQ(s->log[0].response.size(), kMaxNotifyResponseBytes);
  EXPECT_EQ(*d.update->next_cron_time_ms, kT0 + 50 + 1000);
  // No answer at all: the transport error is the attempt's error.
  d = Step(snap, round, Event{}, settings, kT0 + 1050);
  ASSERT_EQ(d.calls, std::vector<size_t>{0});
  ev.http_status = 0;
  ev.answer = "connection refused";
  d = Step(snap, round, ev, settings, kT0 + 1100);
  s = DecodeNotifyState(*d.update->custom_data);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->log[1].error, "connection refused");
  EXPECT_EQ(s->log[1].response, "");
  EXPECT_EQ(snap.global.status, GlobalStatus::kFailed);
}

}  // namespace
}  // namespace dtx::core
