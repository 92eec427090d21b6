#include "util/status.h"

#include <gtest/gtest.h>

namespace dtx {
namespace {

TEST(StatusTest, OkAndErrors) {
  EXPECT_TRUE(Status::Ok().ok());
  Status s = Status::Conflict("no");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kConflict);
  EXPECT_EQ(s.ToString(), "CONFLICT: no");
  EXPECT_FALSE(s.retryable());
  EXPECT_TRUE(Status::Unavailable("x").retryable());
}

TEST(StatusTest, ErrorInfoTravelsWithCopies) {
  Status plain = Status::Conflict("no");
  EXPECT_EQ(plain.info(), nullptr);
  EXPECT_EQ(plain.reason(), "");
  Status s = Status::Conflict("refused").WithInfo({"WRONG_STATUS", {{"op", "submit"}}});
  Status copy = s;
  EXPECT_EQ(copy.code(), Code::kConflict);
  EXPECT_EQ(copy.message(), "refused");
  EXPECT_EQ(copy.reason(), "WRONG_STATUS");
  ASSERT_NE(copy.info(), nullptr);
  EXPECT_EQ(copy.info()->Fact("op"), "submit");
  EXPECT_EQ(copy.info()->Fact("status"), "");
}

TEST(ResultTest, ValueOrStatus) {
  Result<int> r = 5;
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 5);
  Result<int> e = Status::NotFound("gid");
  EXPECT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace dtx
