// Unit tests of the receiver side of include/dtx/notify.h: SignWebhook against the Standard
// Webhooks reference vector, VerifyWebhook's refusals (wrong secret, tampered body, stale and
// future timestamps, missing headers, replay) and the bound of WebhookReplayGuard; and the
// sender's request body.
#include "dtx/notify.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace dtx {
namespace {

// The example of the Standard Webhooks specification (standard-webhooks/standard-webhooks,
// libraries' test suites): this secret, id, timestamp and payload sign to this signature.
constexpr const char* kSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
constexpr const char* kId = "msg_p5jXN8AQM9LWM0D4loKWxJek";
constexpr int64_t kTs = 1614265330;
constexpr const char* kPayload = R"({"test": 2432232314})";
constexpr const char* kSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

using Headers = std::vector<std::pair<std::string, std::string>>;

Headers Signed(const std::string& sig, int64_t ts = kTs, const std::string& id = kId) {
  return {
      {"Webhook-Id", id}, {"webhook-timestamp", std::to_string(ts)}, {"webhook-signature", sig}};
}

TEST(WebhookTest, SignMatchesTheStandardWebhooksReferenceVector) {
  auto sig = SignWebhook(kSecret, kId, kTs, kPayload);
  ASSERT_TRUE(sig.has_value());
  EXPECT_EQ(*sig, kSignature);
  EXPECT_FALSE(SignWebhook("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", kId, kTs, kPayload).has_value());
  EXPECT_FALSE(SignWebhook("whsec_not*base64", kId, kTs, kPayload).has_value());
}

TEST(WebhookTest, VerifyAcceptsAGoodDeliveryAndAnyOfSeveralSignatures) {
  EXPECT_TRUE(VerifyWebhook(kSecret, Signed(kSignature), kPayload, std::chrono::minutes(5), nullptr,
                            kTs + 10)
                  .ok());
  // Key rotation: several space-separated signatures, one of them valid.
  EXPECT_TRUE(VerifyWebhook(kSecret, Signed(std::string("v1,AAAA ") + kSignature), kPayload,
                            std::chrono::minutes(5), nullptr, kTs)
                  .ok());
}

TEST(WebhookTest, VerifyRejectsWrongSecretTamperedBodyAndOtherId) {
  const std::string other = "whsec_" + std::string("YW5vdGhlciBrZXkgb2YgMjQgYnl0ZXMh");
  Status s =
      VerifyWebhook(other, Signed(kSignature), kPayload, std::chrono::minutes(5), nullptr, kTs);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  s = VerifyWebhook(kSecret, Signed(kSignature), R"({"test": 2432232315})", std::chrono::minutes(5),
                    nullptr, kTs);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  s = VerifyWebhook(kSecret, Signed(kSignature, kTs, "msg_other"), kPayload,
                    std::chrono::minutes(5), nullptr, kTs);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  s = VerifyWebhook("not-a-secret", Signed(kSignature), kPayload, std::chrono::minutes(5), nullptr,
                    kTs);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
}

TEST(WebhookTest, VerifyRejectsStaleAndFutureTimestampsAndMissingHeaders) {
  EXPECT_EQ(VerifyWebhook(kSecret, Signed(kSignature), kPayload, std::chrono::minutes(5), nullptr,
                          kTs + 301)
                .code(),
            Code::kInvalidArgument);
  EXPECT_EQ(VerifyWebhook(kSecret, Signed(kSignature), kPayload, std::chrono::minutes(5), nullptr,
                          kTs - 301)
                .code(),
            Code::kInvalidArgument);
  EXPECT_TRUE(VerifyWebhook(kSecret, Signed(kSignature), kPayload, std::chrono::minutes(5), nullptr,
                            kTs + 300)
                  .ok());
  Headers h = Signed(kSignature);
  h.pop_back();
  EXPECT_EQ(VerifyWebhook(kSecret, h, kPayload, std::chrono::minutes(5), nullptr, kTs).code(),
            Code::kInvalidArgument);
  EXPECT_EQ(VerifyWebhook(kSecret, Signed(kSignature, kTs, ""), kPayload, std::chrono::minutes(5),
                          nullptr, kTs)
                .code(),
            Code::kInvalidArgument);
}

TEST(WebhookTest, ReplayWithinTheToleranceIsRejected) {
  WebhookReplayGuard seen;
  EXPECT_TRUE(
      VerifyWebhook(kSecret, Signed(kSignature), kPayload, std::chrono::minutes(5), &seen, kTs)
          .ok());
  Status again =
      VerifyWebhook(kSecret, Signed(kSignature), kPayload, std::chrono::minutes(5), &seen, kTs + 1);
  EXPECT_EQ(again.code(), Code::kAlreadyExists);
  // A bad delivery is not remembered (it would block the good one).
  WebhookReplayGuard fresh;
  EXPECT_FALSE(
      VerifyWebhook(kSecret, Signed("v1,AAAA"), kPayload, std::chrono::minutes(5), &fresh, kTs)
          .ok());
  EXPECT_EQ(fresh.size(), 0u);
}

TEST(WebhookTest, ReplayGuardIsBoundedAndForgetsOldIds) {
  WebhookReplayGuard seen(3);
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(seen.SeenBefore("id" + std::to_string(i), 1000, 300));
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_TRUE(seen.SeenBefore("id9", 1000, 300));
  EXPECT_FALSE(seen.SeenBefore("id0", 1000, 300));  // dropped at the bound
  // Older than twice the tolerance: forgotten.
  WebhookReplayGuard timed;
  EXPECT_FALSE(timed.SeenBefore("x", 1000, 300));
  EXPECT_TRUE(timed.SeenBefore("x", 1500, 300));
  EXPECT_FALSE(timed.SeenBefore("x", 1000 + 601, 300));
}

TEST(NotificationTest, BuildBodyHasEveryOptionSet) {
  Client client("http://127.0.0.1:1/api/dtmsvr");
  Notification n(client, "pay-1", "http://merchant/notify");
  n.SetPayload("p")
      .SetHeader("X-A", "1")
      .SetSchedule(std::vector<double>{0, 0.5})
      .SuccessOnJson("code", "SUCCESS");
  n.SetTimeout(2.5).SetSecret(kSecret).SetTimeoutToFail(7);
  auto body = boost::json::parse(n.BuildBody(true, "http://gw/query"));
  EXPECT_EQ(body, boost::json::parse(
                      R"({"id":"pay-1","url":"http://merchant/notify","payload":"p",
                          "headers":{"X-A":"1"},"schedule":[0.0,0.5],
                          "success":{"json":"code","equals":"SUCCESS"},"timeout":2.5,
                          "secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                          "query_prepared":"http://gw/query","timeout_to_fail":7})"));
  n.SetSchedule("alipay").SuccessOnBody("success");
  body = boost::json::parse(n.BuildBody(false));
  EXPECT_EQ(body.at("schedule"), "alipay");
  EXPECT_EQ(body.at("success").at("body"), "success");
  EXPECT_FALSE(body.as_object().contains("query_prepared"));
  // Nothing listens on port 1: a clear error, not a crash.
  EXPECT_EQ(n.Send().code(), Code::kUnavailable);
  Notification bad(client, "", "http://x/");
  EXPECT_EQ(bad.Send().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace dtx
