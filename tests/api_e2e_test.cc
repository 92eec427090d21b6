// End-to-end tests of the coordinator API, envelope, bad input and limits (PROTOCOL.md §2, §5
// #9-10, §6 API-*), against the real `dtx server` binary.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "tests/support/harness.h"

namespace dtx::testing {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;

// A raw TCP connection to 127.0.0.1:port, for half-sent requests and connection limits.
class RawConn {
 public:
  explicit RawConn(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~RawConn() { ::close(fd_); }
  bool connected() const { return connected_; }
  void Send(const std::string& s) { (void)::send(fd_, s.data(), s.size(), MSG_NOSIGNAL); }
  // Reads until the peer closes or the 5 s receive timeout.
  std::string ReadAll() {
    std::string out;
    char buf[4096];
    for (;;) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

class ApiE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(TempDir("api"));
    server_ = new ServerProcess(
        *dir_ + "/dtx.db", {"--retry-interval", "0.3", "--cron-interval", "0.1", "--max-body-bytes",
                            "200000", "--read-timeout", "0.5", "--log-level", "warn"});
    ASSERT_TRUE(server_->Start());
    busi_ = new Busi();
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(server_->Terminate(), 0);
    delete busi_;
    delete server_;
    delete dir_;
  }
  static HttpResult Post(const std::string& op, const std::string& body) {
    return HttpFetch("POST", server_->Api(op), body);
  }
  static HttpResult Get(const std::string& op) { return HttpFetch("GET", server_->Api(op)); }
  static std::string Gid(const std::string& base) {
    return base + "-" + std::to_string(counter_++);
  }

  static std::string* dir_;
  static ServerProcess* server_;
  static Busi* busi_;
  static int counter_;
};
std::string* ApiE2E::dir_ = nullptr;
ServerProcess* ApiE2E::server_ = nullptr;
Busi* ApiE2E::busi_ = nullptr;
int ApiE2E::counter_ = 0;

TEST_F(ApiE2E, Api01NewGidIsUnique) {
  std::set<std::string> gids;
  for (int i = 0; i < 1000; ++i) {
    auto r = Get("newGid");
    ASSERT_EQ(r.status, 200);
    json::value v = json::parse(r.body);
    EXPECT_EQ(v.at("dtm_result").as_string(), "SUCCESS");
    std::string gid(v.at("gid").as_string());
    ASSERT_FALSE(gid.empty());
    ASSERT_LE(gid.size(), 64u);
    for (char c : gid) ASSERT_TRUE(std::isalnum(static_cast<unsigned char>(c))) << gid;
    gids.insert(gid);
  }
  EXPECT_EQ(gids.size(), 1000u);
}

TEST_F(ApiE2E, Api02To05EnvelopeAndLenientDecoding) {
  std::string gid = Gid("env");
  // Upper-case keys, passthrough_headers, null custom_data, an unknown key.
  json::object o{{"GID", gid},
                 {"Trans_Type", "saga"},
                 {"passthrough_headers", json::array{}},
                 {"custom_data", nullptr},
                 {"unknown_key", 5},
                 {"steps", json::array{json::object{{"action", busi_->Url("/env/a")},
                                                    {"compensate", busi_->Url("/env/c")}}}},
                 {"payloads", json::array{"p"}},
                 {"wait_result", true}};
  auto r = Post("submit", json::serialize(o));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, R"({"dtm_result":"SUCCESS"})");
  auto again = Post("submit", json::serialize(o));
  EXPECT_EQ(again.status, 409);
  json::value v = json::parse(again.body);
  EXPECT_EQ(v.at("dtm_result").as_string(), "FAILURE");
  EXPECT_FALSE(v.at("message").as_string().empty());
}

TEST_F(ApiE2E, Api06BadInputIs400AndNothingPersisted) {
  const std::string gid = Gid("bad");
  const std::string step =
      R"("steps":[{"action":"http://127.0.0.1:1/a","compensate":""}],"payloads":["x"])";
  std::vector<std::string> bodies = {
      "{not json",
      "[]",
      R"({"gid":")" + gid + R"(","trans_type":"saga","retry_interval":"3",)" + step + "}",
      R"({"gid":")" + gid + R"(","trans_type":"saga","retry_interval":1.5,)" + step + "}",
      R"({"gid":")" + gid + R"(","trans_type":"saga","steps":"x"})",
      R"({"gid":")" + gid + R"(","trans_type":"saga","payloads":[1],"steps":[]})",
      R"({"gid":"","trans_type":"saga",)" + step + "}",
      R"({"gid":42,"trans_type":"saga",)" + step + "}",
      R"({"gid":")" + gid + R"(","trans_type":"sagax",)" + step + "}",
      R"({"gid":")" + gid + R"(",)" + step + "}",
      R"({"gid":")" + gid +
          R"(","trans_type":"saga","steps":[{"action":"http://x/a"},{"action":"http://x/b"}],"payloads":["only one"]})",
      R"({"gid":")" + gid +
          R"(","trans_type":"saga","steps":[{"action":"ftp://x/a"}],"payloads":["x"]})",
      R"({"gid":")" + gid + R"(","trans_type":"saga","custom_data":"{bad",)" + step + "}",
      R"({"gid":")" + std::string(129, 'g') + R"(","trans_type":"saga",)" + step + "}",
  };
  for (const auto& b : bodies) {
    auto r = Post("submit", b);
    EXPECT_EQ(r.status, 400) << b << " -> " << r.body;
    json::value v = json::parse(r.body);
    EXPECT_TRUE(v.as_object().contains("message")) << r.body;
  }
  EXPECT_FALSE(QueryTrans(*server_, gid).found);
  auto list = json::parse(Get("all?gid=" + gid).body);
  EXPECT_TRUE(list.at("transactions").as_array().empty());
}

