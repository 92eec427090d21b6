// Saga definitions (api/saga_defs.h): validation names the problem; submit-by-name builds the
// request a plain submit would carry.
#include "api/saga_defs.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

namespace dtx::api {
namespace {

namespace json = boost::json;

constexpr const char* kOrder = R"({
  "services": {"pay": "http://127.0.0.1:8081/api", "stock": "http://127.0.0.1:8082"},
  "steps": [{"name": "charge", "action": "{pay}/charge", "compensate": "{pay}/refund"},
            {"name": "reserve", "action": "{stock}/reserve", "compensate": "{stock}/release"},
            {"name": "ship", "action": "http://127.0.0.1:8083/ship"}],
  "orders": {"ship": ["charge", "reserve"]},
  "options": {"timeout_to_fail": 60, "retry_interval": 5, "retry_limit": 3, "request_timeout": 2}
})";

void ExpectBad(const std::string& def, const std::string& needle) {
  auto r = ParseSagaDefinition(def, 1000);
  ASSERT_FALSE(r.ok()) << def;
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find(needle), std::string::npos)
      << r.status().message() << " (expected: " << needle << ")";
}

TEST(SagaDefinition, ParsesServicesStepsOrdersAndOptions) {
  auto def = ParseSagaDefinition(kOrder, 1000);
  ASSERT_TRUE(def.ok()) << def.status().ToString();
  ASSERT_EQ(def->steps.size(), 3u);
  EXPECT_EQ(def->steps[0].action, "http://127.0.0.1:8081/api/charge");
  EXPECT_EQ(def->steps[0].compensate, "http://127.0.0.1:8081/api/refund");
  EXPECT_EQ(def->steps[1].action, "http://127.0.0.1:8082/reserve");
  EXPECT_EQ(def->steps[2].compensate, "");
  EXPECT_TRUE(def->concurrent);
  EXPECT_EQ(def->predecessors[2], (std::vector<size_t>{0, 1}));
  EXPECT_TRUE(def->predecessors[0].empty());
  EXPECT_EQ(def->options.timeout_to_fail_s, 60);
  EXPECT_EQ(def->options.retry_limit, 3);
  EXPECT_TRUE(def->has_request_timeout);
}

TEST(SagaDefinition, ValidationNamesTheProblem) {
  ExpectBad(R"({"steps":[]})", "steps is empty");
  ExpectBad(R"({})", "steps must be an array");
  ExpectBad(R"({"steps":[{"name":"a","action":"{pay}/x"}]})",
            "steps[0] (a).action: unknown service 'pay'");
  ExpectBad(R"({"services":{"pay":"http://h"},"steps":[{"name":"a","action":"{pay/x"}]})",
            "a '{' without its '}'");
  ExpectBad(R"({"steps":[{"name":"a","action":"ftp://h/x"}]})", "is not an http:// URL");
  ExpectBad(R"({"steps":[{"name":"a","action":"http://h/a"},{"name":"a","action":"http://h/b"}]})",
            "step name 'a' is used twice");
  ExpectBad(R"({"steps":[{"name":"a b","action":"http://h/a"}]})", "may hold only letters");
  ExpectBad(R"({"steps":[{"name":"a"}]})", "steps[0] (a): action is required");
  ExpectBad(R"({"steps":[{"name":"a","action":"http://h/a","retry":"x"}]})",
            "unknown field 'retry'");
  ExpectBad(R"({"steps":[{"name":"a","action":"http://h/a"}],"orders":{"b":["a"]}})",
            "orders: unknown step 'b'");
  ExpectBad(R"({"steps":[{"name":"a","action":"http://h/a"}],"orders":{"a":["z"]}})",
            "orders.a: unknown step 'z'");
  ExpectBad(R"({"steps":[{"name":"a","action":"http://h/a"}],"orders":{"a":["a"]}})",
            "cannot wait for itself");
  ExpectBad(R"({"steps":[{"name":"a","action":"http://h/a"},{"name":"b","action":"http://h/b"},
               {"name":"c","action":"http://h/c"}],"orders":{"a":["c"],"b":["a"],"c":["b"]}})",
            "orders form a cycle: a -> c -> b -> a");
  ExpectBad(R"({"steps":[{"name":"a","action":"http://h/a"}],"options":{"retry_limit":1001}})",
            "options.retry_limit must be an integer in [0, 1000]");
  ExpectBad(R"({"steps":[{"name":"a","action":"http://h/a"}],"options":{"timeout_to_fail":"9"}})",
            "options.timeout_to_fail must be an integer");
  ExpectBad(R"({"steps":[{"name":"a","action":"http://h/a"}],"options":{"wait":true}})",
            "options: unknown field 'wait'");
  ExpectBad(R"({"steps":[{"name":"a","action":"http://h/a"}],"stepz":[]})",
            "unknown field 'stepz'");
  ExpectBad(R"([1])", "must be a JSON object");
  ExpectBad(R"({"steps":)", "not valid JSON");
  ExpectBad(std::string(kMaxSagaDefinitionBytes + 1, ' '), "over 65536 bytes");
}

