#include "api/codec.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <functional>
#include <string>
#include <vector>

namespace dtx::api {
namespace {

namespace json = boost::json;

json::object ParseObject(const std::string& text) {
  json::value v = json::parse(text);  // throws (fails the test) on invalid JSON
  EXPECT_TRUE(v.is_object()) << text;
  return v.is_object() ? v.get_object() : json::object();
}

TransRequest MustDecode(const std::string& body) {
  Result<TransRequest> r = DecodeTransRequest(body);
  EXPECT_TRUE(r.ok()) << body << " -> " << r.status().ToString();
  return r.ok() ? std::move(r).value() : TransRequest{};
}

// Expects a 400 whose message contains `needle`.
void ExpectInvalid(const std::string& body, const std::string& needle) {
  Result<TransRequest> r = DecodeTransRequest(body);
  ASSERT_FALSE(r.ok()) << body;
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << body;
  EXPECT_NE(r.status().message().find(needle), std::string::npos)
      << body << " -> " << r.status().message() << " (expected to contain " << needle << ")";
}

// A body with gid "g" and one more key whose value is the raw JSON `value`.
std::string With(const std::string& key, const std::string& value) {
  return R"({"gid":"g",")" + key + "\":" + value + "}";
}

std::string Str(const json::value& v) {
  EXPECT_TRUE(v.is_string()) << v;
  return v.is_string() ? std::string(v.get_string()) : std::string();
}

std::string Quoted(const std::string& s) { return json::serialize(json::value(s)); }

// --- DecodeTransRequest: shapes SDKs send ------------------------------------------------------

TEST(DecodeTransRequest, GoSdkSagaSubmit) {
  TransRequest r = MustDecode(R"({"gid":"g1","trans_type":"saga","concurrent":false,"protocol":"",
 "steps":[{"action":"http://busi/api/TransOut","compensate":"http://busi/api/TransOutRevert"},
          {"action":"http://busi/api/TransIn","compensate":"http://busi/api/TransInRevert"}],
 "payloads":["{\"amount\":30}","{\"amount\":30}"]})");
  EXPECT_EQ(r.gid, "g1");
  ASSERT_TRUE(r.trans_type);
  EXPECT_EQ(*r.trans_type, core::TransType::kSaga);
  ASSERT_EQ(r.steps.size(), 2u);
  EXPECT_EQ(r.steps[0].action, "http://busi/api/TransOut");
  EXPECT_EQ(r.steps[0].compensate, "http://busi/api/TransOutRevert");
  EXPECT_FALSE(r.steps[0].data);
  EXPECT_EQ(r.steps[1].action, "http://busi/api/TransIn");
  EXPECT_EQ(r.steps[1].compensate, "http://busi/api/TransInRevert");
  ASSERT_TRUE(r.payloads);
  EXPECT_EQ(*r.payloads, (std::vector<std::string>{R"({"amount":30})", R"({"amount":30})"}));
  EXPECT_EQ(r.protocol, "");
  EXPECT_TRUE(r.has_concurrent);
  EXPECT_FALSE(r.options.concurrent);
  EXPECT_FALSE(r.has_wait_result);
  EXPECT_FALSE(r.has_retry_interval);
  EXPECT_TRUE(r.custom_data.empty());
}

TEST(DecodeTransRequest, TccPrepareWithOptions) {
  TransRequest r =
      MustDecode(R"({"gid":"g2","trans_type":"tcc","wait_result":true,"retry_interval":15,
"timeout_to_fail":60,"branch_headers":{"test_header":"test"}})");
  EXPECT_EQ(r.gid, "g2");
  EXPECT_EQ(r.trans_type, core::TransType::kTcc);
  EXPECT_TRUE(r.has_wait_result);
  EXPECT_TRUE(r.options.wait_result);
  EXPECT_TRUE(r.has_retry_interval);
  EXPECT_EQ(r.options.retry_interval_s, 15);
  EXPECT_TRUE(r.has_timeout_to_fail);
  EXPECT_EQ(r.options.timeout_to_fail_s, 60);
  EXPECT_TRUE(r.has_branch_headers);
  EXPECT_EQ(r.options.branch_headers, (core::Headers{{"test_header", "test"}}));
  EXPECT_FALSE(r.has_request_timeout);
  EXPECT_FALSE(r.has_concurrent);
  EXPECT_FALSE(r.has_retry_limit);
  EXPECT_FALSE(r.has_retry_count);
  EXPECT_FALSE(r.payloads);
  EXPECT_TRUE(r.steps.empty());
}

