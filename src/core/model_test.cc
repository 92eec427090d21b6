// Unit tests of the transaction model: names of types and statuses, the options JSON (PROTOCOL.md
// §1.3, §2.4) and the plain-value defaults the other layers rely on.

#include "core/model.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <string>

namespace dtx::core {
namespace {

namespace json = boost::json;

TEST(ModelTest, TransTypeNamesRoundTrip) {
  const std::pair<TransType, const char*> all[] = {{TransType::kSaga, "saga"},
                                                   {TransType::kTcc, "tcc"},
                                                   {TransType::kXa, "xa"},
                                                   {TransType::kMsg, "msg"},
                                                   {TransType::kWorkflow, "workflow"},
                                                   {TransType::kNotify, "notify"}};
  for (const auto& [t, name] : all) {
    EXPECT_EQ(ToString(t), name);
    EXPECT_EQ(ParseTransType(name), t);
  }
  EXPECT_FALSE(ParseTransType("").has_value());
  EXPECT_FALSE(ParseTransType("sagas").has_value());
  EXPECT_FALSE(ParseTransType("notification").has_value());
}

TEST(ModelTest, GlobalStatusNamesRoundTrip) {
  const std::pair<GlobalStatus, const char*> all[] = {{GlobalStatus::kPrepared, "prepared"},
                                                      {GlobalStatus::kSubmitted, "submitted"},
                                                      {GlobalStatus::kAborting, "aborting"},
                                                      {GlobalStatus::kSucceed, "succeed"},
                                                      {GlobalStatus::kFailed, "failed"}};
  for (const auto& [s, name] : all) {
    EXPECT_EQ(ToString(s), name);
    EXPECT_EQ(ParseGlobalStatus(name), s);
  }
  EXPECT_FALSE(ParseGlobalStatus("").has_value());
  EXPECT_FALSE(ParseGlobalStatus("success").has_value());
}

TEST(ModelTest, BranchStatusNamesRoundTrip) {
  const std::pair<BranchStatus, const char*> all[] = {{BranchStatus::kPrepared, "prepared"},
                                                      {BranchStatus::kSucceed, "succeed"},
                                                      {BranchStatus::kFailed, "failed"}};
  for (const auto& [s, name] : all) {
    EXPECT_EQ(ToString(s), name);
    EXPECT_EQ(ParseBranchStatus(name), s);
  }
  EXPECT_FALSE(ParseBranchStatus("submitted").has_value()) << "not a branch status";
  EXPECT_FALSE(ParseBranchStatus("").has_value());
}

TEST(ModelTest, OnlySucceedAndFailedAreFinal) {
  EXPECT_FALSE(IsFinal(GlobalStatus::kPrepared));
  EXPECT_FALSE(IsFinal(GlobalStatus::kSubmitted));
  EXPECT_FALSE(IsFinal(GlobalStatus::kAborting));
  EXPECT_TRUE(IsFinal(GlobalStatus::kSucceed));
  EXPECT_TRUE(IsFinal(GlobalStatus::kFailed));
}

// §2.4: the options string of a transaction created with no options.
TEST(OptionsJsonTest, DefaultsEncodeLikeDtm) {
  EXPECT_EQ(EncodeOptionsJson(TransOptions{}), R"({"concurrent":false})");
}

TransOptions FullOptions() {
  TransOptions o;
  o.wait_result = true;
  o.timeout_to_fail_s = 60;
  o.request_timeout_s = 6;
  o.retry_interval_s = 150;
  o.branch_headers = {{"Authorization", "Bearer t0k3n"}, {"x-tenant", "acme"}, {"a", ""}};
  o.concurrent = true;
  o.retry_limit = 3;
  o.retry_count = 1;
  return o;
}

TEST(OptionsJsonTest, EncodesDtmKeyNames) {
  json::value v = json::parse(EncodeOptionsJson(FullOptions()));
  ASSERT_TRUE(v.is_object());
  const json::object& o = v.get_object();
  EXPECT_EQ(o.size(), 8u);
  EXPECT_EQ(o.at("wait_result"), json::value(true));
  EXPECT_EQ(o.at("timeout_to_fail"), json::value(60));
  EXPECT_EQ(o.at("request_timeout"), json::value(6));
  EXPECT_EQ(o.at("retry_interval"), json::value(150));
  EXPECT_EQ(o.at("concurrent"), json::value(true));
  EXPECT_EQ(o.at("retry_limit"), json::value(3));
  EXPECT_EQ(o.at("retry_count"), json::value(1));
  const json::object& h = o.at("branch_headers").as_object();
  EXPECT_EQ(h.size(), 3u);
  EXPECT_EQ(h.at("Authorization"), json::value("Bearer t0k3n"));
  EXPECT_EQ(h.at("x-tenant"), json::value("acme"));
  EXPECT_EQ(h.at("a"), json::value(""));
}

TEST(OptionsJsonTest, RoundTrips) {
  TransOptions only_headers;
  only_headers.branch_headers = {{"k", "v \"quoted\" \\ ü"}};
  TransOptions negative;
  negative.retry_interval_s = -1;
  for (const TransOptions& o : {TransOptions{}, FullOptions(), only_headers, negative}) {
    std::string text = EncodeOptionsJson(o);
    SCOPED_TRACE(text);
    auto back = DecodeOptionsJson(text);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, o);
    EXPECT_EQ(EncodeOptionsJson(*back), text);
  }
}

TEST(OptionsJsonTest, DecodesWhatDtmStores) {
  auto o = DecodeOptionsJson(
      R"({"wait_result":false,"timeout_to_fail":35,"request_timeout":0,"retry_interval":10,)"
      R"("passthrough_headers":[],"branch_headers":{"h":"v"},"concurrent":false,"unknown":{}})");
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_FALSE(o->wait_result);
  EXPECT_EQ(o->timeout_to_fail_s, 35);
  EXPECT_EQ(o->request_timeout_s, 0);
  EXPECT_EQ(o->retry_interval_s, 10);
  EXPECT_EQ(o->branch_headers, (Headers{{"h", "v"}}));
  EXPECT_FALSE(o->concurrent);
  EXPECT_EQ(o->retry_limit, 0);
}

TEST(OptionsJsonTest, EmptyTextIsDefaults) {
  auto o = DecodeOptionsJson("");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(*o, TransOptions{});
  o = DecodeOptionsJson("{}");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(*o, TransOptions{});
}

TEST(OptionsJsonTest, RejectsWhatIsNotAnObject) {
  for (const char* text : {"not json", "[]", "42", R"("s")", R"({"retry_limit":)"}) {
    SCOPED_TRACE(text);
    auto o = DecodeOptionsJson(text);
    ASSERT_FALSE(o.ok());
    EXPECT_EQ(o.status().code(), Code::kInvalidArgument);
  }
}

TEST(ModelTest, TransUpdateDefaultsChangeNothing) {
  TransUpdate u;
  EXPECT_FALSE(u.new_status.has_value());
  EXPECT_FALSE(u.rollback_reason.has_value());
  EXPECT_FALSE(u.custom_data.has_value());
  EXPECT_FALSE(u.options.has_value());
  EXPECT_FALSE(u.next_cron_time_ms.has_value());
  EXPECT_FALSE(u.next_cron_interval_ms.has_value());
  EXPECT_FALSE(u.retry_count.has_value());
  EXPECT_FALSE(u.finish_time_ms.has_value());
  EXPECT_FALSE(u.rollback_time_ms.has_value());
  EXPECT_TRUE(u.branches.empty());
  TransUpdate::BranchUpdate b;
  EXPECT_FALSE(b.status.has_value());
  EXPECT_FALSE(b.attempts.has_value());
  EXPECT_FALSE(b.last_error.has_value());
  EXPECT_FALSE(b.finish_time_ms.has_value());
}

// §2.5: dtx accepts at least DTM's effective limits.
TEST(ModelTest, LimitsAreAtLeastDtms) {
  EXPECT_GE(kMaxGidBytes, 128u);
  EXPECT_GE(kMaxBranchIdBytes, 128u);
  EXPECT_GE(kMaxOpBytes, 45u);
  EXPECT_GE(kMaxUrlBytes, 1024u);
  EXPECT_GE(kMaxCustomDataBytes, 1024u);
  EXPECT_GE(kMaxRollbackReasonBytes, 1024u);
  EXPECT_GE(kMaxBinDataBytes, 64u * 1024u);
}

}  // namespace
}  // namespace dtx::core
