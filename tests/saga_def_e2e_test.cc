// Saga definitions end to end (issue 15 item 1): define -> submit by name -> success and rollback;
// a new version does not change a running saga; versions, listing and validation over HTTP; the
// `dtx saga put|list` command. SQLite, and PostgreSQL with DTX_E2E_STORE=postgres.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <thread>

#include "tests/support/harness.h"

namespace dtx::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;

class SagaDefE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir("sagadef");
    std::string store = E2EStore(dir_);
    if (store.empty()) GTEST_SKIP() << "DTX_E2E_STORE=postgres needs DTX_TEST_PG_URL";
    server_ = std::make_unique<ServerProcess>(
        store, std::vector<std::string>{"--retry-interval", "0.3", "--cron-interval", "0.1",
                                        "--log-level", "warn"});
    ASSERT_TRUE(server_->Start());
  }
  std::string Sagas(const std::string& rest) { return server_->Base() + "/api/dtx/sagas" + rest; }
  HttpResult Put(const std::string& name, const std::string& def) {
    return HttpFetch("PUT", Sagas("/" + name), def);
  }
  HttpResult Submit(const std::string& name, const json::object& body) {
    return HttpFetch("POST", Sagas("/" + name + "/submit"), json::serialize(body));
  }
  // charge and reserve in parallel, then ship; URLs from the services map.
  std::string OrderDef(const std::string& prefix) {
    json::object def{
        {"services", json::object{{"busi", busi_.Url("")}}},
        {"steps",
         json::array{json::object{{"name", "charge"},
                                  {"action", "{busi}" + prefix + "/charge"},
                                  {"compensate", "{busi}" + prefix + "/refund"}},
                     json::object{{"name", "reserve"},
                                  {"action", "{busi}" + prefix + "/reserve"},
                                  {"compensate", "{busi}" + prefix + "/release"}},
                     json::object{{"name", "ship"}, {"action", "{busi}" + prefix + "/ship"}}}},
        {"orders", json::object{{"ship", json::array{"charge", "reserve"}}}},
        {"options", json::object{{"retry_interval", 1}}}};
    return json::serialize(def);
  }

  std::string dir_;
  std::unique_ptr<ServerProcess> server_;
  Busi busi_;
};

TEST_F(SagaDefE2E, DefineSubmitByNameSucceedsInDagOrder) {
  auto put = Put("order", OrderDef("/o"));
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_EQ(json::parse(put.body), json::parse(R"({"name":"order","version":1,"changed":true})"));
  auto r = Submit("order", {{"gid", "ord-1"},
                            {"payloads", json::object{{"charge", "30"}, {"ship", "addr"}}},
                            {"wait_result", true}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body), json::parse(R"({"dtm_result":"SUCCESS","gid":"ord-1"})"));
  TransView v = QueryTrans(*server_, "ord-1");
  EXPECT_EQ(v.status, "succeed");
  // The saga records the definition version it started with.
  json::value custom = json::parse(v.raw.at("transaction").at("custom_data").as_string());
  EXPECT_EQ(custom.at("saga"), json::parse(R"({"name":"order","version":1})"));
  ASSERT_EQ(busi_.CallCount("/o/charge"), 1u);
  ASSERT_EQ(busi_.CallCount("/o/ship"), 1u);
  EXPECT_EQ(busi_.Calls("/o/charge")[0].body, "30");
  EXPECT_EQ(busi_.Calls("/o/ship")[0].body, "addr");
  // ship ran after both charge and reserve had answered.
  auto ship = busi_.Calls("/o/ship")[0].start;
  EXPECT_GE(ship, busi_.Calls("/o/charge")[0].end);
  EXPECT_GE(ship, busi_.Calls("/o/reserve")[0].end);
  // Without a gid one is made and returned; input goes to every step.
  r = Submit("order", {{"input", json::object{{"account", 42}}}, {"wait_result", true}});
  ASSERT_EQ(r.status, 200) << r.body;
  std::string gid(json::parse(r.body).at("gid").as_string());
  EXPECT_EQ(QueryTrans(*server_, gid).status, "succeed");
  EXPECT_EQ(busi_.Calls("/o/reserve").back().body, R"({"account":42})");
}

TEST_F(SagaDefE2E, SubmitByNameRollsBack) {
  ASSERT_EQ(Put("order", OrderDef("/f")).status, 200);
  busi_.SetDefault("/f/ship", BusiAnswer::Failure());
  auto r = Submit("order", {{"gid", "ord-fail"}, {"wait_result", true}});
  EXPECT_EQ(r.status, 409) << r.body;
  TransView v = WaitStatus(*server_, "ord-fail", {"failed"});
  EXPECT_EQ(v.status, "failed");
  EXPECT_EQ(busi_.CallCount("/f/refund"), 1u);
  EXPECT_EQ(busi_.CallCount("/f/release"), 1u);
}