TEST(DecodeTransRequest, AllOptionsAndStringFields) {
  TransRequest r = MustDecode(R"({"gid":"g","trans_type":"msg","request_timeout":3,"retry_limit":2,
"retry_count":1,"concurrent":true,"query_prepared":"http://busi/qp","protocol":"grpc",
"custom_data":"{\"delay\":10}","rollback_reason":"why","req_extra":{"X-Key":"v","b":"c"}})");
  EXPECT_EQ(r.trans_type, core::TransType::kMsg);
  EXPECT_TRUE(r.has_request_timeout);
  EXPECT_EQ(r.options.request_timeout_s, 3);
  EXPECT_TRUE(r.has_retry_limit);
  EXPECT_EQ(r.options.retry_limit, 2);
  EXPECT_TRUE(r.has_retry_count);
  EXPECT_EQ(r.options.retry_count, 1);
  EXPECT_TRUE(r.has_concurrent);
  EXPECT_TRUE(r.options.concurrent);
  EXPECT_EQ(r.query_prepared, "http://busi/qp");
  EXPECT_EQ(r.protocol, "grpc");
  EXPECT_EQ(r.custom_data, R"({"delay":10})");
  EXPECT_EQ(r.rollback_reason, "why");
  // Map keys stay verbatim, in document order.
  EXPECT_EQ(r.req_extra, (core::Headers{{"X-Key", "v"}, {"b", "c"}}));
}

TEST(DecodeTransRequest, EveryTransTypeAndProtocol) {
  for (const char* t : {"saga", "tcc", "xa", "msg", "workflow"}) {
    TransRequest r = MustDecode(With("trans_type", Quoted(t)));
    ASSERT_TRUE(r.trans_type) << t;
    EXPECT_EQ(core::ToString(*r.trans_type), t);
  }
  for (const char* p : {"", "http", "grpc", "json-rpc"}) {
    EXPECT_EQ(MustDecode(With("protocol", Quoted(p))).protocol, p);
  }
  ExpectInvalid(With("protocol", R"("https")"), "unknown protocol 'https'");
}

TEST(DecodeTransRequest, CaseInsensitiveKeys) {
  TransRequest r = MustDecode(R"({"GID":"g","Trans_Type":"saga","WAIT_RESULT":true,
"Retry_Interval":5,"Steps":[{"Action":"a","COMPENSATE":"c","Data":"d"}],"PayLoads":["p"],
"Branch_Headers":{"Test_Header":"t"}})");
  EXPECT_EQ(r.gid, "g");
  EXPECT_EQ(r.trans_type, core::TransType::kSaga);
  EXPECT_TRUE(r.options.wait_result);
  EXPECT_EQ(r.options.retry_interval_s, 5);
  ASSERT_EQ(r.steps.size(), 1u);
  EXPECT_EQ(r.steps[0].action, "a");
  EXPECT_EQ(r.steps[0].compensate, "c");
  EXPECT_EQ(r.steps[0].data, "d");
  EXPECT_EQ(r.payloads, (std::vector<std::string>{"p"}));
  EXPECT_EQ(r.options.branch_headers, (core::Headers{{"Test_Header", "t"}}));  // keys verbatim
}

TEST(DecodeTransRequest, GoUnicodeFolding) {
  // Go folds U+017F (long s) to 's' and U+212A (Kelvin sign) to 'k'; nothing else non-ASCII.
  TransRequest r = MustDecode("{\"gid\":\"g\",\"\xC5\xBFteps\":[{\"action\":\"a\"}]}");
  ASSERT_EQ(r.steps.size(), 1u);
  EXPECT_EQ(r.steps[0].action, "a");
  EXPECT_EQ(MustDecode("{\"gid\":\"g\",\"rollbac\xE2\x84\xAA_reason\":\"r\"}").rollback_reason,
            "r");
  // Other non-ASCII letters do not fold: "\xC3\xA7" (c with cedilla) is not 'c'.
  EXPECT_EQ(
      MustDecode("{\"gid\":\"g\",\"custom_data\":\"x\",\"\xC3\xA7ustom_data\":\"y\"}").custom_data,
      "x");
}

TEST(DecodeTransRequest, NullMeansAbsent) {
  TransRequest r = MustDecode(R"({"gid":"g","trans_type":null,"custom_data":null,"steps":null,
"payloads":null,"wait_result":null,"timeout_to_fail":null,"request_timeout":null,
"retry_interval":null,"branch_headers":null,"concurrent":null,"retry_limit":null,
"retry_count":null,"req_extra":null,
"query_prepared":null,"protocol":null,"rollback_reason":null})");
  EXPECT_EQ(r.gid, "g");
  EXPECT_FALSE(r.trans_type);
  EXPECT_TRUE(r.custom_data.empty());
  EXPECT_TRUE(r.steps.empty());
  EXPECT_FALSE(r.payloads);
  EXPECT_FALSE(r.has_wait_result || r.has_timeout_to_fail || r.has_request_timeout ||
               r.has_retry_interval || r.has_branch_headers || r.has_concurrent ||
               r.has_retry_limit || r.has_retry_count);
  EXPECT_EQ(r.options, core::TransOptions{});
  EXPECT_TRUE(r.req_extra.empty());

  // Inside arrays and maps null reads as the zero value, as in Go.
  r = MustDecode(R"({"gid":"g","steps":[null,{"action":null,"compensate":"c","data":null}],
"payloads":[null,"p"],"branch_headers":{"h":null}})");
  ASSERT_EQ(r.steps.size(), 2u);
  EXPECT_EQ(r.steps[0].action, "");
  EXPECT_FALSE(r.steps[0].data);
  EXPECT_EQ(r.steps[1].action, "");
  EXPECT_EQ(r.steps[1].compensate, "c");
  EXPECT_FALSE(r.steps[1].data);
  EXPECT_EQ(r.payloads, (std::vector<std::string>{"", "p"}));
  EXPECT_EQ(r.options.branch_headers, (core::Headers{{"h", ""}}));
}

