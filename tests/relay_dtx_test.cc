// `dtx relay --sink dtx://host:port` against a real `dtx server` (SQLite store): outbox rows of a
// SQLite outbox become the coordinator's transactional messages to topic://<topic>, delivered to
// every subscriber with the message id, key and headers as HTTP headers; a topic without
// subscribers keeps its rows pending until someone subscribes; a re-publish of a message id is
// not delivered twice; a coordinator that is down is a transport failure; bad input is refused;
// an HTTPS coordinator with an API token (dtxs://, --sink-ca-file, --sink-token / DTX_SINK_TOKEN).
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <set>

#include "brokers/broker.h"
#include "http/test_certs.h"
#include "tests/support/harness.h"
#include "tests/support/relay_process.h"

namespace dtx::testing {
namespace {

class RelayDtxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir("relay-dtx");
    server_ = std::make_unique<ServerProcess>(dir_ + "/dtx.db");
    ASSERT_TRUE(server_->Start()) << server_->log_path();
    sink_ = "dtx://127.0.0.1:" + std::to_string(server_->port());
  }
  void Subscribe(const std::string& topic, const std::string& path) {
    HttpResult r =
        HttpFetch("GET", server_->Api("subscribe?topic=" + topic + "&url=" + busi_.Url(path)));
    ASSERT_EQ(r.status, 200) << r.body;
  }
  // SQL on the outbox file (the relay holds its own connection; a busy timeout for both).
  void Sql(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir_ + "/app.db").c_str(), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << err;
    sqlite3_free(err);
    sqlite3_close(db);
  }

  std::string dir_, sink_;
  std::unique_ptr<ServerProcess> server_;
  Busi busi_;
};

TEST_F(RelayDtxTest, RowsBecomeCoordinatorMessagesToEverySubscriber) {
  Subscribe("orders", "/billing");
  Subscribe("orders", "/stock");
  RelayProcess relay({"--source", "sqlite:" + dir_ + "/app.db", "--sink", sink_, "--init",
                      "--poll-interval", "0.05"},
                     dir_ + "/relay.log");
  relay.Start();
  ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(dir_ + "/app.db"); }, 10s));
  ASSERT_TRUE(WaitFor(
      [&] { return RunDtx("status --source sqlite:" + dir_ + "/app.db").first == 0; }, 10s));
  for (int i = 1; i <= 5; ++i) {
    Sql("insert into dtx_outbox (message_id, topic, msg_key, payload, headers) values ('m" +
        std::to_string(i) + "', 'orders', 'o" + std::to_string(i % 2) + "', '{\"n\":" +
        std::to_string(i) + "}', '{\"correlation_id\":\"c" + std::to_string(i) + "\"}')");
  }
  Sql("insert into dtx_outbox (message_id, topic, payload) values ('late', 'refunds', '{}')");
  ASSERT_TRUE(
      WaitFor([&] { return busi_.CallCount("/billing") + busi_.CallCount("/stock") >= 10; }, 20s));
  for (const std::string path : {"/billing", "/stock"}) {
    std::set<std::string> ids;
    for (const BusiCall& c : busi_.Calls(path)) {
      const std::string id = c.headers.at("dtx-message-id");
      const int n = std::stoi(id.substr(1));
      ids.insert(id);
      EXPECT_EQ(c.query.at("gid"), id);  // one coordinator message per outbox message
      EXPECT_EQ(c.body, "{\"n\":" + std::to_string(n) + "}");
      EXPECT_EQ(c.headers.at("dtx-key"), "o" + std::to_string(n % 2));
      EXPECT_EQ(c.headers.at("correlation_id"), "c" + std::to_string(n));
    }
    EXPECT_EQ(ids.size(), 5u) << path;
  }
  // "refunds" has no subscriber: its row stays pending (no attempt counted), until one subscribes.
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(RunDtx("status --source sqlite:" + dir_ + "/app.db").second,
            "pending 1 published 5 parked 0\n");
  Subscribe("refunds", "/refunds");
  ASSERT_TRUE(WaitFor([&] { return busi_.CallCount("/refunds") == 1; }, 20s));
  EXPECT_EQ(relay.Terminate(), 0);
  EXPECT_EQ(RunDtx("status --source sqlite:" + dir_ + "/app.db").second,
            "pending 0 published 6 parked 0\n");
  EXPECT_EQ(busi_.CallCount("/billing"), 5u);
}

