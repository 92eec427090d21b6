#include "util/utf8.h"

#include <gtest/gtest.h>

namespace dtx {
namespace {

TEST(Utf8, ValidText) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));  // é € 😀
  EXPECT_TRUE(IsValidUtf8("\xED\x9F\xBF"));                               // U+D7FF
  EXPECT_TRUE(IsValidUtf8("\xF4\x8F\xBF\xBF"));                           // U+10FFFF
}

TEST(Utf8, TheFuzzedInputsOfIssue15AndOtherIllFormedSequences) {
  EXPECT_EQ(FirstInvalidUtf8("a\xFF"), 1u);             // %ff
  EXPECT_EQ(FirstInvalidUtf8("\xED\xA0\x80"), 0u);      // %ED%A0%80: surrogate U+D800
  EXPECT_EQ(FirstInvalidUtf8("x\xC0\xAF"), 1u);         // %C0%AF: overlong '/'
  EXPECT_EQ(FirstInvalidUtf8("\xE0\x80\xAF"), 0u);      // overlong 3-byte
  EXPECT_EQ(FirstInvalidUtf8("\xF4\x90\x80\x80"), 0u);  // above U+10FFFF
  EXPECT_EQ(FirstInvalidUtf8("ok\xC3"), 2u);            // truncated
  EXPECT_EQ(FirstInvalidUtf8("\x80"), 0u);              // lone continuation
}

TEST(Utf8, RepairReplacesEachBadByte) {
  EXPECT_EQ(RepairUtf8("a\xFF"
                       "b"),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(RepairUtf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(RepairUtf8("caf\xC3\xA9"), "caf\xC3\xA9");
}

}  // namespace
}  // namespace dtx
