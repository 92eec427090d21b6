// Saga definitions through the C++ SDK (include/dtx/saga_def.h) against the real `dtx server`:
// put (new version, identical no-op, validation), get, list, and submit by name with per-step
// payloads, one input object, wait_result (success and rollback) and business keys. SQLite, and
// PostgreSQL with DTX_E2E_STORE=postgres.
#include <gtest/gtest.h>

#include "api/saga_defs.h"
#include "dtx/saga_def.h"
#include "tests/support/harness.h"

namespace dtx::testing {
namespace {

namespace json = boost::json;
using std::chrono::seconds;

// The SDK's copies of the coordinator's limits.
static_assert(dtx::kMaxSagaNameBytes == api::kMaxSagaNameBytes);
static_assert(dtx::kMaxSagaDefinitionBytes == api::kMaxSagaDefinitionBytes);

class SdkSagaDefE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir("sdk-sagadef");
    std::string store = E2EStore(dir_);
    if (store.empty()) GTEST_SKIP() << "DTX_E2E_STORE=postgres needs DTX_TEST_PG_URL";
    server_ = std::make_unique<ServerProcess>(
        store, std::vector<std::string>{"--retry-interval", "0.3", "--cron-interval", "0.1",
                                        "--log-level", "warn"});
    ASSERT_TRUE(server_->Start());
    client_ = std::make_unique<Client>(server_->Base() + "/api/dtmsvr");
  }
  // charge then reserve; `prefix` picks the participant paths (their scripted answers).
  std::string Def(const std::string& prefix, int retry_interval = 1) {
    json::object def{
        {"services", json::object{{"busi", busi_.Url("")}}},
        {"steps", json::array{json::object{{"name", "charge"},
                                           {"action", "{busi}" + prefix + "/charge"},
                                           {"compensate", "{busi}" + prefix + "/refund"}},
                              json::object{{"name", "reserve"},
                                           {"action", "{busi}" + prefix + "/reserve"},
                                           {"compensate", "{busi}" + prefix + "/release"}}}},
        {"options", json::object{{"retry_interval", retry_interval}}}};
    return json::serialize(def);
  }

  std::string dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<Client> client_;
  Busi busi_;
};

