// Business keys: parsing, limits and the wait decision (core/business_keys.h).
#include "core/business_keys.h"

#include <gtest/gtest.h>

#include <string>

namespace dtx::core {
namespace {

TEST(BusinessKeys, NormalizeSortsAndDeduplicates) {
  Result<std::vector<std::string>> k = NormalizeBusinessKeys({"b", "a", "b"});
  ASSERT_TRUE(k.ok()) << k.status().ToString();
  EXPECT_EQ(*k, (std::vector<std::string>{"a", "b"}));
}

TEST(BusinessKeys, LimitsAreRefusedByName) {
  EXPECT_EQ(NormalizeBusinessKeys({}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(NormalizeBusinessKeys({""}).status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(NormalizeBusinessKeys({std::string(kMaxBusinessKeyBytes, 'k')}).ok());
  Status too_long = NormalizeBusinessKeys({std::string(kMaxBusinessKeyBytes + 1, 'k')}).status();
  EXPECT_EQ(too_long.code(), Code::kInvalidArgument);
  EXPECT_NE(too_long.message().find("over the limit of 128"), std::string::npos);
  std::vector<std::string> many;
  for (size_t i = 0; i < kMaxBusinessKeys; ++i) many.push_back("k" + std::to_string(i));
  EXPECT_TRUE(NormalizeBusinessKeys(many).ok());
  many.push_back("one-more");
  EXPECT_EQ(NormalizeBusinessKeys(many).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(NormalizeBusinessKeys({"a\nb"}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(NormalizeBusinessKeys({"\xff"}).status().code(), Code::kInvalidArgument);
}

TEST(BusinessKeys, SpecIsReadFromCustomDataWithGoKeyRule) {
  EXPECT_TRUE(ParseKeySpec("").value().keys.empty());
  EXPECT_TRUE(ParseKeySpec("not json").value().keys.empty());
  EXPECT_TRUE(ParseKeySpec(R"({"concurrent":true})").value().keys.empty());
  KeySpec s = ParseKeySpec(R"({"Business_Keys":["x","a"],"on_busy":"reject"})").value();
  EXPECT_EQ(s.keys, (std::vector<std::string>{"a", "x"}));
  EXPECT_TRUE(s.reject_if_busy);
  // The last non-null duplicate wins (Go).
  EXPECT_EQ(ParseKeySpec(R"({"business_keys":["a"],"BUSINESS_KEYS":["b"]})").value().keys,
            std::vector<std::string>{"b"});
  EXPECT_EQ(ParseKeySpec(R"({"business_keys":"a"})").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ParseKeySpec(R"({"business_keys":[1]})").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ParseKeySpec(R"({"business_keys":[]})").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ParseKeySpec(R"({"business_keys":["a"],"on_busy":"later"})").status().code(),
            Code::kInvalidArgument);
}

TEST(BusinessKeys, WithKeySpecKeepsOtherMembersAndReplacesFoldedKeys) {
  KeySpec spec{{"a:1", "b:2"}, true};
  std::string cd = WithKeySpec(R"({"concurrent":true,"BUSINESS_KEYS":["z"]})", spec).value();
  EXPECT_EQ(cd, R"({"concurrent":true,"business_keys":["a:1","b:2"],"on_busy":"reject"})");
  KeySpec back = ParseKeySpec(cd).value();
  EXPECT_EQ(back.keys, spec.keys);
  EXPECT_TRUE(back.reject_if_busy);
  EXPECT_EQ(WithKeySpec("", KeySpec{{"k"}, false}).value(), R"({"business_keys":["k"]})");
  EXPECT_EQ(WithKeySpec("[1]", spec).status().code(), Code::kInvalidArgument);
}

GlobalTrans Saga(int64_t timeout_s) {
  GlobalTrans g;
  g.gid = "g";
  g.trans_type = TransType::kSaga;
  g.status = GlobalStatus::kSubmitted;
  g.create_time_ms = 10'000;
  g.options.timeout_to_fail_s = timeout_s;
  return g;
}

TEST(BusinessKeys, DecideRunsWhenHeldOrNotApplicable) {
  KeySpec spec{{"k"}, false};
  KeyState busy{false, "h", "k"};
  Settings st;
  EXPECT_EQ(DecideKeyWait(Saga(0), spec, KeyState{true, "", ""}, st, 20'000).kind,
            KeyWait::Kind::kRun);
  EXPECT_EQ(DecideKeyWait(Saga(0), KeySpec{}, busy, st, 20'000).kind, KeyWait::Kind::kRun);
  GlobalTrans aborting = Saga(0);
  aborting.status = GlobalStatus::kAborting;
  EXPECT_EQ(DecideKeyWait(aborting, spec, KeyState{true, "", ""}, st, 20'000).kind,
            KeyWait::Kind::kRun);
  GlobalTrans prepared = Saga(0);
  prepared.trans_type = TransType::kMsg;
  prepared.status = GlobalStatus::kPrepared;
  EXPECT_EQ(DecideKeyWait(prepared, spec, busy, st, 20'000).kind, KeyWait::Kind::kRun);
}

TEST(BusinessKeys, DecideWaitsUntilTheTimeoutThenFails) {
  KeySpec spec{{"k"}, false};
  KeyState busy{false, "holder", "k"};
  Settings st;
  KeyWait w = DecideKeyWait(Saga(5), spec, busy, st, 12'000);
  EXPECT_EQ(w.kind, KeyWait::Kind::kWait);
  EXPECT_EQ(w.wake_at_ms, 15'000);  // create + timeout_to_fail
  w = DecideKeyWait(Saga(5), spec, busy, st, 15'000);
  EXPECT_EQ(w.kind, KeyWait::Kind::kFail);
  EXPECT_NE(w.reason.find("holder"), std::string::npos);
  // No timeout: a daily re-check, never a failure.
  w = DecideKeyWait(Saga(0), spec, busy, st, 1'000'000'000);
  EXPECT_EQ(w.kind, KeyWait::Kind::kWait);
  EXPECT_EQ(w.wake_at_ms, 1'000'000'000 + kKeyWaitRecheckMs);
}

TEST(BusinessKeys, AnAbortingSagaThatNeverHeldItsKeysFailsWithoutACall) {
  GlobalTrans aborting = Saga(0);
  aborting.status = GlobalStatus::kAborting;
  aborting.rollback_reason = "operator abort";
  KeyWait w =
      DecideKeyWait(aborting, KeySpec{{"k"}, false}, KeyState{false, "h", "k"}, Settings{}, 20'000);
  EXPECT_EQ(w.kind, KeyWait::Kind::kFail);
  EXPECT_EQ(w.reason, "operator abort");
}

TEST(BusinessKeys, DecideRejectsAtOnceWithOnBusyReject) {
  KeyWait w =
      DecideKeyWait(Saga(0), KeySpec{{"k"}, true}, KeyState{false, "h", "k"}, Settings{}, 12'000);
  EXPECT_EQ(w.kind, KeyWait::Kind::kFail);
  EXPECT_NE(w.reason.find("busy"), std::string::npos);
}

GlobalTrans PreparedTcc(int64_t timeout_s, TransType type = TransType::kTcc) {
  GlobalTrans g = Saga(timeout_s);
  g.trans_type = type;
  g.status = GlobalStatus::kPrepared;
  return g;
}

TEST(BusinessKeys, APreparedTccWaitsAtMostThirtySecondsOrItsTimeout) {
  KeySpec spec{{"k"}, false};
  KeyState busy{false, "holder", "k"};
  Settings st;
  st.timeout_to_fail_ms = 0;  // never times out: the wait is capped by kMaxPrepareKeyWaitMs
  EXPECT_EQ(PrepareKeyWaitDeadlineMs(PreparedTcc(0), st), 10'000 + kMaxPrepareKeyWaitMs);
  EXPECT_EQ(PrepareKeyWaitDeadlineMs(PreparedTcc(3600), st), 10'000 + kMaxPrepareKeyWaitMs);
  EXPECT_EQ(PrepareKeyWaitDeadlineMs(PreparedTcc(5), st), 15'000);
  st.timeout_to_fail_ms = 2'000;  // the server's default applies to a tcc without its own
  EXPECT_EQ(PrepareKeyWaitDeadlineMs(PreparedTcc(0), st), 12'000);
  st.timeout_to_fail_ms = 0;
  for (TransType type : {TransType::kTcc, TransType::kXa}) {
    KeyWait w = DecideKeyWait(PreparedTcc(0, type), spec, busy, st, 39'999);
    EXPECT_EQ(w.kind, KeyWait::Kind::kWait);
    EXPECT_EQ(w.wake_at_ms, 40'000);
    w = DecideKeyWait(PreparedTcc(0, type), spec, busy, st, 40'000);
    EXPECT_EQ(w.kind, KeyWait::Kind::kFail);
    EXPECT_NE(w.reason.find("Timeout after 30 seconds waiting for business key 'k'"),
              std::string::npos)
        << w.reason;
    EXPECT_NE(w.reason.find("holder"), std::string::npos);
    // on_busy reject: at once.
    w = DecideKeyWait(PreparedTcc(0, type), KeySpec{{"k"}, true}, busy, st, 10'001);
    EXPECT_EQ(w.kind, KeyWait::Kind::kFail);
    EXPECT_NE(w.reason.find("busy"), std::string::npos);
    // Held, or past prepare (it held them when prepare answered): run.
    EXPECT_EQ(DecideKeyWait(PreparedTcc(0, type), spec, KeyState{true, "", ""}, st, 50'000).kind,
              KeyWait::Kind::kRun);
    GlobalTrans submitted = PreparedTcc(0, type);
    submitted.status = GlobalStatus::kSubmitted;
    EXPECT_EQ(DecideKeyWait(submitted, spec, busy, st, 50'000).kind, KeyWait::Kind::kRun);
  }
}

}  // namespace
}  // namespace dtx::core
