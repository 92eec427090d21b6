// Issue 15, items 3 and 5: gids kept verbatim, text that is not valid UTF-8 refused on every route
// (query strings included), a stored topic value that does not parse does not take the topic down,
// database errors never reach a client, and saga retry_limit is capped and spaced. Runs on SQLite,
// and on PostgreSQL with DTX_E2E_STORE=postgres (ctest input_hardening_test_pg).
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "http/server.h"
#include "tests/support/harness.h"

namespace dtx::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;

class InputHardening : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir("hardening");
    store_ = E2EStore(dir_);
    if (store_.empty()) GTEST_SKIP() << "DTX_E2E_STORE=postgres needs DTX_TEST_PG_URL";
    server_ = std::make_unique<ServerProcess>(
        store_, std::vector<std::string>{"--retry-interval", "0.5", "--cron-interval", "0.1",
                                         "--max-retry-limit", "50", "--log-level", "warn"});
    ASSERT_TRUE(server_->Start());
  }
  HttpResult Get(const std::string& op) { return HttpFetch("GET", server_->Api(op)); }
  HttpResult Post(const std::string& op, const std::string& body) {
    return HttpFetch("POST", server_->Api(op), body);
  }
  static void ExpectClean400(const HttpResult& r, const std::string& needle) {
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_NE(r.body.find(needle), std::string::npos) << r.body;
    // Never the database's words (PostgreSQL answered "invalid byte sequence ... SQLSTATE 22021").
    EXPECT_EQ(r.body.find("SQLSTATE"), std::string::npos) << r.body;
    EXPECT_EQ(r.body.find("postgres"), std::string::npos) << r.body;
    EXPECT_EQ(r.body.find("sqlite"), std::string::npos) << r.body;
  }

  std::string dir_;
  std::string store_;
  std::unique_ptr<ServerProcess> server_;
  Busi busi_;
};

TEST_F(InputHardening, GidsAreKeptVerbatim) {
  // DTM strips ';', CR and LF, so a client that used "a;b" could not find its transaction.
  for (std::string gid : {"semi;colon;", " spaced gid ", "caf\xC3\xA9;x"}) {
    auto r = Post("submit", SagaBody(gid, {{busi_.Url("/v/a"), busi_.Url("/v/c")}}, {"p"},
                                     {{"wait_result", true}}));
    ASSERT_EQ(r.status, 200) << gid << ": " << r.body;
    TransView v = QueryTrans(*server_, gid);
    ASSERT_TRUE(v.found) << gid;
    EXPECT_EQ(v.raw.at("transaction").at("gid").as_string(), gid);
    EXPECT_EQ(v.status, "succeed");
  }
  // The participant receives the gid verbatim too.
  bool seen = false;
  for (const BusiCall& c : busi_.Calls("/v/a")) seen = seen || c.query.at("gid") == "semi;colon;";
  EXPECT_TRUE(seen);
  // registerBranch keeps it as well.
  const std::string tcc = "tcc;1";
  ASSERT_EQ(
      Post("prepare", json::serialize(json::object{{"gid", tcc}, {"trans_type", "tcc"}})).status,
      200);
  auto reg =
      Post("registerBranch", json::serialize(json::object{{"gid", tcc},
                                                          {"trans_type", "tcc"},
                                                          {"branch_id", "01"},
                                                          {"confirm", busi_.Url("/v/confirm")},
                                                          {"cancel", busi_.Url("/v/cancel")}}));
  EXPECT_EQ(reg.status, 200) << reg.body;
  EXPECT_EQ(QueryTrans(*server_, tcc).branch_ops.size(), 2u);
}

TEST_F(InputHardening, GidsWithControlCharactersOrOverTheLimitAre400) {
  for (std::string gid : {std::string("a\nb"), std::string("a\rb"), std::string("tab\there"),
                          std::string("nul\0x", 5), std::string("del\x7f")}) {
    auto r = Post("submit", SagaBody(gid, {{busi_.Url("/x/a"), busi_.Url("/x/c")}}, {"p"}));
    ExpectClean400(r, "gid contains a control character");
    auto reg = Post(
        "registerBranch",
        json::serialize(json::object{{"gid", gid}, {"trans_type", "tcc"}, {"branch_id", "01"}}));
    ExpectClean400(reg, "gid contains a control character");
  }
  ExpectClean400(Post("submit", SagaBody(std::string(129, 'g'), {}, {})),
                 "gid is 129 bytes, over the limit of 128");
  // Nothing was stored.
  auto all = json::parse(Get("all").body);
  EXPECT_TRUE(all.at("transactions").as_array().empty()) << all;
  EXPECT_TRUE(busi_.Calls().empty());
}