TEST_F(ApiE2E, Api09QueryUnknownAndMissingGid) {
  auto r = Get("query?gid=nope-unknown");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body), json::parse(R"({"transaction":null,"branches":[]})"));
  EXPECT_EQ(Get("query").status, 400);
}

TEST_F(ApiE2E, Api10QueryRecordShape) {
  std::string gid = Gid("shape");
  auto r = Post("submit", SagaBody(gid, {{busi_->Url("/shape/a"), busi_->Url("/shape/c")}},
                                   {"{\"amount\":30}"}, {{"wait_result", true}}));
  ASSERT_EQ(r.status, 200);
  json::value v = json::parse(Get("query?gid=" + gid).body);
  const auto& t = v.at("transaction").as_object();
  EXPECT_TRUE(t.at("options").is_string());
  EXPECT_TRUE(t.at("concurrent").is_bool());
  EXPECT_TRUE(t.contains("id"));
  std::string ct(t.at("create_time").as_string());
  EXPECT_EQ(ct.back(), 'Z');
  const auto& b = v.at("branches").as_array();
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0].at("op").as_string(), "compensate");
  EXPECT_EQ(b[1].at("op").as_string(), "action");
  EXPECT_LT(b[0].at("id").to_number<int64_t>(), b[1].at("id").to_number<int64_t>());
  EXPECT_EQ(b[1].at("bin_data").as_string(), "eyJhbW91bnQiOjMwfQ==");
}