// The relay killed -9 again and again while rows are written: every row is delivered, and the
// re-publishes of rows published but not yet marked reach no subscriber twice (same gid).
TEST_F(RelayDtxTest, RelayKilledNineDeliversEveryRowOnce) {
  Subscribe("orders", "/billing");
  RelayProcess relay({"--source", "sqlite:" + dir_ + "/app.db", "--sink", sink_, "--init",
                      "--poll-interval", "0.02", "--batch", "20"},
                     dir_ + "/relay.log");
  relay.Start();
  ASSERT_TRUE(WaitFor(
      [&] { return RunDtx("status --source sqlite:" + dir_ + "/app.db").first == 0; }, 10s));
  constexpr int kRows = 400;
  std::thread writer([&] {
    for (int i = 0; i < kRows; i += 10) {
      std::string values;
      for (int j = i; j < i + 10; ++j) {
        values += std::string(values.empty() ? "" : ",") + "('r" + std::to_string(j) +
                  "', 'orders', '{}')";
      }
      Sql("insert into dtx_outbox (message_id, topic, payload) values " + values);
      std::this_thread::sleep_for(20ms);
    }
  });
  std::mt19937 rng(5);
  int kills = 0;
  for (auto until = std::chrono::steady_clock::now() + 1500ms;
       std::chrono::steady_clock::now() < until; ++kills) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 150));
    relay.Kill();
    relay.Start();
  }
  writer.join();
  ASSERT_TRUE(WaitFor([&] { return busi_.CallCount("/billing") >= kRows; }, 30s));
  EXPECT_EQ(relay.Terminate(), 0);
  std::this_thread::sleep_for(300ms);
  std::map<std::string, int> calls;
  for (const BusiCall& c : busi_.Calls("/billing")) ++calls[c.query.at("gid")];
  EXPECT_EQ(calls.size(), static_cast<size_t>(kRows));
  for (const auto& [gid, n] : calls) EXPECT_EQ(n, 1) << gid;
  EXPECT_EQ(RunDtx("status --source sqlite:" + dir_ + "/app.db").second,
            "pending 0 published " + std::to_string(kRows) + " parked 0\n");
  std::printf("%d relay kills, %d rows, %zu subscriber calls\n", kills, kRows,
              busi_.Calls("/billing").size());
}

TEST_F(RelayDtxTest, RepublishIsNotDeliveredTwiceBadInputAndCoordinatorDown) {
  Subscribe("orders", "/billing");
  auto p = brokers::OpenPublisher(sink_);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  brokers::Message m{.topic = "orders", .key = "o1", .message_id = "dup1", .payload = "{}"};
  brokers::Message bad = m;
  bad.message_id = "bad1";
  bad.headers = {{"x-evil", "a\r\nInjected: 1"}};
  std::vector<Status> r = p.value()->Publish({m, bad, m}, 5s);
  ASSERT_EQ(r.size(), 3u);
  EXPECT_TRUE(r[0].ok()) << r[0].ToString();
  EXPECT_EQ(r[1].code(), Code::kInvalidArgument) << r[1].ToString();
  EXPECT_TRUE(r[2].ok()) << r[2].ToString();  // the same gid again: resumed, not a second message
  ASSERT_TRUE(WaitFor([&] { return busi_.CallCount("/billing") >= 1; }, 10s));
  std::this_thread::sleep_for(500ms);
  r = p.value()->Publish({m}, 5s);  // once more after it succeeded: acknowledged, not delivered
  EXPECT_TRUE(r[0].ok()) << r[0].ToString();
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(busi_.CallCount("/billing"), 1u);
  EXPECT_EQ(brokers::OpenConsumer(sink_, {.group = "g", .consumer = "c", .topics = {"orders"}})
                .status()
                .code(),
            Code::kInvalidArgument);
  server_->Kill();
  r = p.value()->Publish({m, m}, 2s);
  for (const Status& s : r) EXPECT_EQ(s.code(), Code::kUnavailable) << s.ToString();
}