TEST_F(InputHardening, InvalidUtf8InQueryStringsIs400AndTheTopicKeepsWorking) {
  const std::string good = http::UrlEncode(busi_.Url("/topic/ok"));
  ASSERT_EQ(Get("subscribe?topic=t1&url=" + good + "&remark=fine").status, 200);
  // The fuzzed inputs of the issue: a lone 0xFF, a UTF-16 surrogate, an overlong '/'.
  for (const char* bad : {"%ff", "%ED%A0%80", "%C0%AF"}) {
    ExpectClean400(Get(std::string("subscribe?topic=t1&url=") + good + "x" + bad + "&remark=r"),
                   "query parameter 'url' is not valid UTF-8");
    ExpectClean400(Get(std::string("subscribe?topic=t1&url=") + good + "y&remark=r" + bad),
                   "query parameter 'remark' is not valid UTF-8");
    ExpectClean400(Get(std::string("subscribe?topic=t") + bad + "&url=" + good),
                   "query parameter 'topic' is not valid UTF-8");
    ExpectClean400(Get(std::string("unsubscribe?topic=t1&url=") + good + bad),
                   "is not valid UTF-8");
    ExpectClean400(Get(std::string("query?gid=g") + bad), "is not valid UTF-8");
    ExpectClean400(Get(std::string("all?status=") + bad), "is not valid UTF-8");
    ExpectClean400(Get(std::string("queryKV?cat=topics&key=") + bad), "is not valid UTF-8");
    ExpectClean400(Get(std::string("subscribe?to") + bad + "pic=t1"), "query parameter name");
    ExpectClean400(HttpFetch("DELETE", server_->Api(std::string("topic/t") + bad)),
                   "the path is not valid UTF-8");
  }
  // The topic still reads, changes and delivers, across a restart.
  ASSERT_EQ(Get("subscribe?topic=t1&url=" + http::UrlEncode(busi_.Url("/topic/two"))).status, 200);
  ASSERT_EQ(Get("unsubscribe?topic=t1&url=" + http::UrlEncode(busi_.Url("/topic/two"))).status,
            200);
  ASSERT_EQ(server_->Terminate(), 0);
  ASSERT_TRUE(server_->Start());
  auto msg = Post("submit", json::serialize(json::object{
                                {"gid", "m1"},
                                {"trans_type", "msg"},
                                {"steps", json::array{json::object{{"action", "topic://t1"}}}},
                                {"payloads", json::array{"{}"}},
                                {"wait_result", true}}));
  EXPECT_EQ(msg.status, 200) << msg.body;
  EXPECT_EQ(busi_.CallCount("/topic/ok"), 1u);
  auto kv = json::parse(Get("queryKV?cat=topics&key=t1").body);
  ASSERT_EQ(kv.at("kv").as_array().size(), 1u);
  EXPECT_EQ(json::parse(kv.at("kv").at(0).at("v").as_string()).as_array().size(), 1u);
}

