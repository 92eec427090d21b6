// TokenSet: parsing of --admin-token / DTX_ADMIN_TOKEN / token files, and bearer authentication.
#include "ops/auth.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

namespace dtx::ops {
namespace {

constexpr const char* kTok = "0123456789abcdef-secret";

TEST(AuthTest, AuthenticatesByNameAndRefusesOthers) {
  TokenSet t;
  ASSERT_TRUE(t.Add(std::string("alice=") + kTok).ok());
  ASSERT_TRUE(t.Add("bob=bbbbbbbbbbbbbbbbbbbb").ok());
  EXPECT_EQ(t.Authenticate(std::string("Bearer ") + kTok), "alice");
  EXPECT_EQ(t.Authenticate("bearer bbbbbbbbbbbbbbbbbbbb"), "bob");
  EXPECT_FALSE(t.Authenticate(std::string("Bearer ") + kTok + "x"));
  EXPECT_FALSE(t.Authenticate("Bearer 0123456789abcdef-secreT"));
  EXPECT_FALSE(t.Authenticate(kTok)) << "no scheme";
  EXPECT_FALSE(t.Authenticate(std::string("Basic ") + kTok));
  EXPECT_FALSE(t.Authenticate(""));
  EXPECT_FALSE(t.Authenticate("Bearer "));
}

TEST(AuthTest, RefusesMalformedWeakAndDuplicateTokens) {
  TokenSet t;
  EXPECT_FALSE(t.Add("no-equals-sign").ok());
  EXPECT_FALSE(t.Add("=0123456789abcdef").ok()) << "empty name";
  EXPECT_FALSE(t.Add("al ice=0123456789abcdef").ok()) << "bad name";
  EXPECT_FALSE(t.Add("alice=short").ok()) << "under 16 bytes";
  EXPECT_FALSE(t.Add("alice=0123456789 abcdef").ok()) << "space inside";
  EXPECT_FALSE(t.Add("alice=" + std::string(257, 'x')).ok());
  ASSERT_TRUE(t.Add(std::string("alice=") + kTok).ok());
  EXPECT_FALSE(t.Add("alice=another-token-of-length").ok()) << "name given twice";
  Status s = t.Add("carol=short");
  EXPECT_EQ(s.message().find("short"), std::string::npos) << "the token is never in a message";
}

TEST(AuthTest, ListAndFile) {
  TokenSet t;
  ASSERT_TRUE(t.AddList("a=aaaaaaaaaaaaaaaaaaaa, b=bbbbbbbbbbbbbbbbbbbb").ok());
  EXPECT_EQ(t.size(), 2u);
  const std::string path = ::testing::TempDir() + "/dtx-tokens";
  {
    std::ofstream f(path);
    f << "# operators\n\nc=cccccccccccccccccccc\n";
  }
  ASSERT_TRUE(t.AddFile(path).ok());
  EXPECT_EQ(t.Authenticate("Bearer cccccccccccccccccccc"), "c");
  Status missing = t.AddFile(path + ".missing");
  EXPECT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("No such file"), std::string::npos) << missing.message();
  std::remove(path.c_str());
}

TEST(AuthTest, ConstantTimeEquals) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
  EXPECT_FALSE(ConstantTimeEquals("", "a"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

}  // namespace
}  // namespace dtx::ops
