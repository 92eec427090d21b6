// The alert decision and payload of §3.6.
#include "ops/alerts.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <string>

namespace dtx::ops {
namespace {

AlertOptions On() {
  AlertOptions o;
  o.webhook = "http://ops/hook";
  o.retry_limit = 3;
  o.timeout_ms = 1500;
  return o;
}

FailedCall Call(int64_t retry_count) {
  FailedCall c;
  c.gid = "g1";
  c.status = "submitted";
  c.branch = "http://p/a1";
  c.error = "HTTP 500: boom";
  c.retry_count = retry_count;
  return c;
}

TEST(AlertsTest, OffWithoutAWebhook) { EXPECT_FALSE(BuildAlert(AlertOptions{}, Call(10))); }

TEST(AlertsTest, FiresFromTheRetryLimit) {
  EXPECT_FALSE(BuildAlert(On(), Call(2)));
  auto a = BuildAlert(On(), Call(3));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->url, "http://ops/hook");
  EXPECT_EQ(a->timeout_ms, 1500);
  auto v = boost::json::parse(a->body).as_object();
  EXPECT_EQ(v.at("gid").as_string(), "g1");
  EXPECT_EQ(v.at("status").as_string(), "submitted");
  EXPECT_EQ(v.at("branch").as_string(), "http://p/a1");
  EXPECT_EQ(v.at("error").as_string(), "HTTP 500: boom");
  EXPECT_EQ(v.at("retry_count").as_int64(), 3);
  EXPECT_EQ(v.at("kind").as_string(), "branch_error");
}

TEST(AlertsTest, CheckBackKindsAndIndeterminateFiresAtOnce) {
  FailedCall c = Call(0);
  c.check_back = true;
  EXPECT_FALSE(BuildAlert(On(), c));
  c.retry_count = 5;
  auto a = BuildAlert(On(), c);
  ASSERT_TRUE(a);
  EXPECT_EQ(boost::json::parse(a->body).at("kind").as_string(), "check_back_error");
  c.retry_count = 0;
  c.indeterminate = true;
  a = BuildAlert(On(), c);
  ASSERT_TRUE(a);
  EXPECT_EQ(boost::json::parse(a->body).at("kind").as_string(), "indeterminate_check_back");
}

TEST(AlertsTest, ErrorIsCappedAt1KiB) {
  FailedCall c = Call(3);
  c.error = std::string(5000, 'x');
  auto a = BuildAlert(On(), c);
  ASSERT_TRUE(a);
  EXPECT_EQ(boost::json::parse(a->body).at("error").as_string().size(), 1024u);
}

}  // namespace
}  // namespace dtx::ops