TEST_F(SdkSagaDefE2E, PutGetListAndValidation) {
  SagaDefinitions defs(*client_);
  auto v1 = defs.Put("order", Def("/o"));
  ASSERT_TRUE(v1.ok()) << v1.status().ToString();
  EXPECT_EQ(v1->name, "order");
  EXPECT_EQ(v1->version, 1);
  EXPECT_TRUE(v1->changed);
  auto same = defs.Put("order", Def("/o"));
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->version, 1);
  EXPECT_FALSE(same->changed);
  auto v2 = defs.Put("order", Def("/o", 2));
  ASSERT_TRUE(v2.ok());
  EXPECT_EQ(v2->version, 2);
  EXPECT_TRUE(v2->changed);

  auto versions = defs.Get("order");
  ASSERT_TRUE(versions.ok()) << versions.status().ToString();
  ASSERT_EQ(versions->size(), 2u);
  EXPECT_EQ((*versions)[0].version, 1);
  EXPECT_EQ((*versions)[1].version, 2);
  EXPECT_GT((*versions)[1].create_time_ms, 0);
  EXPECT_EQ(json::parse((*versions)[1].definition), json::parse(Def("/o", 2)));

  ASSERT_TRUE(defs.Put("refund", Def("/r")).ok());
  auto page = defs.List();
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  ASSERT_EQ(page->sagas.size(), 2u);
  std::map<std::string, int64_t> listed;
  for (const auto& s : page->sagas) listed[s.name] = s.version;
  EXPECT_EQ(listed["order"], 2);
  EXPECT_EQ(listed["refund"], 1);
  auto first = defs.List(1);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->sagas.size(), 1u);
  ASSERT_FALSE(first->next_position.empty());
  auto second = defs.List(1, first->next_position);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  ASSERT_EQ(second->sagas.size(), 1u);
  EXPECT_NE(second->sagas[0].name, first->sagas[0].name);

  // The coordinator's 400 names the problem; nothing is stored.
  std::string bad = Def("/o");
  bad.replace(bad.find("{busi}"), 6, "{nope}");
  auto refused = defs.Put("broken", bad);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("unknown service 'nope'"), std::string::npos)
      << refused.status().message();
  EXPECT_EQ(defs.Get("broken").status().code(), Code::kNotFound);
  // Client-side checks: a bad name, a definition over the limit.
  EXPECT_EQ(defs.Put("a b", Def("/o")).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(defs.Put(std::string(65, 'n'), Def("/o")).status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(CheckSagaName(std::string(64, 'n')).ok());
  EXPECT_EQ(defs.Put("huge", std::string(kMaxSagaDefinitionBytes + 1, ' ')).status().code(),
            Code::kInvalidArgument);
}

TEST_F(SdkSagaDefE2E, SubmitByNameSucceedsAndRollsBack) {
  SagaDefinitions defs(*client_);
  ASSERT_TRUE(defs.Put("order", Def("/o")).ok());

  // Per-step payloads; the coordinator makes the gid.
  SagaByName saga(*client_, "order");
  saga.SetPayload("charge", R"({"amount":30})")
      .SetPayload("reserve", R"({"qty":2})")
      .SetWaitResult(true);
  Status s = saga.Submit();
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_FALSE(saga.gid().empty());
  EXPECT_EQ(QueryTrans(*server_, saga.gid()).status, "succeed");
  ASSERT_EQ(busi_.CallsFor(saga.gid()).size(), 2u);
  EXPECT_EQ(busi_.CallsFor(saga.gid())[0].path, "/o/charge");
  EXPECT_EQ(busi_.CallsFor(saga.gid())[0].body, R"({"amount":30})");
  EXPECT_EQ(busi_.CallsFor(saga.gid())[1].body, R"({"qty":2})");

  // One input object for every step, a gid of ours, business keys.
  SagaByName with_input(*client_, "order", "sdk-input");
  with_input.SetInput(R"({"order":42})").SetWaitResult(true).SetBusinessKeys({"order:42"});
  ASSERT_TRUE(with_input.Submit().ok());
  EXPECT_EQ(with_input.gid(), "sdk-input");
  for (const BusiCall& c : busi_.CallsFor("sdk-input")) EXPECT_EQ(c.body, R"({"order":42})");
  TransView q = QueryTrans(*server_, "sdk-input");
  EXPECT_EQ(q.status, "succeed");
  EXPECT_NE(
      q.raw.at("transaction").at("custom_data").as_string().find(R"("business_keys":["order:42"])"),
      std::string::npos)
      << q.raw;

  // Rollback: reserve answers FAILURE -> kConflict with wait_result, charge is refunded.
  ASSERT_TRUE(defs.Put("failing", Def("/f")).ok());
  busi_.SetDefault("/f/reserve", BusiAnswer::Failure());
  SagaByName failing(*client_, "failing", "sdk-rollback");
  failing.SetWaitResult(true);
  Status rolled = failing.Submit();
  EXPECT_EQ(rolled.code(), Code::kConflict) << rolled.ToString();
  auto final_state = client_->WaitFinal("sdk-rollback", seconds(20));
  ASSERT_TRUE(final_state.ok()) << final_state.status().ToString();
  EXPECT_EQ(final_state->status, "failed");
  EXPECT_EQ(busi_.CallCount("/f/refund"), 1u);

  // Unknown name: kNotFound; payloads and input together: refused before sending.
  EXPECT_EQ(SagaByName(*client_, "nope").Submit().code(), Code::kNotFound);
  SagaByName both(*client_, "order", "sdk-both");
  both.SetPayload("charge", "{}").SetInput("{}");
  EXPECT_EQ(both.Submit().code(), Code::kInvalidArgument);
  SagaByName not_object(*client_, "order", "sdk-not-object");
  not_object.SetInput("[1]");
  EXPECT_EQ(not_object.Submit().code(), Code::kInvalidArgument);
  EXPECT_FALSE(QueryTrans(*server_, "sdk-both").found);
  // An unknown step in payloads: the coordinator's 400.
  SagaByName unknown_step(*client_, "order", "sdk-unknown-step");
  unknown_step.SetPayload("chrage", "{}");
  Status unknown = unknown_step.Submit();
  EXPECT_EQ(unknown.code(), Code::kInvalidArgument);
  EXPECT_NE(unknown.message().find("chrage"), std::string::npos) << unknown.message();
}

}  // namespace
}  // namespace dtx::testing
