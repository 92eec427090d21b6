// Unit tests of util/base64.h and util/webhook.h: RFC 4648 vectors both ways, refusals of what is
// not padded standard base64, and the Standard Webhooks reference vector.
#include "util/base64.h"

#include <gtest/gtest.h>

#include <string>

#include "util/webhook.h"

namespace dtx::util {
namespace {

TEST(Base64Test, Rfc4648VectorsBothWays) {
  const std::pair<std::string, std::string> vectors[] = {
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
      {R"({"amount":30})", "eyJhbW91bnQiOjMwfQ=="},
      {std::string("\xfb\xff\xbf", 3), "+/+/"},
      {std::string("\0\x01\x02", 3), "AAEC"}};
  EXPECT_EQ(Base64Encode(""), "");
  for (const auto& [bytes, text] : vectors) {
    EXPECT_EQ(Base64Encode(bytes), text);
    std::optional<std::string> back = Base64Decode(text);
    ASSERT_TRUE(back.has_value()) << text;
    EXPECT_EQ(*back, bytes) << text;
  }
}

TEST(Base64Test, DecodeRefusesWhatIsNotPaddedStandardBase64) {
  for (const char* bad : {"", "Zg", "Zg=", "Zm9vY", "Z===", "====", "Zg=a",
                          "Z=g=", "Zm9v=g==", "Zm-v", "Zm_v", "Zm9v\n", "not*base64"}) {
    EXPECT_FALSE(Base64Decode(bad).has_value()) << bad;
  }
}

// The example of the Standard Webhooks specification: this secret, id, timestamp and payload
// sign to this signature.
TEST(WebhookSignatureTest, MatchesTheStandardWebhooksReferenceVector) {
  const char* secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  std::optional<std::string> sig = WebhookSignature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek",
                                                    1614265330, R"({"test": 2432232314})");
  ASSERT_TRUE(sig.has_value());
  EXPECT_EQ(*sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
  // Another timestamp, another signature.
  EXPECT_NE(WebhookSignature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331,
                             R"({"test": 2432232314})"),
            sig);
}

TEST(WebhookSignatureTest, RefusesASecretThatIsNotWhsecBase64) {
  EXPECT_FALSE(WebhookSecretKey("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").has_value());
  EXPECT_FALSE(WebhookSecretKey("whsec_").has_value());
  EXPECT_FALSE(WebhookSecretKey("whsec_not*base64").has_value());
  EXPECT_EQ(WebhookSecretKey("whsec_Zm9v"), std::optional<std::string>("foo"));
  EXPECT_FALSE(WebhookSignature("whsec_not*base64", "id", 1, "body").has_value());
}

}  // namespace
}  // namespace dtx::util