TEST(DecodeTransRequest, EmptyTransTypeIsAbsent) {
  EXPECT_FALSE(MustDecode(With("trans_type", R"("")")).trans_type);
}

TEST(DecodeTransRequest, UnknownAndServerOwnedKeysIgnored) {
  TransRequest r = MustDecode(R"({"gid":"g","trans_type":"saga","passthrough_headers":[],
"status":"succeed","options":{"x":1},"id":5,"next_cron_time":"x","ext_data":[1,2],"result":7,
"unknown":{"deep":[{"a":null}]},"steps":[{"action":"a","extra":"ignored"}]})");
  EXPECT_EQ(r.gid, "g");
  ASSERT_EQ(r.steps.size(), 1u);
  EXPECT_EQ(r.steps[0].action, "a");
}

TEST(DecodeTransRequest, DuplicateKeysLastWins) {
  EXPECT_EQ(MustDecode(R"({"gid":"a","gid":"b"})").gid, "b");
  EXPECT_EQ(MustDecode(R"({"gid":"a","GID":"b"})").gid, "b");
  EXPECT_EQ(MustDecode(R"({"GID":"a","gid":"b"})").gid, "b");
  EXPECT_EQ(
      MustDecode(R"({"gid":"g","retry_interval":1,"Retry_Interval":2})").options.retry_interval_s,
      2);
  EXPECT_EQ(MustDecode(R"({"gid":"g","branch_headers":{"h":"1","h":"2"}})").options.branch_headers,
            (core::Headers{{"h", "2"}}));
  TransRequest r = MustDecode(R"({"gid":"g","steps":[{"action":"a","Action":"b"}]})");
  ASSERT_EQ(r.steps.size(), 1u);
  EXPECT_EQ(r.steps[0].action, "b");
  // A repeated option key still counts as present.
  r = MustDecode(R"({"gid":"g","wait_result":true,"wait_result":false})");
  EXPECT_TRUE(r.has_wait_result);
  EXPECT_FALSE(r.options.wait_result);
}

TEST(DecodeTransRequest, TypeErrors) {
  ExpectInvalid(R"({"gid":1})", R"(json: field "gid" must be a string)");
  ExpectInvalid(With("retry_interval", "1.5"),
                R"(json: field "retry_interval" must be an integer)");
  ExpectInvalid(With("retry_interval", R"("3")"),
                R"(json: field "retry_interval" must be an integer)");
  ExpectInvalid(With("retry_interval", "1.0"), R"(field "retry_interval" must be an integer)");
  ExpectInvalid(With("timeout_to_fail", "1e2"), R"(field "timeout_to_fail" must be an integer)");
  ExpectInvalid(With("request_timeout", "true"), R"(field "request_timeout" must be an integer)");
  ExpectInvalid(With("retry_limit", "[1]"), R"(field "retry_limit" must be an integer)");
  ExpectInvalid(With("retry_count", "{}"), R"(field "retry_count" must be an integer)");
  ExpectInvalid(With("retry_limit", "18446744073709551615"), R"(field "retry_limit")");
  ExpectInvalid(With("retry_limit", "99999999999999999999"), R"(field "retry_limit")");
  ExpectInvalid(With("wait_result", R"("true")"), R"(field "wait_result" must be a boolean)");
  ExpectInvalid(With("concurrent", "1"), R"(field "concurrent" must be a boolean)");
  ExpectInvalid(With("trans_type", "1"), R"(field "trans_type" must be a string)");
  ExpectInvalid(With("custom_data", R"({"concurrent":true})"), R"(field "custom_data" must be)");
  ExpectInvalid(With("query_prepared", "[]"), R"(field "query_prepared" must be a string)");
  ExpectInvalid(With("protocol", "false"), R"(field "protocol" must be a string)");
  ExpectInvalid(With("rollback_reason", "2"), R"(field "rollback_reason" must be a string)");
  ExpectInvalid(With("steps", R"({"action":"a"})"), R"(field "steps" must be an array)");
  ExpectInvalid(With("steps", R"("a")"), R"(field "steps" must be an array)");
  ExpectInvalid(With("steps", R"([1])"), R"(field "steps[0]" must be an object)");
  ExpectInvalid(With("steps", R"([{"action":"a"},{"action":1}])"),
                R"(field "steps[1].action" must be a string)");
  ExpectInvalid(With("steps", R"([{"action":"a","other":{}}])"),
                R"(field "steps[0].other" must be a string)");
  ExpectInvalid(With("payloads", R"(["a",1])"), R"(field "payloads[1]" must be a string)");
  ExpectInvalid(With("payloads", R"("a")"), R"(field "payloads" must be an array)");
  ExpectInvalid(With("branch_headers", R"({"h":1})"),
                R"(json: branch_headers: key "h" must have a string value)");
  ExpectInvalid(With("branch_headers", R"({"h":{}})"), R"(branch_headers: key "h")");
  ExpectInvalid(With("branch_headers", R"(["h"])"), R"(field "branch_headers" must be an object)");
  ExpectInvalid(With("req_extra", R"({"k":true})"),
                R"(req_extra: key "k" must have a string value)");
}

