// The one rule for custom_data and body keys (core/json_keys.h): Go's encoding/json, as DTM reads
// them with json.Unmarshal.
#include "core/json_keys.h"

#include <gtest/gtest.h>

#include <array>
#include <boost/json.hpp>

#include "core/machine.h"

namespace dtx::core {
namespace {

namespace json = boost::json;

json::object Obj(const char* text) { return json::parse(text).as_object(); }

TEST(GoFoldEquals, AsciiCaseAndTheTwoRunesThatFoldToAscii) {
  EXPECT_TRUE(GoFoldEquals("delay", "delay"));
  EXPECT_TRUE(GoFoldEquals("DeLaY", "delay"));
  EXPECT_TRUE(GoFoldEquals("BUSINESS_KEYS", "business_keys"));
  EXPECT_TRUE(
      GoFoldEquals("\xC5\xBF"  // U+017F long s
                   "tatus",
                   "status"));
  EXPECT_TRUE(
      GoFoldEquals("\xE2\x84\xAA"  // U+212A Kelvin sign
                   "ey",
                   "key"));
  EXPECT_FALSE(GoFoldEquals("delays", "delay"));
  EXPECT_FALSE(GoFoldEquals("dela", "delay"));
  EXPECT_FALSE(GoFoldEquals("d\xC3\xA9lay", "delay"));
  EXPECT_FALSE(GoFoldEquals("business-keys", "business_keys"));
}

TEST(MatchGoKey, ExactBeforeFolded) {
  constexpr std::array<std::string_view, 2> names = {"a", "b"};
  EXPECT_EQ(MatchGoKey("a", names), 0);
  EXPECT_EQ(MatchGoKey("B", names), 1);
  EXPECT_EQ(MatchGoKey("c", names), -1);
}

TEST(GoField, TheLastNonNullKeyWinsWhetherExactOrFolded) {
  // The issue's example: DTM reads {"Delay":5,"delay":0} as delay 0.
  EXPECT_EQ(GoField(Obj(R"({"Delay":5,"delay":0})"), "delay")->as_int64(), 0);
  EXPECT_EQ(GoField(Obj(R"({"delay":0,"Delay":5})"), "delay")->as_int64(), 5);
  EXPECT_EQ(GoField(Obj(R"({"delay":5,"DELAY":null})"), "delay")->as_int64(), 5);
  EXPECT_EQ(GoField(Obj(R"({"delay":null})"), "delay"), nullptr);
  EXPECT_EQ(GoField(Obj(R"({"other":1})"), "delay"), nullptr);
}

TEST(ForEachGoField, DocumentOrderSkippingNull) {
  std::vector<int64_t> seen;
  ForEachGoField(Obj(R"({"X":1,"x":null,"y":7,"x":3})"), "x",
                 [&](const json::value& v) { seen.push_back(v.as_int64()); });
  // Boost.JSON keeps the last value of an exactly repeated key, at the first key's position.
  EXPECT_EQ(seen, (std::vector<int64_t>{1, 3}));
}

TEST(ParseMsgDelayS, DtmRule) {
  EXPECT_EQ(*ParseMsgDelayS(""), 0);
  EXPECT_EQ(*ParseMsgDelayS("null"), 0);
  EXPECT_EQ(*ParseMsgDelayS(R"({"delay":10})"), 10);
  EXPECT_EQ(*ParseMsgDelayS(R"({"Delay":5,"delay":0})"), 0);
  EXPECT_EQ(*ParseMsgDelayS(R"({"delay":0,"DELAY":5})"), 5);
  EXPECT_EQ(*ParseMsgDelayS(R"({"delay":5,"Delay":null})"), 5);
  EXPECT_EQ(*ParseMsgDelayS(R"({"DeLaY":7,"other":"x"})"), 7);
  EXPECT_EQ(*ParseMsgDelayS(R"({"delay":18446744073709551615})"), int64_t{100} * 365 * 24 * 3600);
  // Every key that selects the field is decoded, so each must have the right type (Go fails the
  // whole Unmarshal on the first one that does not).
  for (const char* bad :
       {R"({"delay":-1})", R"({"delay":1.5})", R"({"delay":"3"})", R"({"delay":"x","Delay":3})",
        R"({"Delay":3,"delay":true})", "[]", "{", "3"}) {
    EXPECT_FALSE(ParseMsgDelayS(bad).ok()) << bad;
  }
}

TEST(ParseSagaLayout, ConcurrentAndOrdersByTheSameRule) {
  auto l = ParseSagaLayout(R"({"Concurrent":false,"concurrent":true})", 2);
  ASSERT_TRUE(l.ok());
  EXPECT_TRUE(l->concurrent);
  l = ParseSagaLayout(R"({"concurrent":true,"CONCURRENT":false})", 2);
  ASSERT_TRUE(l.ok());
  EXPECT_FALSE(l->concurrent);
  l = ParseSagaLayout(R"({"concurrent":true,"Concurrent":null})", 2);
  ASSERT_TRUE(l.ok());
  EXPECT_TRUE(l->concurrent);
  EXPECT_FALSE(ParseSagaLayout(R"({"concurrent":"yes","Concurrent":true})", 2).ok());
  // Repeated orders objects merge, as Go's decoder fills one map: step 2 keeps [0] from the first,
  // step 1 takes [0] from the second.
  l = ParseSagaLayout(R"({"concurrent":true,"orders":{"2":[0]},"Orders":{"1":[0]}})", 3);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->predecessors[2], (std::vector<size_t>{0}));
  EXPECT_EQ(l->predecessors[1], (std::vector<size_t>{0}));
  EXPECT_FALSE(ParseSagaLayout(R"({"concurrent":true,"orders":{"0":[1]},"ORDERS":{"1":[0]}})", 2)
                   .ok());  // the merged orders form a cycle
}

}  // namespace
}  // namespace dtx::core