TEST_F(ApiE2E, Api11AllPagesAndFilters) {
  std::string prefix = Gid("all");
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(Post("submit", SagaBody(prefix + "-" + std::to_string(i), {{"", ""}}, {"x"},
                                      {{"wait_result", true}}))
                  .status,
              200);
  }
  std::vector<std::string> seen;
  std::string position;
  for (int page = 0; page < 10; ++page) {
    auto r = Get("all?limit=2&status=succeed&transType=saga" +
                 (position.empty() ? std::string() : "&position=" + position));
    ASSERT_EQ(r.status, 200) << r.body;
    json::value v = json::parse(r.body);
    for (const auto& t : v.at("transactions").as_array())
      seen.emplace_back(t.at("gid").as_string());
    position = std::string(v.at("next_position").as_string());
    if (position.empty()) break;
  }
  // Descending id: the newest first.
  std::vector<std::string> ours;
  for (auto& g : seen) {
    if (g.rfind(prefix + "-", 0) == 0) ours.push_back(g);
  }
  ASSERT_EQ(ours.size(), 5u);
  EXPECT_EQ(ours.front(), prefix + "-4");
  EXPECT_EQ(ours.back(), prefix + "-0");
  auto none = json::parse(Get("all?status=aborting&transType=tcc").body);
  EXPECT_TRUE(none.at("transactions").as_array().empty());
  auto future = json::parse(Get("all?createTimeStart=99999999999999").body);
  EXPECT_TRUE(future.at("transactions").as_array().empty());
  EXPECT_EQ(Get("all?limit=abc").status, 400);
  EXPECT_EQ(Get("all?position=xyz").status, 400);
}

TEST_F(ApiE2E, Api12ForceStop) {
  std::string gid = Gid("stop");
  busi_->SetDefault("/stop/a", BusiAnswer::Ongoing());
  ASSERT_EQ(Post("submit", SagaBody(gid, {{busi_->Url("/stop/a"), busi_->Url("/stop/c")}}, {"x"},
                                    {{"retry_interval", 60}, {"wait_result", true}}))
                .status,
            409);
  auto r = Post("forceStop", json::serialize(json::object{{"gid", gid}}));
  ASSERT_EQ(r.status, 200) << r.body;
  TransView v = QueryTrans(*server_, gid);
  EXPECT_EQ(v.status, "failed");
  EXPECT_EQ(v.rollback_reason, "force stopped by operator");
  EXPECT_EQ(busi_->CallCount("/stop/c"), 0u) << "forceStop calls no branch";
  auto again = Post("forceStop", json::serialize(json::object{{"gid", gid}}));
  EXPECT_EQ(again.status, 409);
  EXPECT_NE(again.body.find("force stop error. status: failed"), std::string::npos);
  EXPECT_EQ(Post("forceStop", R"({"gid":"unknown-gid-x"})").status, 404);
}

TEST_F(ApiE2E, Api13And14CronResets) {
  std::string gid = Gid("cron");
  busi_->Script("/cron/a", {BusiAnswer::Error()});
  ASSERT_NE(Post("submit", SagaBody(gid, {{busi_->Url("/cron/a"), ""}}, {"x"},
                                    {{"retry_interval", 300}, {"wait_result", true}}))
                .status,
            200);
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(QueryTrans(*server_, gid).status, "submitted");
  // resetCronTime?timeout=100 touches it (due in ~600 s > 100 s).
  auto r = Get("resetCronTime?timeout=100&limit=1000");
  ASSERT_EQ(r.status, 200) << r.body;
  json::value v = json::parse(r.body);
  EXPECT_GE(v.at("succeed_count").to_number<int64_t>(), 1);
  EXPECT_FALSE(v.at("has_remaining").as_bool());
  EXPECT_EQ(WaitStatus(*server_, gid, {"succeed"}, milliseconds(3000)).status, "succeed");
  EXPECT_EQ(Post("resetNextCronTime", R"({"gid":"unknown-gid-y"})").status, 404);
  EXPECT_EQ(Post("resetNextCronTime", json::serialize(json::object{{"gid", gid}})).status, 200)
      << "a final transaction: 200 without change";
}

// Time arguments near the int64 limit saturate (they used to overflow: UB, and in practice a
// negative createTimeEnd that matched nothing and a resetCronTime that reset every transaction).
TEST_F(ApiE2E, Api11And13HugeTimeArgumentsSaturate) {
  std::string gid = Gid("huge");
  busi_->Script("/huge/a", {BusiAnswer::Error()});
  ASSERT_NE(Post("submit", SagaBody(gid, {{busi_->Url("/huge/a"), ""}}, {"x"},
                                    {{"retry_interval", 300}, {"wait_result", true}}))
                .status,
            200);
  auto all = Get("all?gid=" + gid + "&createTimeEnd=9223372036854775807");
  ASSERT_EQ(all.status, 200) << all.body;
  EXPECT_EQ(json::parse(all.body).at("transactions").as_array().size(), 1u) << all.body;
  // Due in ~600 s, not after the end of time: nothing to reset.
  auto r = Get("resetCronTime?timeout=9223372036854775807&limit=1000");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body).at("succeed_count").to_number<int64_t>(), 0);
  EXPECT_EQ(QueryTrans(*server_, gid).status, "submitted");
  Post("forceStop", json::serialize(json::object{{"gid", gid}}));
}