TEST(DecodeTransRequest, NegativeValues) {
  for (const char* key :
       {"timeout_to_fail", "request_timeout", "retry_interval", "retry_limit", "retry_count"}) {
    ExpectInvalid(With(key, "-1"), std::string("field \"") + key + "\" must be a non-negative");
    EXPECT_TRUE(DecodeTransRequest(With(key, "0")).ok()) << key;
    EXPECT_TRUE(DecodeTransRequest(With(key, "-0")).ok()) << key;
  }
}

TEST(DecodeTransRequest, DurationBound) {
  for (const char* key : {"timeout_to_fail", "request_timeout", "retry_interval"}) {
    EXPECT_TRUE(DecodeTransRequest(With(key, std::to_string(kMaxDurationS))).ok()) << key;
    ExpectInvalid(With(key, std::to_string(kMaxDurationS + 1)), key);
  }
  EXPECT_EQ(MustDecode(With("retry_limit", "9223372036854775807")).options.retry_limit, INT64_MAX);
}

TEST(DecodeTransRequest, MalformedJson) {
  for (const char* body :
       {"", " ", "{", R"({"gid":"a",})", R"({'gid':'a'})", R"({"gid":"a"} x)", R"({"gid":"a"}{})",
        "{\"gid\":\"a\" /* c */}", "{\"gid\":\"\xFF\"}", R"({"gid":"a\x"})", R"({"gid":01})",
        R"({"gid":NaN})", "{\"gid\":\"a\nb\"}"}) {
    ExpectInvalid(body, "malformed JSON");
  }
  // The parser's own words and where it stopped.
  Result<TransRequest> r = DecodeTransRequest(R"({"gid":tru})");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("near byte 7"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("syntax error"), std::string::npos) << r.status().message();
}

TEST(DecodeTransRequest, NotAnObject) {
  for (const char* body : {"null", "[]", R"("gid")", "1", "true"}) {
    ExpectInvalid(body, "must be a JSON object");
  }
}

TEST(DecodeTransRequest, Gid) {
  ExpectInvalid("{}", "gid is required");
  ExpectInvalid(R"({"gid":""})", "gid is required");
  ExpectInvalid(R"({"gid":null})", "gid is required");
  // Verbatim (issue 15): DTM strips ';', CR and LF; dtx keeps ';' and refuses control characters.
  EXPECT_EQ(MustDecode(R"({"gid":"a;b;"})").gid, "a;b;");
  EXPECT_EQ(MustDecode(R"({"gid":" g\u00e9 "})").gid, " g\xC3\xA9 ");
  ExpectInvalid(R"({"gid":"a;b\r\nc;"})",
                "gid contains a control character (byte 0x0d at offset 3)");
  ExpectInvalid(R"({"gid":"\n"})", "byte 0x0a at offset 0");
  ExpectInvalid(R"({"gid":"a\u0000"})", "byte 0x00 at offset 1");
  ExpectInvalid(R"({"gid":"a\u007f"})", "byte 0x7f at offset 1");
  ExpectInvalid(R"({"gid":"a\tb"})", "byte 0x09 at offset 1");
  EXPECT_EQ(MustDecode(R"({"gid":)" + Quoted(std::string(128, 'g')) + "}").gid,
            std::string(128, 'g'));
  ExpectInvalid(R"({"gid":)" + Quoted(std::string(129, 'g')) + "}",
                "gid is 129 bytes, over the limit of 128");
  ExpectInvalid(R"({"gid":)" + Quoted(std::string(127, 'g') + ";;") + "}",
                "gid is 129 bytes, over the limit of 128");
}