TEST(SagaDefinition, SubmitByNameBuildsTheSagaRequest) {
  auto def = ParseSagaDefinition(kOrder, 1000);
  ASSERT_TRUE(def.ok());
  auto r = BuildSubmitByName(*def, "order", 7,
                             R"({"gid":"g-1","payloads":{"ship":"{\"to\":\"x\"}","charge":"c"},
                                 "wait_result":true})",
                             "generated");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->gid, "g-1");
  EXPECT_EQ(r->trans_type, core::TransType::kSaga);
  ASSERT_EQ(r->steps.size(), 3u);
  EXPECT_EQ(r->steps[1].compensate, "http://127.0.0.1:8082/release");
  EXPECT_EQ(*r->payloads, (std::vector<std::string>{"c", "", R"({"to":"x"})"}));
  EXPECT_TRUE(r->options.wait_result);
  EXPECT_EQ(r->options.retry_interval_s, 5);
  EXPECT_TRUE(r->has_retry_limit);
  EXPECT_EQ(json::parse(r->custom_data), json::parse(R"({"concurrent":true,"orders":{"2":[0,1]},
                            "saga":{"name":"order","version":7}})"));
  // input: one object to every step; no gid: the generated one.
  r = BuildSubmitByName(*def, "order", 7, R"({"input":{"account":42}})", "generated");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->gid, "generated");
  EXPECT_EQ(*r->payloads, std::vector<std::string>(3, R"({"account":42})"));
  EXPECT_FALSE(r->options.wait_result);
}

TEST(SagaDefinition, SubmitByNameRefusesBadBodies) {
  auto def = ParseSagaDefinition(kOrder, 1000);
  ASSERT_TRUE(def.ok());
  auto bad = [&](const char* body, Code code, const std::string& needle) {
    auto r = BuildSubmitByName(*def, "order", 1, body, "g");
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_EQ(r.status().code(), code) << body;
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
  };
  bad(R"({"payloads":{"nope":"x"}})", Code::kInvalidArgument, "payloads: unknown step 'nope'");
  bad(R"({"payloads":{"ship":1}})", Code::kInvalidArgument, "payloads.ship must be a string");
  bad(R"({"payloads":{},"input":{}})", Code::kInvalidArgument, "not both");
  bad(R"({"input":[1]})", Code::kInvalidArgument, "input must be a JSON object");
  bad(R"({"gid":"a\nb"})", Code::kInvalidArgument, "control character");
  bad(R"({"steps":[]})", Code::kInvalidArgument, "unknown field 'steps'");
  bad(R"({"business_keys":[]})", Code::kInvalidArgument, "business_keys is empty");
  bad(R"({"business_keys":"k"})", Code::kInvalidArgument, "array of strings");
  bad(R"({"on_busy":"reject"})", Code::kInvalidArgument, "without business_keys");
}

TEST(SagaDefinition, NamesAreChecked) {
  EXPECT_TRUE(ValidateSagaName("order.v2_create-1").ok());
  EXPECT_FALSE(ValidateSagaName("").ok());
  EXPECT_FALSE(ValidateSagaName("a/b").ok());
  EXPECT_FALSE(ValidateSagaName(std::string(65, 'a')).ok());
}

}  // namespace
}  // namespace dtx::api