TEST_F(ApiE2E, Api16PingVersionMetrics) {
  auto ping = HttpFetch("GET", server_->Base() + "/api/ping");
  EXPECT_EQ(ping.status, 200);
  EXPECT_EQ(json::parse(ping.body), json::parse(R"({"msg":"pong"})"));
  auto version = Get("version");
  EXPECT_EQ(version.status, 200);
  EXPECT_NE(version.body.find("dtx-"), std::string::npos);
  auto metrics = HttpFetch("GET", server_->Base() + "/api/metrics");
  EXPECT_EQ(metrics.status, 200);
  for (const char* f : {"dtm_server_info", "dtm_server_process_total",
                        "dtm_server_response_duration", "dtm_transaction_process_total",
                        "dtm_transaction_handled_duration", "dtm_branch_process_total"}) {
    EXPECT_NE(metrics.body.find(f), std::string::npos) << f;
  }
}

TEST_F(ApiE2E, ModesOfLaterIssuesAnswer501AndSagaPrepareIs400) {
  EXPECT_EQ(Post("prepare", R"({"gid":"p1","trans_type":"saga"})").status, 400);
  EXPECT_EQ(Post("prepare", R"({"gid":"p2","trans_type":"workflow"})").status, 501);
  EXPECT_EQ(Post("prepareWorkflow", R"({"gid":"p2","trans_type":"workflow"})").status, 501);
  EXPECT_EQ(
      Post("registerBranch", R"({"gid":"p2","trans_type":"workflow","branch_id":"01"})").status,
      501);
  auto topic =
      Post("submit",
           R"({"gid":"p3","trans_type":"msg","steps":[{"action":"topic://t"}],"payloads":["x"]})");
  EXPECT_EQ(topic.status, 400) << topic.body;
  EXPECT_NE(topic.body.find("topic not found"), std::string::npos) << topic.body;
  EXPECT_EQ(Post("abort", R"({"gid":"never-there"})").status, 404);
  EXPECT_EQ(Get("nosuchroute").status, 404);
}

TEST_F(ApiE2E, AbortOfASagaIs409) {
  std::string gid = Gid("abort");
  ASSERT_EQ(Post("submit", SagaBody(gid, {{"", ""}}, {"x"}, {{"wait_result", true}})).status, 200);
  auto r = Post("abort", json::serialize(json::object{{"gid", gid}, {"trans_type", "saga"}}));
  EXPECT_EQ(r.status, 409);
  EXPECT_NE(r.body.find("trans type: 'saga' current status 'succeed', cannot abort"),
            std::string::npos)
      << r.body;
}

TEST_F(ApiE2E, Api18BodyAndFieldLimits) {
  std::string gid = Gid("big");
  std::string huge(300000, 'x');
  auto r = Post("submit", SagaBody(gid, {{"", ""}}, {huge}));
  EXPECT_EQ(r.status, 413) << r.body.substr(0, 200);
  EXPECT_FALSE(QueryTrans(*server_, gid).found);
  std::string long_url = "http://127.0.0.1:1/" + std::string(1100, 'u');
  r = Post("submit", SagaBody(gid, {{long_url, ""}}, {"x"}));
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_FALSE(QueryTrans(*server_, gid).found);
  // The server keeps serving.
  EXPECT_EQ(HttpFetch("GET", server_->Base() + "/api/ping").status, 200);
}

TEST_F(ApiE2E, StalledClientIsCutOffAndOthersAreServed) {
  RawConn stalled(server_->port());
  ASSERT_TRUE(stalled.connected());
  stalled.Send(
      "POST /api/dtmsvr/submit HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"gid\":");
  // While it stalls, others are served.
  EXPECT_EQ(HttpFetch("GET", server_->Base() + "/api/ping").status, 200);
  auto start = std::chrono::steady_clock::now();
  std::string answer = stalled.ReadAll();  // the server closes it after --read-timeout 0.5 s
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_LT(waited, std::chrono::seconds(4));
  EXPECT_TRUE(answer.empty() || answer.find("408") != std::string::npos) << answer;
  EXPECT_EQ(HttpFetch("GET", server_->Base() + "/api/ping").status, 200);
}

TEST_F(ApiE2E, TruncatedBodyIs400) {
  RawConn c(server_->port());
  ASSERT_TRUE(c.connected());
  c.Send("POST /api/dtmsvr/submit HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{\"gid");
  std::string answer = c.ReadAll();
  EXPECT_NE(answer.find("400"), std::string::npos) << answer;
}

// A route of /api/dtmsvr/ asked with another method: 405 with the Allow header (RFC 9110
// §15.5.6) naming the one it answers, and nothing done.
TEST_F(ApiE2E, WrongMethodIs405WithAllow) {
  const std::string gid = Gid("405");
  const std::string saga = SagaBody(gid, {{"", ""}}, {"x"});
  struct Case {
    std::string route;
    std::string allow;
    std::vector<std::string> methods;
  };
  const std::vector<Case> cases = {
      {"prepare", "POST", {"GET", "PUT", "DELETE"}},
      {"submit", "POST", {"GET", "PUT", "DELETE"}},
      {"abort", "POST", {"GET", "PUT"}},
      {"forceStop", "POST", {"GET", "DELETE"}},
      {"resetNextCronTime", "POST", {"GET"}},
      {"registerBranch", "POST", {"GET", "PUT"}},
      {"registerTccBranch", "POST", {"GET"}},
      {"registerXaBranch", "POST", {"GET"}},
      {"query?gid=" + gid, "GET", {"POST", "DELETE"}},
      {"all", "GET", {"POST", "PUT"}},
      {"resetCronTime", "GET", {"POST"}},
      {"subscribe?topic=t405&url=http://127.0.0.1:1/x", "GET", {"POST"}},
      {"unsubscribe?topic=t405&url=http://127.0.0.1:1/x", "GET", {"POST"}},
      {"scanKV?cat=topics", "GET", {"POST"}},
      {"queryKV?cat=topics&key=t405", "GET", {"POST"}},
      {"topic/t405", "DELETE", {"GET", "POST"}},
  };
  for (const Case& c : cases) {
    for (const std::string& method : c.methods) {
      // A body that the right method would accept: the 405 comes before it is read.
      HttpResult r = HttpFetch(method, server_->Api(c.route), c.allow == "POST" ? saga : "");
      EXPECT_EQ(r.status, 405) << method << " " << c.route << ": " << r.body;
      EXPECT_EQ(r.Header("Allow"), c.allow) << method << " " << c.route;
      EXPECT_NE(r.body.find("METHOD_NOT_ALLOWED"), std::string::npos) << r.body;
    }
  }
  EXPECT_FALSE(QueryTrans(*server_, gid).found) << "no 405 created the saga";
  EXPECT_EQ(Get("queryKV?cat=topics&key=t405").body.find("t405"), std::string::npos)
      << "no 405 subscribed";
}

// How many label sets the request families hold in a /api/metrics text.
size_t RequestSeries(const std::string& text) {
  size_t n = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("dtm_server_process_total{") ||
        line.starts_with("dtm_server_response_duration_count{")) {
      ++n;
    }
  }
  return n;
}