TEST(DecodeTransRequest, BusinessKeysAreNoticedAtTheTopAndInCustomData) {
  EXPECT_FALSE(MustDecode(R"({"gid":"g"})").has_business_keys);
  EXPECT_FALSE(MustDecode(R"({"gid":"g","business_keys":null})").has_business_keys);
  EXPECT_TRUE(MustDecode(R"({"gid":"g","business_keys":["a:1"]})").has_business_keys);
  EXPECT_TRUE(MustDecode(R"({"gid":"g","Business_Keys":["a:1"]})").has_business_keys);
  EXPECT_TRUE(
      MustDecode(R"({"gid":"g","custom_data":"{\"business_keys\":[\"a:1\"]}"})").has_business_keys);
  ExpectInvalid(R"({"gid":"g","custom_data":"{\"BUSINESS_KEYS\":[]}"})", "business_keys is empty");
  EXPECT_FALSE(
      MustDecode(R"({"gid":"g","custom_data":"{\"business_keys\":null}"})").has_business_keys);
  EXPECT_FALSE(MustDecode(R"({"gid":"g","custom_data":"not json"})").has_business_keys);
}

TEST(DecodeTransRequest, BusinessKeysAreStoredNormalizedInCustomData) {
  EXPECT_EQ(
      MustDecode(R"({"gid":"g","business_keys":["b","a","b"],"on_busy":"reject"})").custom_data,
      R"({"business_keys":["a","b"],"on_busy":"reject"})");
  EXPECT_EQ(
      MustDecode(R"({"gid":"g","custom_data":"{\"concurrent\":true,\"Business_Keys\":[\"k\"]}"})")
          .custom_data,
      R"({"concurrent":true,"business_keys":["k"]})");
  EXPECT_EQ(
      MustDecode(R"({"gid":"g","custom_data":"{\"business_keys\":[\"k\"]}","on_busy":"reject"})")
          .custom_data,
      R"({"business_keys":["k"],"on_busy":"reject"})");
  ExpectInvalid(R"({"gid":"g","business_keys":["k"],"custom_data":"[1]"})", "JSON object");
  ExpectInvalid(R"({"gid":"g","on_busy":"reject"})", "without business_keys");
  ExpectInvalid(R"({"gid":"g","business_keys":"k"})", "business_keys");
}

TEST(DecodeTransRequest, UnknownTransType) {
  ExpectInvalid(With("trans_type", R"("foo")"), "unknown trans_type 'foo'");
  ExpectInvalid(With("trans_type", R"("SAGA")"), "unknown trans_type 'SAGA'");
  // A long value is echoed only in part.
  Result<TransRequest> r = DecodeTransRequest(With("trans_type", Quoted(std::string(5000, 'x'))));
  ASSERT_FALSE(r.ok());
  EXPECT_LT(r.status().message().size(), 200u);
}

TEST(DecodeTransRequest, LegacyStepData) {
  TransRequest r = MustDecode(R"({"gid":"g","trans_type":"saga",
"steps":[{"action":"a","compensate":"c","data":"{\"amount\":30}"},{"action":"b","data":""}]})");
  ASSERT_EQ(r.steps.size(), 2u);
  EXPECT_EQ(r.steps[0].data, R"({"amount":30})");
  ASSERT_TRUE(r.steps[1].data);  // present but empty differs from absent
  EXPECT_EQ(*r.steps[1].data, "");
  EXPECT_FALSE(r.payloads);
  EXPECT_EQ(MustDecode(With("payloads", "[]")).payloads, std::vector<std::string>{});
}

// Field at its limit is accepted; one byte more is a 400 naming the field and the limit.
void ExpectLimit(const std::string& field, size_t limit,
                 const std::function<std::string(const std::string&)>& body_with) {
  SCOPED_TRACE(field);
  Result<TransRequest> ok = DecodeTransRequest(body_with(std::string(limit, 'x')));
  EXPECT_TRUE(ok.ok()) << ok.status().ToString();
  Result<TransRequest> over = DecodeTransRequest(body_with(std::string(limit + 1, 'x')));
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(over.status().message(), field + " is " + std::to_string(limit + 1) +
                                         " bytes, over the limit of " + std::to_string(limit) +
                                         " bytes");
}

TEST(DecodeTransRequest, FieldLimits) {
  ExpectLimit("query_prepared", core::kMaxUrlBytes,
              [](const std::string& v) { return With("query_prepared", Quoted(v)); });
  ExpectLimit("custom_data", core::kMaxCustomDataBytes,
              [](const std::string& v) { return With("custom_data", Quoted(v)); });
  ExpectLimit("rollback_reason", core::kMaxRollbackReasonBytes,
              [](const std::string& v) { return With("rollback_reason", Quoted(v)); });
  ExpectLimit("steps[1].action", core::kMaxUrlBytes, [](const std::string& v) {
    return With("steps", R"([{"action":"a"},{"action":)" + Quoted(v) + "}]");
  });
  ExpectLimit("steps[0].compensate", core::kMaxUrlBytes, [](const std::string& v) {
    return With("steps", R"([{"compensate":)" + Quoted(v) + "}]");
  });
  ExpectLimit("steps[0].data", core::kMaxBinDataBytes, [](const std::string& v) {
    return With("steps", R"([{"data":)" + Quoted(v) + "}]");
  });
  ExpectLimit("payloads[1]", core::kMaxBinDataBytes,
              [](const std::string& v) { return With("payloads", R"(["",)" + Quoted(v) + "]"); });
}

std::string Repeat(const std::string& element, size_t n) {
  std::string out = "[";
  for (size_t i = 0; i < n; ++i) {
    out += (i ? "," : "") + element;
  }
  return out + "]";
}

TEST(DecodeTransRequest, CountLimits) {
  TransRequest r = MustDecode(With("steps", Repeat(R"({"action":"a"})", core::kMaxSteps)));
  EXPECT_EQ(r.steps.size(), core::kMaxSteps);
  ExpectInvalid(With("steps", Repeat(R"({"action":"a"})", core::kMaxSteps + 1)),
                "steps has 1001 entries, over the limit of 1000");
  EXPECT_EQ(MustDecode(With("payloads", Repeat(R"("p")", core::kMaxSteps))).payloads->size(),
            core::kMaxSteps);
  ExpectInvalid(With("payloads", Repeat(R"("p")", core::kMaxSteps + 1)),
                "payloads has 1001 entries, over the limit of 1000");
}

TEST(DecodeTransRequest, BranchHeaderValidation) {
  EXPECT_TRUE(DecodeTransRequest(
                  With("branch_headers", R"({"Authorization":"Bearer a.b=","x-a_b!":"v\tw"})"))
                  .ok());
  ExpectInvalid(With("branch_headers", R"({"":"v"})"), R"("" is not a valid header name)");
  ExpectInvalid(With("branch_headers", R"({"a b":"v"})"), "is not a valid header name");
  ExpectInvalid(With("branch_headers", R"({"a:":"v"})"), "is not a valid header name");
  ExpectInvalid(With("branch_headers", R"({"h":"v\r\nX-Evil: 1"})"),
                R"(the value of "h" contains a control character)");
  ExpectInvalid(With("branch_headers", R"({"h":"v\u0000"})"), "control character");
  // Host would redirect the call to another virtual host; hop-by-hop headers belong to the client
  // (issue 13, a security probe).
  ExpectInvalid(With("branch_headers", R"({"Host":"internal-admin"})"), R"("Host" is set by dtx)");
  for (const char* h : {"connection", "Keep-Alive", "Transfer-Encoding", "TE", "Upgrade",
                        "Content-Length", "Proxy-Authorization", "Trailer"}) {
    ExpectInvalid(With("branch_headers", std::string(R"({")") + h + R"(":"x"})"), "set by dtx");
  }
  EXPECT_TRUE(DecodeTransRequest(With("branch_headers", R"({"X-Hostname":"a","Hosts":"b"})")).ok());
}

// --- DecodeStringMap
// -------------------------------------------------------------------------------

TEST(DecodeStringMap, RegisterBranchBodies) {
  auto r = DecodeStringMap(
      R"({"gid":"g2","trans_type":"tcc","branch_id":"01","data":"{\"amount\":30}","confirm":"http://busi/api/TransOutConfirm","cancel":"http://busi/api/TransOutRevert"})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, (core::Headers{{"gid", "g2"},
                               {"trans_type", "tcc"},
                               {"branch_id", "01"},
                               {"data", R"({"amount":30})"},
                               {"confirm", "http://busi/api/TransOutConfirm"},
                               {"cancel", "http://busi/api/TransOutRevert"}}));
  r = DecodeStringMap("{}");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
}

TEST(DecodeStringMap, NullDuplicatesAndVerbatimKeys) {
  auto r = DecodeStringMap(R"({"Gid":"a","status":null,"x":"1","x":"2"})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, (core::Headers{{"Gid", "a"}, {"status", ""}, {"x", "2"}}));
}

TEST(DecodeStringMap, Errors) {
  struct Case {
    const char* body;
    const char* needle;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"gid":"g","branch_id":1})", R"(json: key "branch_id" must have a string value)"},
           {R"({"gid":"g","sync":true})", R"(key "sync" must have a string value)"},
           {R"({"gid":"g","data":{"a":"b"}})", R"(key "data" must have a string value)"},
           {R"({"gid":"g","data":["a"]})", R"(key "data" must have a string value)"},
           {R"({"gid":"g","x":1.5})", R"(key "x" must have a string value)"},
           {"[]", "must be a JSON object"},
           {"null", "must be a JSON object"},
           {R"("s")", "must be a JSON object"},
           {"", "malformed JSON"},
           {R"({"gid":"g",})", "malformed JSON"},
       }) {
    auto r = DecodeStringMap(c.body);
    ASSERT_FALSE(r.ok()) << c.body;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.needle), std::string::npos)
        << c.body << " -> " << r.status().message();
  }
}