// A value stored before the fix (or changed by hand) that does not parse: the topic stays usable
// and the server logs the stored value for the operator. SQLite only: PostgreSQL never stored
// invalid UTF-8 (it refused the write).
TEST_F(InputHardening, ACorruptStoredTopicDoesNotTakeTheTopicDown) {
  if (E2EOnPostgres()) GTEST_SKIP() << "SQLite only";
  const std::string ok = busi_.Url("/corrupt/ok");
  ASSERT_EQ(Get("subscribe?topic=bad&url=" + http::UrlEncode(ok)).status, 200);
  ASSERT_EQ(Get("subscribe?topic=worse&url=" + http::UrlEncode(ok)).status, 200);
  ASSERT_EQ(server_->Terminate(), 0);
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir_ + "/dtx.db").c_str(), &db), SQLITE_OK);
    // What the old server wrote for subscribe?...&remark=%ff: the raw byte inside the JSON string.
    std::string v =
        "[{\"url\":\"" + ok + "\",\"remark\":\"\"},{\"url\":\"" + ok + "2\",\"remark\":\"r\xff\"}]";
    sqlite3_stmt* st = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, "UPDATE kv SET v = ?1 WHERE cat = 'topics' AND k = ?2", -1,
                                 &st, nullptr),
              SQLITE_OK);
    for (auto [key, value] : {std::pair<std::string, std::string>{"bad", v},
                              std::pair<std::string, std::string>{"worse", "{not json"}}) {
      sqlite3_bind_text(st, 1, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
      sqlite3_bind_text(st, 2, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
      ASSERT_EQ(sqlite3_step(st), SQLITE_DONE);
      ASSERT_EQ(sqlite3_changes(db), 1);
      sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
  }
  ASSERT_TRUE(server_->Start());
  // "bad": its subscribers are read (the bad byte as U+FFFD); it delivers (to both) and changes.
  auto msg = Post("submit", json::serialize(json::object{
                                {"gid", "m-bad"},
                                {"trans_type", "msg"},
                                {"steps", json::array{json::object{{"action", "topic://bad"}}}},
                                {"payloads", json::array{"{}"}},
                                {"wait_result", true}}));
  EXPECT_EQ(msg.status, 200) << msg.body;
  EXPECT_EQ(busi_.CallCount("/corrupt/ok"), 1u);
  EXPECT_EQ(busi_.CallCount("/corrupt/ok2"), 1u);
  EXPECT_EQ(Get("unsubscribe?topic=bad&url=" + http::UrlEncode(ok + "2")).status, 200);
  EXPECT_EQ(Get("subscribe?topic=bad&url=" + http::UrlEncode(busi_.Url("/corrupt/2"))).status, 200);
  // "worse": not a list at all; it reads as empty and the next subscribe writes a clean list.
  EXPECT_EQ(Get("subscribe?topic=worse&url=" + http::UrlEncode(ok)).status, 200);
  auto kv = json::parse(Get("queryKV?cat=topics&key=worse").body);
  EXPECT_EQ(json::parse(kv.at("kv").at(0).at("v").as_string()).as_array().size(), 1u);
  // The operator sees both in the log, with the stored value.
  std::ifstream log(server_->log_path());
  std::stringstream text;
  text << log.rdbuf();
  EXPECT_NE(text.str().find("topic bad: the stored subscriber list is not valid JSON (invalid "
                            "UTF-8)"),
            std::string::npos)
      << text.str();
  EXPECT_NE(text.str().find("topic worse: the stored subscriber list is not valid JSON; read as "
                            "empty. Stored value (9 bytes): {not json"),
            std::string::npos)
      << text.str();
}

TEST_F(InputHardening, RetryLimitIsCappedAndItsImmediateRetriesAreSpaced) {
  ExpectClean400(Post("submit", SagaBody("cap", {{busi_.Url("/r/a"), busi_.Url("/r/c")}}, {"p"},
                                         {{"retry_limit", 51}})),
                 "retry_limit 51 is over this server's limit of 50 (--max-retry-limit)");
  ExpectClean400(Post("submit", SagaBody("cap2", {{busi_.Url("/r/a"), busi_.Url("/r/c")}}, {"p"},
                                         {{"retry_limit", INT64_MAX}})),
                 "--max-retry-limit");
  // A participant that always fails with an error: DTM would call it 50 times back to back.
  busi_.SetDefault("/r/a", BusiAnswer::Error());
  ASSERT_EQ(Post("submit", SagaBody("storm", {{busi_.Url("/r/a"), busi_.Url("/r/c")}}, {"p"},
                                    {{"retry_limit", 50}}))
                .status,
            200);
  std::this_thread::sleep_for(milliseconds(2000));
  std::vector<BusiCall> calls = busi_.Calls("/r/a");
  std::printf("retry storm: %zu calls of a failing action in 2 s (retry_limit 50)\n", calls.size());
  // Pauses of 10, 20, 40, ... ms capped at 1 s: about 8 calls in 2 s (7 pauses sum to 1.27 s).
  EXPECT_GE(calls.size(), 5u);
  EXPECT_LE(calls.size(), 11u) << "the immediate retries are not spaced";
  for (size_t i = 1; i < calls.size() && i < 6; ++i) {
    auto gap = std::chrono::duration_cast<milliseconds>(calls[i].start - calls[i - 1].end).count();
    EXPECT_GE(gap, (10 << (i - 1)) - 2) << "pause before retry " << i;
  }
}

}  // namespace
}  // namespace dtx::testing