// The request metrics are labelled by route name or template, never by request text: distinct
// unknown paths, topic names, notification ids and saga names add no series.
TEST_F(ApiE2E, MetricsLabelsStayAFixedSet) {
  auto metrics = [] { return HttpFetch("GET", server_->Base() + "/api/metrics").body; };
  auto scan = [](const std::string& round) {
    for (int i = 0; i < 50; ++i) {
      const std::string n = round + std::to_string(i);
      EXPECT_EQ(Get("no-such-route-" + n).status, 404);
      EXPECT_EQ(HttpFetch("DELETE", server_->Api("topic/scan-topic-" + n)).status, 404);
      EXPECT_EQ(HttpFetch("GET", server_->Base() + "/scan-path-" + n).status, 404);
      EXPECT_EQ(HttpFetch("GET", server_->Base() + "/api/dtx/notify/scan-id-" + n).status, 404);
      EXPECT_EQ(HttpFetch("GET", server_->Base() + "/api/dtx/sagas/scan-saga-" + n).status, 404);
    }
  };
  (void)metrics();  // the metrics route's own series exists from here on
  scan("a");
  const std::string first = metrics();
  const size_t after_first = RequestSeries(first);
  scan("b");
  const std::string second = metrics();
  EXPECT_EQ(RequestSeries(second), after_first) << second;
  for (const char* raw : {"no-such-route", "scan-topic", "scan-path", "scan-id", "scan-saga"}) {
    EXPECT_EQ(second.find(raw), std::string::npos) << raw << " is request text, not a label";
  }
  EXPECT_NE(second.find("api=\"topic/{name}\",status=\"fail\""), std::string::npos) << second;
  EXPECT_NE(second.find("api=\"unknown\",status=\"fail\""), std::string::npos) << second;
}