// --- Encoders
// --------------------------------------------------------------------------------------

constexpr int64_t kT0 = 1735696800000;  // 2025-01-01T02:00:00.000Z

core::GlobalTrans FullTransaction() {
  core::GlobalTrans t;
  t.id = 7;
  t.gid = "g1";
  t.trans_type = core::TransType::kMsg;
  t.status = core::GlobalStatus::kAborting;
  t.protocol = "http";
  t.query_prepared = "http://busi/qp";
  t.custom_data = R"({"delay":10})";
  t.rollback_reason = "reason \"quoted\"\nline";
  t.result = "res";
  t.owner = "worker-1";
  t.options.concurrent = true;
  t.options.retry_interval_s = 15;
  t.options.branch_headers = {{"h", "v"}};
  t.create_time_ms = kT0;
  t.update_time_ms = kT0 + 1120;
  t.finish_time_ms = kT0 + 2000;
  t.rollback_time_ms = kT0 + 3000;
  t.next_cron_interval_ms = 10000;
  t.next_cron_time_ms = kT0 + 11120;
  t.retry_count = 3;
  return t;
}

TEST(EncodeTransaction, AllFields) {
  core::GlobalTrans t = FullTransaction();
  std::string text = EncodeTransaction(t);
  json::object o = ParseObject(text);
  EXPECT_EQ(o.at("id"), 7);
  EXPECT_EQ(o.at("create_time"), "2025-01-01T02:00:00.000Z");
  EXPECT_EQ(o.at("update_time"), "2025-01-01T02:00:01.120Z");
  EXPECT_EQ(o.at("gid"), "g1");
  EXPECT_EQ(o.at("trans_type"), "msg");
  EXPECT_EQ(o.at("status"), "aborting");
  EXPECT_EQ(o.at("protocol"), "http");
  EXPECT_EQ(o.at("finish_time"), "2025-01-01T02:00:02.000Z");
  EXPECT_EQ(o.at("rollback_time"), "2025-01-01T02:00:03.000Z");
  ASSERT_TRUE(o.at("options").is_string());  // a JSON string holding JSON
  EXPECT_EQ(Str(o.at("options")), core::EncodeOptionsJson(t.options));
  json::object options = ParseObject(Str(o.at("options")));
  EXPECT_EQ(options.at("retry_interval"), 15);
  EXPECT_EQ(o.at("custom_data"), R"({"delay":10})");
  EXPECT_EQ(o.at("query_prepared"), "http://busi/qp");
  EXPECT_EQ(o.at("rollback_reason"), "reason \"quoted\"\nline");
  EXPECT_EQ(o.at("result"), "res");
  EXPECT_EQ(o.at("owner"), "worker-1");
  ASSERT_TRUE(o.at("next_cron_interval").is_int64()) << text;
  EXPECT_EQ(o.at("next_cron_interval"), 10);
  EXPECT_EQ(o.at("next_cron_time"), "2025-01-01T02:00:11.120Z");
  EXPECT_EQ(o.at("concurrent"), true);  // msg: from options
  EXPECT_EQ(o.at("retry_count"), 3);
  EXPECT_EQ(o.size(), 19u) << text;
}