TEST_F(SagaDefE2E, ANewVersionDoesNotChangeARunningSaga) {
  ASSERT_EQ(Put("order", OrderDef("/v1")).status, 200);
  // v1's ship answers ONGOING for a while: the saga is running when v2 is registered.
  busi_.Script("/v1/ship", {BusiAnswer::Ongoing(), BusiAnswer::Ongoing()});
  ASSERT_EQ(Submit("order", {{"gid", "running"}}).status, 200);
  ASSERT_TRUE(WaitFor([&] { return busi_.CallCount("/v1/ship") >= 1; }, milliseconds(5000)));
  auto put = Put("order", OrderDef("/v2"));
  ASSERT_EQ(put.status, 200);
  EXPECT_EQ(json::parse(put.body).at("version").as_int64(), 2);
  EXPECT_EQ(WaitStatus(*server_, "running", {"succeed"}).status, "succeed");
  EXPECT_EQ(busi_.CallCount("/v1/ship"), 3u);
  EXPECT_EQ(busi_.CallCount("/v2/ship"), 0u);
  // A new saga takes version 2.
  ASSERT_EQ(Submit("order", {{"gid", "new"}, {"wait_result", true}}).status, 200);
  EXPECT_EQ(busi_.CallCount("/v2/ship"), 1u);
  json::value custom =
      json::parse(QueryTrans(*server_, "new").raw.at("transaction").at("custom_data").as_string());
  EXPECT_EQ(custom.at("saga").at("version").as_int64(), 2);
}

TEST_F(SagaDefE2E, VersionsListingAndValidation) {
  const std::string def = OrderDef("/x");
  ASSERT_EQ(json::parse(Put("a", def).body).at("version").as_int64(), 1);
  // Identical (also with the keys in another order): a no-op.
  json::value reordered = json::parse(def);
  json::object flipped;
  for (auto it = reordered.as_object().end(); it != reordered.as_object().begin();) {
    --it;
    flipped[it->key()] = it->value();
  }
  EXPECT_EQ(json::parse(Put("a", json::serialize(flipped)).body),
            json::parse(R"({"name":"a","version":1,"changed":false})"));
  ASSERT_EQ(json::parse(Put("a", OrderDef("/y")).body).at("version").as_int64(), 2);
  ASSERT_EQ(Put("b", def).status, 200);
  auto one = HttpFetch("GET", Sagas("/a"));
  ASSERT_EQ(one.status, 200);
  auto versions = json::parse(one.body).at("versions").as_array();
  ASSERT_EQ(versions.size(), 2u);
  EXPECT_EQ(versions[0].at("version").as_int64(), 1);
  EXPECT_EQ(versions[1].at("definition"), json::parse(OrderDef("/y")));
  auto list = json::parse(HttpFetch("GET", Sagas("")).body);
  ASSERT_EQ(list.at("sagas").as_array().size(), 2u);
  EXPECT_EQ(HttpFetch("GET", Sagas("/nope")).status, 404);
  EXPECT_EQ(Submit("nope", {}).status, 404);
  // 400 naming the problem; nothing stored.
  auto bad = [&](const std::string& body, const std::string& needle) {
    auto r = Put("bad", body);
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_NE(r.body.find(needle), std::string::npos) << r.body;
  };
  bad(R"({"steps":[{"name":"a","action":"{nope}/a"}]})", "unknown service 'nope'");
  bad(R"({"steps":[{"name":"a","action":"http://127.0.0.1:1/a"}],"orders":{"a":["zz"]}})",
      "orders.a: unknown step 'zz'");
  bad(R"({"steps":[{"name":"a","action":"http://127.0.0.1:1/a"},
                   {"name":"b","action":"http://127.0.0.1:1/b"}],"orders":{"a":["b"],"b":["a"]}})",
      "orders form a cycle");
  bad(R"({"steps":[]})", "steps is empty");
  EXPECT_EQ(HttpFetch("GET", Sagas("/bad")).status, 404);
  EXPECT_EQ(HttpFetch("PUT", Sagas("/bad%20name"), def).status, 400);
  HttpResult del = HttpFetch("DELETE", Sagas("/a"));
  EXPECT_EQ(del.status, 405);
  EXPECT_EQ(del.Header("Allow"), "GET, PUT");  // RFC 9110 §15.5.6
  EXPECT_EQ(HttpFetch("GET", Sagas("/a/submit")).Header("Allow"), "POST");
}

std::string RunCommand(const std::string& cmd, int& rc) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  char buf[512];
  while (p != nullptr && std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
  rc = p != nullptr ? ::pclose(p) : -1;
  return out;
}

TEST_F(SagaDefE2E, DtxSagaPutAndList) {
  const std::string file = dir_ + "/transfer.json";
  std::ofstream(file) << OrderDef("/cli");
  const std::string server = " --server " + server_->Base();
  int rc = 0;
  std::string out = RunCommand(DtxBinary() + " saga" + server + " put " + file, rc);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out, "transfer version 1\n");
  out = RunCommand(DtxBinary() + " saga" + server + " put " + file, rc);
  EXPECT_EQ(out, "transfer version 1 (unchanged)\n");
  out = RunCommand(DtxBinary() + " saga" + server + " list", rc);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("transfer"), std::string::npos) << out;
  std::ofstream(dir_ + "/broken.json") << R"({"steps":[]})";
  out = RunCommand(DtxBinary() + " saga" + server + " put " + dir_ + "/broken.json", rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("HTTP 400"), std::string::npos) << out;
  EXPECT_NE(out.find("steps is empty"), std::string::npos) << out;
}

}  // namespace
}  // namespace dtx::testing