// Limits that need their own server.
TEST(ApiLimitsE2E, ConnectionLimitAnswers503) {
  std::string dir = TempDir("connlimit");
  ServerProcess server(dir + "/dtx.db", {"--max-connections", "4", "--log-level", "warn"});
  ASSERT_TRUE(server.Start());
  std::vector<std::unique_ptr<RawConn>> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(std::make_unique<RawConn>(server.port()));
    ASSERT_TRUE(held.back()->connected());
  }
  std::this_thread::sleep_for(milliseconds(200));
  RawConn extra(server.port());
  extra.Send("GET /api/ping HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string answer = extra.ReadAll();
  EXPECT_NE(answer.find("503"), std::string::npos) << answer;
  held.clear();
  EXPECT_TRUE(WaitFor([&] { return HttpFetch("GET", server.Base() + "/api/ping").status == 200; },
                      milliseconds(3000)));
  EXPECT_EQ(server.Terminate(), 0);
}

TEST(ApiLimitsE2E, InFlightTransactionLimitAnswers503BeforePersisting) {
  std::string dir = TempDir("activelimit");
  ServerProcess server(dir + "/dtx.db", {"--max-active", "2", "--log-level", "warn"});
  ASSERT_TRUE(server.Start());
  Busi busi;
  busi.SetDefault("/slow", BusiAnswer{200, R"({"dtm_result":"SUCCESS"})", 1500});
  for (int i = 0; i < 2; ++i) {
    auto r = HttpFetch("POST", server.Api("submit"),
                       SagaBody("held-" + std::to_string(i), {{busi.Url("/slow"), ""}}, {"x"}));
    ASSERT_EQ(r.status, 200) << r.body;
  }
  auto refused = HttpFetch("POST", server.Api("submit"),
                           SagaBody("refused", {{busi.Url("/slow"), ""}}, {"x"}));
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_FALSE(QueryTrans(server, "refused").found);
  EXPECT_EQ(WaitStatus(server, "held-0", {"succeed"}).status, "succeed");
  EXPECT_EQ(WaitStatus(server, "held-1", {"succeed"}).status, "succeed");
  EXPECT_TRUE(WaitFor(
      [&] {
        return HttpFetch("POST", server.Api("submit"),
                         SagaBody("later", {{busi.Url("/slow"), ""}}, {"x"}))
                   .status == 200;
      },
      milliseconds(5000)));
  EXPECT_EQ(server.Terminate(), 0);
}