// A coordinator serving HTTPS with a private CA and requiring an API token: the sink dtxs:// with
// --sink-ca-file and the token (DTX_SINK_TOKEN) delivers; without the token every submit is
// answered 401, a transport failure: the rows stay pending, no attempt counted, nothing parked. A
// CA file that cannot be read, or a token for a non-dtx sink, stops the relay at once (exit 2).
TEST(RelayDtxTlsTest, HttpsCoordinatorWithAnApiTokenTakesTheSinkTokenAndCaFile) {
  const std::string dir = TempDir("relay-dtx-tls");
  const http::testing::TestCerts certs = http::testing::MakeTestCerts(dir);
  ASSERT_TRUE(certs.ok) << "openssl could not make the test certificates";
  const std::string token = "relay-token-0123456789abcdef";
  ServerProcess server(dir + "/dtx.db", {"--tls-cert", certs.cert, "--tls-key", certs.key,
                                         "--api-token", "relay=" + token});
  ASSERT_TRUE(server.Start()) << server.log_path();
  SetFetchCaFile(certs.ca);
  Busi busi;
  HttpResult sub =
      HttpFetchWithHeaders("GET", server.Api("subscribe?topic=orders&url=" + busi.Url("/billing")),
                           "", {{"Authorization", "Bearer " + token}});
  SetFetchCaFile("");
  ASSERT_EQ(sub.status, 200) << sub.body;
  const std::string sink = "dtxs://127.0.0.1:" + std::to_string(server.port());
  const std::string source = "sqlite:" + dir + "/app.db";
  const std::string status = "status --source " + source;

  std::pair<int, std::string> bad_ca =
      RunDtx("--source " + source + " --init --sink " + sink + " --sink-ca-file " + dir + "/none");
  EXPECT_EQ(bad_ca.first, 2) << bad_ca.second;
  EXPECT_NE(bad_ca.second.find("cannot read the CA file"), std::string::npos) << bad_ca.second;
  std::pair<int, std::string> not_dtx =
      RunDtx("--source " + source + " --sink redis://127.0.0.1:1 --sink-token x");
  EXPECT_EQ(not_dtx.first, 2) << not_dtx.second;

  RelayProcess no_token({"--source", source, "--sink", sink, "--sink-ca-file", certs.ca, "--init",
                         "--poll-interval", "0.05"},
                        dir + "/relay.log");
  no_token.Start();
  ASSERT_TRUE(WaitFor([&] { return RunDtx(status).first == 0; }, 10s));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir + "/app.db").c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  ASSERT_EQ(sqlite3_exec(db,
                         "insert into dtx_outbox (message_id, topic, msg_key, payload) values "
                         "('t1', 'orders', 'o1', '{}'), ('t2', 'orders', 'o1', '{}')",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  ASSERT_TRUE(WaitFor(
      [&] {
        std::ifstream in(dir + "/relay.log");
        std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        return log.find("HTTP 401") != std::string::npos;
      },
      10s));
  {
    // A 401 is this relay's configuration, not the rows': retried as a transport failure, never a
    // refusal (which counts an attempt towards parking the row).
    std::ifstream in(dir + "/relay.log");
    std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(log.find("refused row"), std::string::npos) << log;
    EXPECT_NE(log.find("retrying in"), std::string::npos) << log;
  }
  EXPECT_EQ(no_token.Terminate(), 0);
  EXPECT_EQ(RunDtx(status).second, "pending 2 published 0 parked 0\n");
  EXPECT_EQ(busi.CallCount("/billing"), 0u);

  ::setenv("DTX_SINK_TOKEN", token.c_str(), 1);  // the relay inherits it
  RelayProcess relay(
      {"--source", source, "--sink", sink, "--sink-ca-file", certs.ca, "--poll-interval", "0.05"},
      dir + "/relay.log");
  relay.Start();
  ::unsetenv("DTX_SINK_TOKEN");
  ASSERT_TRUE(WaitFor([&] { return busi.CallCount("/billing") >= 2; }, 20s));
  EXPECT_EQ(relay.Terminate(), 0);
  EXPECT_EQ(RunDtx(status).second, "pending 0 published 2 parked 0\n");
  std::set<std::string> ids;  // the coordinator delivers each message on its own: any order
  for (const BusiCall& c : busi.Calls("/billing")) ids.insert(c.headers.at("dtx-message-id"));
  EXPECT_EQ(ids, (std::set<std::string>{"t1", "t2"}));
  EXPECT_EQ(server.Terminate(), 0);
}

// A fake coordinator (Busi answering /api/dtmsvr/submit) for the sink's per-key order.
class DtxSinkOrderTest : public ::testing::Test {
 protected:
  std::unique_ptr<brokers::Publisher> Open() {
    const std::string url = fake_.Url("");  // http://127.0.0.1:PORT
    auto p = brokers::OpenPublisher("dtx://" + url.substr(url.find("//") + 2));
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return p.ok() ? std::move(p.value()) : nullptr;
  }
  // The gid of a submit call.
  static std::string Gid(const BusiCall& c) {
    return std::string(boost::json::parse(c.body).as_object().at("gid").as_string());
  }
  static std::vector<brokers::Message> Batch(int n, int keys) {
    std::vector<brokers::Message> batch;
    for (int i = 0; i < n; ++i) {
      batch.push_back({.topic = "orders",
                       .key = "k" + std::to_string(i % keys),
                       .message_id = "m" + std::to_string(i),
                       .payload = "{}"});
    }
    return batch;
  }
  static constexpr const char* kSubmit = "/api/dtmsvr/submit";
  Busi fake_;
};

// Each submit takes 30 ms: a key's next message must start only after the previous one's answer,
// while messages of different keys still go in parallel.
TEST_F(DtxSinkOrderTest, AKeysNextMessageIsSubmittedOnlyAfterThePreviousIsAcknowledged) {
  fake_.SetDefault(kSubmit, {200, R"({"dtm_result":"SUCCESS"})", 30});
  auto p = Open();
  ASSERT_NE(p, nullptr);
  const std::vector<brokers::Message> batch = Batch(48, 4);
  std::vector<Status> r = p->Publish(batch, 20s);
  ASSERT_EQ(r.size(), batch.size());
  for (const Status& s : r) EXPECT_TRUE(s.ok()) << s.ToString();
  std::map<std::string, BusiCall> by_gid;
  for (const BusiCall& c : fake_.Calls(kSubmit)) by_gid[Gid(c)] = c;
  ASSERT_EQ(by_gid.size(), batch.size());
  for (size_t i = 4; i < batch.size(); ++i) {  // m(i-4) is the same key's previous message
    const BusiCall& prev = by_gid.at("m" + std::to_string(i - 4));
    const BusiCall& next = by_gid.at("m" + std::to_string(i));
    EXPECT_GE(next.start, prev.end) << "m" << i << " submitted before m" << i - 4 << " was acked";
  }
  EXPECT_GE(fake_.MaxConcurrent(), 2);  // the four keys overlap
  EXPECT_LE(fake_.MaxConcurrent(), 4);
}

// A transport failure of a key's message (here: a topic without subscribers, fate "pending") holds
// the key's later messages back, unsubmitted; the other key is published.
TEST_F(DtxSinkOrderTest, ATransportFailureHoldsBackTheKeysLaterMessages) {
  fake_.Script(kSubmit, {{400, R"({"message":"topic not found"})", 0}});
  fake_.SetDefault(kSubmit, {200, R"({"dtm_result":"SUCCESS"})", 10});
  auto p = Open();
  ASSERT_NE(p, nullptr);
  const std::vector<brokers::Message> batch = Batch(6, 2);  // k0: m0 m2 m4, k1: m1 m3 m5
  std::vector<Status> r = p->Publish(batch, 20s);
  ASSERT_EQ(r.size(), 6u);
  const std::vector<BusiCall> calls = fake_.Calls(kSubmit);
  ASSERT_EQ(calls.size(), 4u);  // the failed key's first message, the other key's three
  const int failed = std::stoi(Gid(calls[0]).substr(1)) % 2;  // the first call got the 400
  for (int i = 0; i < 6; ++i) {
    if (i % 2 == failed) {
      EXPECT_EQ(r[i].code(), Code::kUnavailable) << i << ": " << r[i].ToString();
    } else {
      EXPECT_TRUE(r[i].ok()) << i << ": " << r[i].ToString();
    }
  }
  EXPECT_NE(r[failed + 2].message().find("held back"), std::string::npos)
      << r[failed + 2].message();
}

}  // namespace
}  // namespace dtx::testing