TEST(EncodeTransaction, OmitsEmptyFields) {
  core::GlobalTrans t;
  t.protocol.clear();
  std::string text = EncodeTransaction(t);
  json::object o = ParseObject(text);
  EXPECT_EQ(o.at("id"), 0);
  EXPECT_TRUE(o.at("create_time").is_null());
  EXPECT_TRUE(o.at("update_time").is_null());
  EXPECT_EQ(o.at("trans_type"), "saga");
  EXPECT_EQ(o.at("status"), "submitted");
  EXPECT_EQ(o.at("concurrent"), false);
  EXPECT_TRUE(o.at("options").is_string());
  for (const char* key : {"gid", "protocol", "finish_time", "rollback_time", "custom_data",
                          "query_prepared", "rollback_reason", "result", "owner",
                          "next_cron_interval", "next_cron_time", "retry_count"}) {
    EXPECT_FALSE(o.contains(key)) << key << " in " << text;
  }
  EXPECT_EQ(o.size(), 7u) << text;
}

TEST(EncodeTransaction, NextCronIntervalFractional) {
  core::GlobalTrans t;
  t.next_cron_interval_ms = 1500;
  std::string text = EncodeTransaction(t);
  json::object o = ParseObject(text);
  ASSERT_TRUE(o.at("next_cron_interval").is_double()) << text;
  EXPECT_DOUBLE_EQ(o.at("next_cron_interval").get_double(), 1.5);
  EXPECT_NE(text.find(R"("next_cron_interval":1.5,)"), std::string::npos) << text;

  t.next_cron_interval_ms = 1;
  EXPECT_NE(EncodeTransaction(t).find(R"("next_cron_interval":0.001,)"), std::string::npos);
  t.next_cron_interval_ms = 1800000;
  EXPECT_NE(EncodeTransaction(t).find(R"("next_cron_interval":1800,)"), std::string::npos);
}

TEST(EncodeTransaction, SagaConcurrentFromCustomData) {
  core::GlobalTrans t;
  t.trans_type = core::TransType::kSaga;
  t.options.concurrent = true;  // ignored for saga
  auto concurrent = [&](const std::string& custom_data) {
    t.custom_data = custom_data;
    return ParseObject(EncodeTransaction(t)).at("concurrent").as_bool();
  };
  EXPECT_FALSE(concurrent(""));
  EXPECT_TRUE(concurrent(R"({"concurrent":true,"orders":{"1":[0]}})"));
  EXPECT_TRUE(concurrent(R"({"Concurrent":true})"));
  EXPECT_FALSE(concurrent(R"({"concurrent":false})"));
  EXPECT_FALSE(concurrent(R"({"concurrent":"true"})"));
  EXPECT_FALSE(concurrent(R"({"concurrent":true)"));  // malformed: lenient
  EXPECT_FALSE(concurrent(R"([true])"));
  EXPECT_TRUE(concurrent(R"({"concurrent":false,"CONCURRENT":true})"));
}