TEST(ServerCliE2E, BadFlagsFailClearly) {
  std::string dir = TempDir("cli");
  ServerProcess bad_store(dir + "/x.db", {"--store", "mysql://nope"});
  EXPECT_FALSE(bad_store.Start(std::chrono::seconds(5)));
  ServerProcess bad_listen(dir + "/y.db", {"--listen", "nonsense"});
  EXPECT_FALSE(bad_listen.Start(std::chrono::seconds(5)));
  {
    std::ofstream cfg(dir + "/bad.toml");
    cfg << "no-such-setting = 1\n";
  }
  ServerProcess bad_config(dir + "/z.db", {"--config", dir + "/bad.toml"});
  EXPECT_FALSE(bad_config.Start(std::chrono::seconds(5)));
}

// Each refused setting: exit status 2 and a message naming it, before any store is created.
TEST(ServerCliE2E, BadSettingsExitWithTheReason) {
  std::string dir = TempDir("cli-reasons");
  auto run = [&](const std::string& args) {
    // `timeout`: a server that wrongly accepted the setting would run until killed (status 124).
    const std::string listen =
        args.find("--listen") == std::string::npos ? " --listen 127.0.0.1:0" : "";
    std::string cmd = "timeout 10 " + DtxBinary() + " server" + listen + " --store sqlite:" + dir +
                      "/never.db " + args + " 2>&1";
    FILE* f = ::popen(cmd.c_str(), "r");
    std::string out;
    char buf[512];
    while (f != nullptr && std::fgets(buf, sizeof buf, f) != nullptr) out += buf;
    int st = f != nullptr ? ::pclose(f) : -1;
    return std::make_pair(WIFEXITED(st) ? WEXITSTATUS(st) : -1, out);
  };
  const std::pair<const char*, const char*> cases[] = {
      {"--log-level loud", "unknown --log-level 'loud'"},
      {"--listen 127.0.0.1:70000", "--listen: invalid port in '127.0.0.1:70000'"},
      {"--retry-interval 0", "durations must be positive seconds"},
      {"--cron-interval -1", "durations must be positive seconds"},
      {"--max-retry-limit -1", "--max-retry-limit must be >= 0"},
      {"--check-back-policy sometimes", "--check-back-policy must be guarded or legacy"},
  };
  for (const auto& [args, reason] : cases) {
    auto [code, out] = run(args);
    EXPECT_EQ(code, 2) << args << ": " << out;
    EXPECT_NE(out.find(reason), std::string::npos) << args << ": " << out;
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/never.db")) << "a refused start created the store";
}

TEST(ServerCliE2E, ConfigFileAndEnvironment) {
  std::string dir = TempDir("config");
  {
    std::ofstream cfg(dir + "/dtx.toml");
    cfg << "max-body-bytes = 1000\nlog-level = \"warn\"\n";
  }
  // The config file limits bodies to 1000 bytes.
  ServerProcess from_file(dir + "/a.db", {"--config", dir + "/dtx.toml"});
  ASSERT_TRUE(from_file.Start());
  std::string body_1500 = SagaBody("cfg-1", {{"", ""}}, {std::string(1500, 'x')});
  std::string body_700 = SagaBody("cfg-2", {{"", ""}}, {std::string(700, 'x')});
  EXPECT_EQ(HttpFetch("POST", from_file.Api("submit"), body_1500).status, 413);
  EXPECT_EQ(HttpFetch("POST", from_file.Api("submit"), body_700).status, 200);
  EXPECT_EQ(from_file.Terminate(), 0);
  // DTX_* environment variables override the file.
  ::setenv("DTX_MAX_BODY_BYTES", "500", 1);
  ServerProcess from_env(dir + "/b.db", {"--config", dir + "/dtx.toml"});
  bool started = from_env.Start();
  ::unsetenv("DTX_MAX_BODY_BYTES");
  ASSERT_TRUE(started);
  EXPECT_EQ(HttpFetch("POST", from_env.Api("submit"), body_700).status, 413);
  EXPECT_EQ(from_env.Terminate(), 0);
}

}  // namespace
}  // namespace dtx::testing