TEST(EncodeBranch, FieldsAndBase64) {
  core::BranchRow b;
  b.id = 2;
  b.gid = "g1";
  b.url = "http://busi/api/TransOut";
  b.bin_data = std::string("\x00\xff\xfe{\"a\"}", 8);
  b.branch_id = "01";
  b.op = "action";
  b.status = core::BranchStatus::kSucceed;
  b.create_time_ms = kT0;
  b.update_time_ms = kT0 + 1;
  b.finish_time_ms = kT0 + 2;
  b.attempts = 4;
  b.last_error = "HTTP 500: \"boom\"";
  std::string text = EncodeBranch(b);
  json::object o = ParseObject(text);
  EXPECT_EQ(o.at("id"), 2);
  EXPECT_EQ(o.at("create_time"), "2025-01-01T02:00:00.000Z");
  EXPECT_EQ(o.at("update_time"), "2025-01-01T02:00:00.001Z");
  EXPECT_EQ(o.at("gid"), "g1");
  EXPECT_EQ(o.at("url"), "http://busi/api/TransOut");
  EXPECT_EQ(o.at("bin_data"), "AP/+eyJhIn0=");
  EXPECT_EQ(o.at("branch_id"), "01");
  EXPECT_EQ(o.at("op"), "action");
  EXPECT_EQ(o.at("status"), "succeed");
  EXPECT_EQ(o.at("finish_time"), "2025-01-01T02:00:00.002Z");
  EXPECT_EQ(o.at("attempts"), 4);
  EXPECT_EQ(o.at("last_error"), "HTTP 500: \"boom\"");
  EXPECT_EQ(o.size(), 12u);

  core::BranchRow empty;
  o = ParseObject(EncodeBranch(empty));
  EXPECT_EQ(o.at("id"), 0);
  EXPECT_TRUE(o.at("create_time").is_null());
  EXPECT_EQ(o.at("status"), "prepared");
  for (const char* key :
       {"gid", "url", "bin_data", "branch_id", "op", "finish_time", "attempts", "last_error"}) {
    EXPECT_FALSE(o.contains(key)) << key;
  }
  EXPECT_EQ(o.size(), 4u);
}

TEST(EncodeBranch, InvalidUtf8BecomesReplacementCharacter) {
  core::BranchRow b;
  // A participant's answer cut in the middle of "é" (C3 A9), plus a stray 0xFF and a control char.
  b.last_error = std::string("caf\xC3") + "\xFF" + "\x01" + "ok";
  std::string text = EncodeBranch(b);
  json::object o = ParseObject(text);  // strict parser: valid UTF-8
  EXPECT_EQ(o.at("last_error"), "caf\xEF\xBF\xBD\xEF\xBF\xBD\x01ok");
}

TEST(EncodeQueryAnswer, NullTransaction) {
  std::string text = EncodeQueryAnswer(nullptr);
  json::object o = ParseObject(text);
  EXPECT_TRUE(o.at("transaction").is_null());
  ASSERT_TRUE(o.at("branches").is_array());
  EXPECT_TRUE(o.at("branches").get_array().empty());
  EXPECT_EQ(o.size(), 2u);
}

TEST(EncodeQueryAnswer, WithBranches) {
  core::TransSnapshot s;
  s.global = FullTransaction();
  s.branches.resize(2);
  s.branches[0].id = 1;
  s.branches[0].op = "compensate";
  s.branches[1].id = 2;
  s.branches[1].op = "action";
  json::object o = ParseObject(EncodeQueryAnswer(&s));
  EXPECT_EQ(o.at("transaction").at("gid"), "g1");
  ASSERT_EQ(o.at("branches").get_array().size(), 2u);
  EXPECT_EQ(o.at("branches").get_array()[0].at("op"), "compensate");
  EXPECT_EQ(o.at("branches").get_array()[1].at("id"), 2);
}

TEST(EncodeAllAnswer, ListAndCursor) {
  std::vector<core::GlobalTrans> list(2);
  list[0].gid = "b";
  list[1].gid = "a";
  json::object o = ParseObject(EncodeAllAnswer(list, "42"));
  ASSERT_EQ(o.at("transactions").get_array().size(), 2u);
  EXPECT_EQ(o.at("transactions").get_array()[0].at("gid"), "b");
  EXPECT_EQ(o.at("next_position"), "42");
  o = ParseObject(EncodeAllAnswer({}, ""));
  EXPECT_TRUE(o.at("transactions").get_array().empty());
  EXPECT_EQ(o.at("next_position"), "");
}

// --- Envelope
// --------------------------------------------------------------------------------------

TEST(Envelope, Success) { EXPECT_EQ(SuccessBody(), R"({"dtm_result":"SUCCESS"})"); }

TEST(Envelope, FailureAndOngoing) {
  json::object o = ParseObject(FailureBody("branch \"x\" failed"));
  EXPECT_EQ(o.at("dtm_result"), "FAILURE");
  EXPECT_EQ(o.at("message"), "branch \"x\" failed");
  EXPECT_EQ(o.size(), 2u);
  o = ParseObject(OngoingBody("still running"));
  EXPECT_EQ(o.at("dtm_result"), "ONGOING");
  EXPECT_EQ(o.at("message"), "still running");
  EXPECT_EQ(o.size(), 2u);
}

TEST(Envelope, ErrorBodyEscapes) {
  std::string message = "bad \"gid\"\nline2\\ \t\x01 </script>";
  std::string text = ErrorBody(message, "INVALID_ARGUMENT");
  EXPECT_EQ(text.find('\n'), std::string::npos) << text;
  json::object o = ParseObject(text);
  EXPECT_EQ(Str(o.at("message")), message);
  EXPECT_EQ(o.at("code"), "INVALID_ARGUMENT");
  EXPECT_FALSE(o.contains("gid"));
  EXPECT_FALSE(o.contains("status"));
  EXPECT_FALSE(o.contains("dtm_result"));

  o = ParseObject(ErrorBody("no such gid", "NOT_FOUND", "g\"1", "succeed"));
  EXPECT_EQ(o.at("gid"), "g\"1");
  EXPECT_EQ(o.at("status"), "succeed");
  EXPECT_EQ(o.size(), 4u);
}

}  // namespace
}  // namespace dtx::api
