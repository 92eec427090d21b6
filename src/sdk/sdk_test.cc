// Tests of libdtx: the saga body, the participant server (routes, result codes, identity from the
// query, back-pressure), and the coordinator client against a fake coordinator on 127.0.0.1:0.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dtx/client.h"
#include "dtx/notify.h"
#include "dtx/participant.h"
#include "dtx/saga.h"
#include "http/http_test_util.h"

namespace dtx {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using http::testing::RawConn;

json::object ParseObject(const std::string& s) { return json::parse(s).as_object(); }

std::string Get(const std::string& target) {
  return "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
}
std::string Post(const std::string& target, const std::string& body,
                 const std::string& extra_headers = "") {
  return "POST " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
         extra_headers + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

// ---------------------------------------------------------------------------------------------------
// Saga::BuildBody

TEST(SagaBody, SequentialMatchesDtmcliShape) {
  Client client("http://127.0.0.1:1/api/dtmsvr");
  Saga saga(client, "g1");
  saga.Add("http://busi/api/TransOut", "http://busi/api/TransOutRevert", R"({"amount":30})")
      .Add("http://busi/api/TransIn", "http://busi/api/TransInRevert", R"({"amount":30})");
  EXPECT_EQ(
      saga.BuildBody(),
      R"({"gid":"g1","trans_type":"saga","steps":[)"
      R"({"action":"http://busi/api/TransOut","compensate":"http://busi/api/TransOutRevert"},)"
      R"({"action":"http://busi/api/TransIn","compensate":"http://busi/api/TransInRevert"}],)"
      R"("payloads":["{\"amount\":30}","{\"amount\":30}"]})");
  json::object body = ParseObject(saga.BuildBody());
  EXPECT_FALSE(body.contains("custom_data"));
  EXPECT_FALSE(body.contains("wait_result"));
  EXPECT_FALSE(body.contains("branch_headers"));
}

TEST(SagaBody, ConcurrentWithOrdersGoesToCustomData) {
  Client client("http://127.0.0.1:1/api/dtmsvr");
  Saga saga(client, "g2");
  saga.Add("http://a/1", "http://a/1c", "{}")
      .Add("http://a/2", "http://a/2c", "{}")
      .Add("http://a/3", "http://a/3c", "{}")
      .AddBranchOrder(2, {0, 1});
  json::object body = ParseObject(saga.BuildBody());
  ASSERT_TRUE(body.at("custom_data").is_string());
  // custom_data is a JSON string, not an object (PROTOCOL.md §1.3).
  EXPECT_EQ(body.at("custom_data").as_string(), R"({"concurrent":true,"orders":{"2":[0,1]}})");
  EXPECT_FALSE(body.contains("concurrent"));
}

TEST(SagaBody, ConcurrentWithoutOrders) {
  Client client("http://127.0.0.1:1/api/dtmsvr");
  Saga saga(client, "g3");
  saga.Add("http://a/1", "", "").EnableConcurrent();
  json::object body = ParseObject(saga.BuildBody());
  EXPECT_EQ(body.at("custom_data").as_string(), R"({"concurrent":true,"orders":{}})");
  EXPECT_EQ(body.at("steps").as_array().at(0).as_object().at("compensate").as_string(), "");
  EXPECT_EQ(body.at("payloads").as_array().at(0).as_string(), "");
}

TEST(SagaBody, OptionsUseProtocolKeys) {
  Client client("http://127.0.0.1:1/api/dtmsvr");
  Saga saga(client, "g4");
  saga.Add("http://a/1", "http://a/1c", "x")
      .SetWaitResult(true)
      .SetTimeoutToFail(60)
      .SetRetryInterval(15)
      .SetRequestTimeout(5)
      .SetRetryLimit(2)
      .SetBranchHeaders({{"test_header", "test"}, {"Authorization", "Bearer t"}});
  json::object body = ParseObject(saga.BuildBody());
  EXPECT_EQ(body.at("wait_result"), json::value(true));
  EXPECT_EQ(body.at("timeout_to_fail").as_int64(), 60);
  EXPECT_EQ(body.at("retry_interval").as_int64(), 15);
  EXPECT_EQ(body.at("request_timeout").as_int64(), 5);
  EXPECT_EQ(body.at("retry_limit").as_int64(), 2);
  const json::object& headers = body.at("branch_headers").as_object();
  EXPECT_EQ(headers.at("test_header").as_string(), "test");
  EXPECT_EQ(headers.at("Authorization").as_string(), "Bearer t");
  EXPECT_EQ(headers.size(), 2u);
}

TEST(SagaBody, PayloadIsSentVerbatimEvenWhenNotJson) {
  Client client("http://127.0.0.1:1/api/dtmsvr");
  Saga saga(client, "g5");
  saga.Add("http://a/1", "http://a/1c", "line1\n\"quoted\" \\ end");
  json::object body = ParseObject(saga.BuildBody());
  EXPECT_EQ(body.at("payloads").as_array().at(0).as_string(), "line1\n\"quoted\" \\ end");
}

TEST(SagaSubmit, InvalidSagasFailBeforeSending) {
  // Port 1: nothing listens, so any attempt to send would give kUnavailable, not kInvalidArgument.
  Client client("http://127.0.0.1:1/api/dtmsvr");
  {
    Saga empty(client, "g");
    EXPECT_EQ(empty.Submit().code(), Code::kInvalidArgument);
  }
  {
    Saga out_of_range(client, "g");
    out_of_range.Add("http://a/1", "", "").AddBranchOrder(1, {0});
    EXPECT_EQ(out_of_range.Submit().code(), Code::kInvalidArgument);
  }
  {
    Saga bad_prerequisite(client, "g");
    bad_prerequisite.Add("http://a/1", "", "").Add("http://a/2", "", "").AddBranchOrder(1, {5});
    EXPECT_EQ(bad_prerequisite.Submit().code(), Code::kInvalidArgument);
  }
  {
    Saga cycle(client, "g");
    cycle.Add("http://a/1", "", "")
        .Add("http://a/2", "", "")
        .Add("http://a/3", "", "")
        .AddBranchOrder(0, {2})
        .AddBranchOrder(1, {0})
        .AddBranchOrder(2, {1});
    Status s = cycle.Submit();
    EXPECT_EQ(s.code(), Code::kInvalidArgument);
    EXPECT_NE(s.message().find("cycle"), std::string::npos) << s.ToString();
  }
  {
    Saga dag(client, "g");
    dag.Add("http://a/1", "", "").Add("http://a/2", "", "").Add("http://a/3", "", "");
    dag.AddBranchOrder(2, {0, 1}).AddBranchOrder(1, {0});
    EXPECT_EQ(dag.Submit().code(), Code::kUnavailable);  // valid: it was sent (nobody listens)
  }
  {
    Saga negative(client, "g");
    negative.Add("http://a/1", "", "").SetRetryLimit(-1);
    EXPECT_EQ(negative.Submit().code(), Code::kInvalidArgument);
  }
}

// ---------------------------------------------------------------------------------------------------
// ParticipantServer

TEST(BranchResultTest, FactoriesProduceWhatTheCoordinatorClassifies) {
  EXPECT_EQ(BranchResult::Success().status, 200);
  EXPECT_EQ(BranchResult::Success().body, R"({"dtm_result":"SUCCESS"})");
  BranchResult f = BranchResult::Failure("out of \"stock\"");
  EXPECT_EQ(f.status, 409);
  EXPECT_EQ(ParseObject(f.body).at("dtm_result").as_string(), "FAILURE");
  EXPECT_EQ(ParseObject(f.body).at("message").as_string(), "out of \"stock\"");
  EXPECT_EQ(BranchResult::Ongoing().status, 425);
  EXPECT_EQ(BranchResult::Ongoing().body, R"({"dtm_result":"ONGOING"})");
  BranchResult e = BranchResult::Error("db down");
  EXPECT_EQ(e.status, 500);
  EXPECT_EQ(ParseObject(e.body).at("message").as_string(), "db down");
  EXPECT_EQ(e.body.find("FAILURE"), std::string::npos);
  EXPECT_EQ(e.body.find("ONGOING"), std::string::npos);
}

TEST(ParticipantServerTest, RoutesResultCodesAndIdentity) {
  ParticipantServer server;
  std::mutex mu;
  BranchRequest seen;
  server.Handle("POST", "/api/TransOut", [&](const BranchRequest& r) {
    std::lock_guard lock(mu);
    seen = r;
    return BranchResult::Success();
  });
  server.Handle("POST", "/api/fail",
                [](const BranchRequest&) { return BranchResult::Failure("no"); });
  server.Handle("*", "/api/ongoing", [](const BranchRequest&) { return BranchResult::Ongoing(); });
  server.Handle("POST", "/api/error",
                [](const BranchRequest&) { return BranchResult::Error("x"); });
  server.Handle("POST", "/api/throw",
                [](const BranchRequest&) -> BranchResult { throw std::runtime_error("kaboom"); });
  server.Handle("GET", "/api/custom", [](const BranchRequest& r) {
    return BranchResult::Custom(202, "plain " + r.QueryParam("x").value_or("?"), "text/plain");
  });
  ASSERT_TRUE(server.Start().ok());
  ASSERT_NE(server.port(), 0);
  EXPECT_EQ(server.base_url(), "http://127.0.0.1:" + std::to_string(server.port()));
  EXPECT_EQ(server.Start().code(), Code::kConflict);

  RawConn conn(server.port());
  ASSERT_TRUE(conn.connected());
  // The exact call of PROTOCOL.md §3.2, plus a branch header.
  ASSERT_TRUE(conn.Send(Post("/api/TransOut?branch_id=01&gid=g%201&op=action&trans_type=saga",
                             R"({"amount":30})", "Test-Header: t1\r\n")));
  auto r = conn.ReadResponse();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, R"({"dtm_result":"SUCCESS"})");
  EXPECT_EQ(r->Header("content-type"), "application/json");
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(seen.method, "POST");
    EXPECT_EQ(seen.path, "/api/TransOut");
    EXPECT_EQ(seen.gid, "g 1");
    EXPECT_EQ(seen.trans_type, "saga");
    EXPECT_EQ(seen.branch_id, "01");
    EXPECT_EQ(seen.op, "action");
    EXPECT_EQ(seen.body, R"({"amount":30})");
    EXPECT_EQ(seen.Header("test-header"), "t1");
    EXPECT_EQ(seen.Header("TEST-HEADER"), "t1");
    EXPECT_EQ(seen.Header("missing"), "");
    EXPECT_EQ(seen.QueryParam("gid"), "g 1");
    EXPECT_FALSE(seen.QueryParam("nope").has_value());
  }

  struct Case {
    std::string request;
    int status;
    std::string body_part;
  };
  const std::vector<Case> cases = {
      {Post("/api/fail?gid=g", "{}"), 409, R"("dtm_result":"FAILURE")"},
      {Post("/api/ongoing", "{}"), 425, R"({"dtm_result":"ONGOING"})"},
      {Get("/api/ongoing?gid=g"), 425, "ONGOING"},  // "*" matches GET too
      {Post("/api/error", "{}"), 500, R"({"message":"x"})"},
      {Post("/api/throw", "{}"), 500, "kaboom"},
      {Get("/api/TransOut"), 405, "METHOD_NOT_ALLOWED"},
      {Post("/api/unknown", "{}"), 404, "NOT_FOUND"},
      {Get("/api/custom?x=y%26z"), 202, "plain y&z"},
  };
  for (const Case& c : cases) {
    ASSERT_TRUE(conn.Send(c.request));
    auto a = conn.ReadResponse();
    ASSERT_TRUE(a) << c.request;
    EXPECT_EQ(a->status, c.status) << c.request;
    EXPECT_NE(a->body.find(c.body_part), std::string::npos) << c.request << " -> " << a->body;
    if (c.status == 405) {
      EXPECT_EQ(a->Header("allow"), "POST") << c.request;  // RFC 9110 §15.5.6
    }
  }
  server.Stop();
  server.Stop();  // idempotent
  EXPECT_EQ(server.port(), 0);
}

TEST(ParticipantServerTest, HandlersRunOnWorkersAndMayBlock) {
  ParticipantOptions options;
  options.worker_threads = 4;
  ParticipantServer server(options);
  std::atomic<int> running{0};
  std::atomic<int> max_running{0};
  server.Handle("POST", "/block", [&](const BranchRequest&) {
    int now = ++running;
    int seen = max_running.load();
    while (now > seen && !max_running.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(200ms);  // blocking: would stall the only I/O thread if run there
    --running;
    return BranchResult::Success();
  });
  ASSERT_TRUE(server.Start().ok());
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::unique_ptr<RawConn>> conns;
  for (int i = 0; i < 4; ++i) {
    conns.push_back(std::make_unique<RawConn>(server.port()));
    ASSERT_TRUE(conns.back()->Send(Post("/block", "{}")));
  }
  for (auto& c : conns) {
    auto r = c->ReadResponse();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
  // Four 200 ms handlers on four workers (one I/O thread) finish in about 200 ms, not 800.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 700ms);
  EXPECT_EQ(max_running.load(), 4);
}

TEST(ParticipantServerTest, FullWorkerQueueAnswers503) {
  ParticipantOptions options;
  options.worker_threads = 1;
  options.max_queued = 1;
  ParticipantServer server(options);
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> entered{0};
  server.Handle("POST", "/hold", [&](const BranchRequest&) {
    ++entered;
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return release; });
    return BranchResult::Success();
  });
  ASSERT_TRUE(server.Start().ok());

  RawConn running(server.port());
  ASSERT_TRUE(running.Send(Post("/hold", "{}")));
  for (int i = 0; i < 500 && entered.load() == 0; ++i) std::this_thread::sleep_for(5ms);
  ASSERT_EQ(entered.load(), 1);  // the only worker is busy

  RawConn queued(server.port());
  ASSERT_TRUE(queued.Send(Post("/hold", "{}")));  // fills the queue (1)
  std::this_thread::sleep_for(100ms);
  RawConn refused(server.port());
  ASSERT_TRUE(refused.Send(Post("/hold", "{}")));
  auto r = refused.ReadResponse(2000ms);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_NE(r->body.find("worker queue full"), std::string::npos) << r->body;

  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  auto a = running.ReadResponse();
  auto b = queued.ReadResponse();
  ASSERT_TRUE(a);
  ASSERT_TRUE(b);
  EXPECT_EQ(a->status, 200);
  EXPECT_EQ(b->status, 200);
  EXPECT_EQ(entered.load(), 2);
}

TEST(ParticipantServerTest, StopWhileAHandlerBlocksDoesNotHang) {
  ParticipantOptions options;
  options.worker_threads = 1;
  ParticipantServer server(options);
  std::atomic<bool> release{false};
  std::atomic<int> entered{0};
  server.Handle("POST", "/hold", [&](const BranchRequest&) {
    ++entered;
    while (!release.load()) std::this_thread::sleep_for(1ms);
    return BranchResult::Success();
  });
  ASSERT_TRUE(server.Start().ok());
  RawConn a(server.port());
  RawConn b(server.port());
  ASSERT_TRUE(a.Send(Post("/hold", "{}")));
  for (int i = 0; i < 500 && entered.load() == 0; ++i) std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(b.Send(Post("/hold", "{}")));  // queued behind it
  std::this_thread::sleep_for(50ms);
  std::thread releaser([&] {
    std::this_thread::sleep_for(300ms);
    release = true;
  });
  const auto start = std::chrono::steady_clock::now();
  server.Stop();  // cancels both waits, rejects the queued job, waits for the running handler
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  releaser.join();
  EXPECT_EQ(entered.load(), 1);  // the queued request never ran
}

TEST(ParticipantServerTest, StartFailsOnAPortInUse) {
  ParticipantServer first;
  ASSERT_TRUE(first.Start().ok());
  ParticipantOptions options;
  options.port = first.port();
  ParticipantServer second(options);
  Status s = second.Start();
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(second.port(), 0);
}

// ---------------------------------------------------------------------------------------------------
// Client against a fake coordinator

// A fake coordinator: /submit answers by the gid in the body; /query by the gid parameter.
class FakeCoordinator {
 public:
  explicit FakeCoordinator(uint16_t port = 0) : server_(Options(port)) {
    server_.Handle("GET", "/api/dtmsvr/newGid", [this](const BranchRequest& r) {
      {
        std::lock_guard lock(mu_);
        last_authorization_ = std::string(r.Header("authorization"));
        last_tenant_ = std::string(r.Header("x-tenant"));
      }
      return BranchResult::Custom(
          200, R"({"gid":"gid-)" + std::to_string(++gids_) + R"(","dtm_result":"SUCCESS"})");
    });
    server_.Handle("POST", "/api/dtmsvr/submit", [this](const BranchRequest& r) {
      std::string gid = std::string(json::parse(r.body).as_object().at("gid").as_string());
      {
        std::lock_guard lock(mu_);
        submitted_.push_back(r.body);
      }
      if (gid == "ok") return BranchResult::Success();
      if (gid == "conflict") {
        return BranchResult::Custom(
            409, R"({"dtm_result":"FAILURE","message":"current status 'failed', cannot sumbmit"})");
      }
      if (gid == "ongoing") return BranchResult::Custom(425, R"({"dtm_result":"ONGOING"})");
      if (gid == "bad") return BranchResult::Custom(400, R"({"message":"bad gid","code":"X"})");
      if (gid == "unknown") return BranchResult::Custom(404, R"({"message":"no such gid"})");
      if (gid == "busy") return BranchResult::Custom(503, R"({"message":"busy"})");
      if (gid == "crash") return BranchResult::Custom(500, R"({"message":"boom"})");
      if (gid == "failure200") return BranchResult::Custom(200, R"({"dtm_result":"FAILURE"})");
      if (gid == "slow") {
        std::this_thread::sleep_for(800ms);
        return BranchResult::Success();
      }
      return BranchResult::Custom(418, "teapot");
    });
    server_.Handle("GET", "/api/dtmsvr/query", [this](const BranchRequest& r) {
      std::string gid = r.QueryParam("gid").value_or("");
      if (gid == "missing")
        return BranchResult::Custom(200, R"({"transaction":null,"branches":[]})");
      if (gid == "garbage") return BranchResult::Custom(200, "not json");
      if (gid == "stuck") {
        return BranchResult::Custom(200, R"({"transaction":{"gid":"stuck","status":"submitted"}})");
      }
      int n = ++queries_;
      std::string status = (gid == "later" && n < 3) ? "submitted" : "failed";
      return BranchResult::Custom(
          200,
          R"({"transaction":{"id":7,"gid":")" + gid + R"(","trans_type":"saga","status":")" +
              status +
              R"(","rollback_reason":"url:http://x/inv return failed: out of stock FAILURE",)"
              R"("concurrent":false},"branches":[)"
              R"({"id":1,"gid":"g","url":"http://x/c","branch_id":"01","op":"compensate","status":"succeed"},)"
              R"({"id":2,"gid":"g","url":"http://x/a","branch_id":"01","op":"action","status":"failed","bin_data":"e30="}]})");
    });
    EXPECT_TRUE(server_.Start().ok());
  }

  static ParticipantOptions Options(uint16_t port) {
    ParticipantOptions o;
    o.port = port;
    return o;
  }
  uint16_t port() const { return server_.port(); }
  std::string url() const { return server_.base_url() + "/api/dtmsvr"; }
  std::vector<std::string> submitted() {
    std::lock_guard lock(mu_);
    return submitted_;
  }
  // The Authorization and X-Tenant headers of the last newGid request.
  std::pair<std::string, std::string> last_headers() {
    std::lock_guard lock(mu_);
    return {last_authorization_, last_tenant_};
  }

  std::atomic<int> gids_{0};
  std::atomic<int> queries_{0};

 private:
  ParticipantServer server_;
  std::mutex mu_;
  std::vector<std::string> submitted_;
  std::string last_authorization_, last_tenant_;
};

std::string SubmitBody(const std::string& gid) {
  return R"({"gid":")" + gid + R"(","trans_type":"saga","steps":[],"payloads":[]})";
}

TEST(ClientTest, SubmitAnswersMapToStatusCodes) {
  FakeCoordinator fake;
  Client client(fake.url());
  EXPECT_TRUE(client.Submit(SubmitBody("ok")).ok());
  Status conflict = client.Submit(SubmitBody("conflict"));
  EXPECT_EQ(conflict.code(), Code::kConflict);
  EXPECT_EQ(conflict.message(), "current status 'failed', cannot sumbmit");
  EXPECT_EQ(client.Submit(SubmitBody("ongoing")).code(), Code::kOngoing);
  Status bad = client.Submit(SubmitBody("bad"));
  EXPECT_EQ(bad.code(), Code::kInvalidArgument);
  EXPECT_EQ(bad.message(), "bad gid");
  EXPECT_EQ(client.Submit(SubmitBody("unknown")).code(), Code::kNotFound);
  EXPECT_EQ(client.Submit(SubmitBody("busy")).code(), Code::kUnavailable);
  Status crash = client.Submit(SubmitBody("crash"));
  EXPECT_EQ(crash.code(), Code::kInternal);
  EXPECT_NE(crash.message().find("boom"), std::string::npos);
  EXPECT_EQ(client.Submit(SubmitBody("failure200")).code(), Code::kInternal);
  Status teapot = client.Submit(SubmitBody("teapot"));
  EXPECT_EQ(teapot.code(), Code::kInternal);
  EXPECT_NE(teapot.message().find("418"), std::string::npos);
  EXPECT_EQ(fake.submitted().size(), 9u);  // one request each: no hidden retries
}

TEST(ClientTest, SagaSubmitSendsBuildBodyAndFetchesAGid) {
  FakeCoordinator fake;
  Client client(fake.url() + "/");  // a trailing slash is ignored
  Saga saga(client, "");
  saga.Add("http://a/1", "http://a/1c", R"({"n":1})");
  Status s = saga.Submit();
  EXPECT_EQ(saga.gid(), "gid-1");
  EXPECT_EQ(s.code(), Code::kInternal);  // the fake answers 418 for unknown gids
  ASSERT_EQ(fake.submitted().size(), 1u);
  EXPECT_EQ(fake.submitted()[0], saga.BuildBody());

  Saga ok(client, "ok");
  ok.Add("http://a/1", "http://a/1c", "{}");
  EXPECT_TRUE(ok.Submit().ok());
}

TEST(ClientTest, NewGid) {
  FakeCoordinator fake;
  Client client(fake.url());
  auto a = client.NewGid();
  auto b = client.NewGid();
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*a, "gid-1");
  EXPECT_EQ(*b, "gid-2");
}

TEST(ClientTest, QueryParsesTransactionAndBranches) {
  FakeCoordinator fake;
  Client client(fake.url());
  auto q = client.Query("g1");
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_EQ(q->gid, "g1");
  EXPECT_EQ(q->trans_type, "saga");
  EXPECT_EQ(q->status, "failed");
  EXPECT_TRUE(q->is_final());
  EXPECT_EQ(q->rollback_reason, "url:http://x/inv return failed: out of stock FAILURE");
  ASSERT_EQ(q->branches.size(), 2u);
  EXPECT_EQ(q->branches[0].branch_id, "01");
  EXPECT_EQ(q->branches[0].op, "compensate");
  EXPECT_EQ(q->branches[0].status, "succeed");
  EXPECT_EQ(q->branches[0].url, "http://x/c");
  EXPECT_EQ(q->branches[1].op, "action");
  EXPECT_EQ(q->branches[1].status, "failed");

  EXPECT_EQ(client.Query("missing").status().code(), Code::kNotFound);
  EXPECT_EQ(client.Query("garbage").status().code(), Code::kInternal);
  EXPECT_EQ(client.Query("").status().code(), Code::kInvalidArgument);
}

TEST(ClientTest, ParseQueryAnswerRejectsWrongTypes) {
  EXPECT_EQ(ParseQueryAnswer(R"({"transaction":null,"branches":[]})").status().code(),
            Code::kNotFound);
  EXPECT_EQ(ParseQueryAnswer(R"({"branches":[]})").status().code(), Code::kInternal);
  EXPECT_EQ(ParseQueryAnswer(R"([])").status().code(), Code::kInternal);
  EXPECT_EQ(ParseQueryAnswer(R"({"transaction":{"status":7}})").status().code(), Code::kInternal);
  EXPECT_EQ(
      ParseQueryAnswer(R"({"transaction":{"status":"succeed"},"branches":{}})").status().code(),
      Code::kInternal);
  auto ok = ParseQueryAnswer(R"({"transaction":{"status":"succeed","custom_data":null}})");
  ASSERT_TRUE(ok.ok());
  EXPECT_TRUE(ok->branches.empty());
}

TEST(ClientTest, WaitFinalPollsUntilFinalOrTimeout) {
  FakeCoordinator fake;
  Client client(fake.url());
  auto later = client.WaitFinal("later", 5s, 10ms);
  ASSERT_TRUE(later.ok()) << later.status().ToString();
  EXPECT_EQ(later->status, "failed");
  EXPECT_GE(fake.queries_.load(), 3);

  const auto start = std::chrono::steady_clock::now();
  auto stuck = client.WaitFinal("stuck", 300ms, 20ms);
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(stuck.status().code(), Code::kTimeout);
  EXPECT_NE(stuck.status().message().find("submitted"), std::string::npos);
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 2s);

  EXPECT_EQ(client.WaitFinal("missing", 1s).status().code(), Code::kNotFound);
}

TEST(ClientTest, ConnectionErrorsAndDeadlines) {
  {
    // Nothing listens on a port that was just freed.
    uint16_t port;
    {
      ParticipantServer s;
      ASSERT_TRUE(s.Start().ok());
      port = s.port();
    }
    Client client("http://127.0.0.1:" + std::to_string(port) + "/api/dtmsvr");
    EXPECT_EQ(client.Submit(SubmitBody("ok")).code(), Code::kUnavailable);
    EXPECT_EQ(client.NewGid().status().code(), Code::kUnavailable);
  }
  {
    Client bad("ftp://host/api");
    EXPECT_EQ(bad.NewGid().status().code(), Code::kInvalidArgument);
    Client with_query("http://127.0.0.1:1/api?x=1");
    EXPECT_EQ(with_query.NewGid().status().code(), Code::kInvalidArgument);
  }
  {
    FakeCoordinator fake;
    ClientOptions options;
    options.request_timeout = 200ms;
    Client client(fake.url(), options);
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(client.Submit(SubmitBody("slow")).code(), Code::kTimeout);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 700ms);
    // The timed-out connection is dropped; the next call reconnects.
    std::this_thread::sleep_for(800ms);
    EXPECT_TRUE(client.Submit(SubmitBody("ok")).ok());
  }
}

TEST(ClientTest, ReconnectsAfterTheCoordinatorRestarts) {
  auto fake = std::make_unique<FakeCoordinator>();
  const uint16_t port = fake->port();
  Client client(fake->url());
  EXPECT_TRUE(client.Submit(SubmitBody("ok")).ok());
  EXPECT_TRUE(client.Submit(SubmitBody("ok")).ok());  // same kept-alive connection
  fake.reset();                                       // closes the connection the client holds
  EXPECT_EQ(client.Submit(SubmitBody("ok")).code(), Code::kUnavailable);
  fake = std::make_unique<FakeCoordinator>(port);  // back on the same port
  EXPECT_TRUE(client.Submit(SubmitBody("ok")).ok());
  // The restarted coordinator closes the kept-alive connection; the client notices that it was
  // stale and retries once on a new connection, invisibly to the caller.
  fake.reset();
  fake = std::make_unique<FakeCoordinator>(port);
  EXPECT_TRUE(client.Submit(SubmitBody("ok")).ok());
  EXPECT_EQ(fake->submitted().size(), 1u);
}

TEST(ClientTest, ExtraHeadersAreSentWithEveryRequest) {
  FakeCoordinator fake;
  ClientOptions options;
  options.extra_headers = {{"Authorization", "Bearer sdk-token-0123456789"},
                           {"X-Tenant", "shop\t7"}};  // a tab is allowed in a value
  Client client(fake.url(), options);
  ASSERT_TRUE(client.NewGid().ok());
  EXPECT_EQ(fake.last_headers(),
            std::make_pair(std::string("Bearer sdk-token-0123456789"), std::string("shop\t7")));
  ASSERT_TRUE(client.NewGid().ok());  // the kept-alive connection carries them too
  EXPECT_EQ(fake.last_headers().first, "Bearer sdk-token-0123456789");
  Client plain(fake.url());
  ASSERT_TRUE(plain.NewGid().ok());
  EXPECT_EQ(fake.last_headers(), std::make_pair(std::string(), std::string()));
}

TEST(ClientTest, BadExtraHeadersOrCaFileFailEveryCallWithoutSending) {
  FakeCoordinator fake;
  auto refused = [&](std::vector<std::pair<std::string, std::string>> headers,
                     const std::string& needle) {
    ClientOptions options;
    options.extra_headers = std::move(headers);
    Client client(fake.url(), options);
    for (int i = 0; i < 2; ++i) {  // every call, not only the first
      Status s = client.Submit(SubmitBody("ok"));
      EXPECT_EQ(s.code(), Code::kInvalidArgument) << needle;
      EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
    }
    EXPECT_EQ(client.NewGid().status().code(), Code::kInvalidArgument);
  };
  refused({{"X-Evil", "a\r\nX-Injected: 1"}}, "the value of 'X-Evil' contains CR, LF");
  refused({{"X-Evil", "a\nb"}}, "the value of 'X-Evil' contains CR, LF");
  refused({{"X-Nul", std::string("a\0b", 3)}}, "the value of 'X-Nul' contains");
  refused({{"Bad Name", "v"}}, "'Bad Name' is not a valid header name");
  refused({{"X-Evil\r\nHost", "v"}}, "is not a valid header name");
  refused({{"Host", "other.example"}}, "'Host' is set by the client itself");
  refused({{"connection", "close"}}, "'connection' is set by the client itself");
  refused({{"Transfer-Encoding", "chunked"}}, "'Transfer-Encoding' is set by the client");
  refused({{"Content-Length", "0"}}, "'Content-Length' is set by the client");
  refused({{"X-Big", std::string(9000, 'a')}}, "larger than 8192 bytes");
  refused(std::vector<std::pair<std::string, std::string>>(65, {"X-Many", "v"}),
          "more than 64 headers");
  EXPECT_TRUE(fake.submitted().empty());  // nothing was sent

  ClientOptions bad_ca;
  bad_ca.ca_file = "/nonexistent/ca.pem";
  Client client(fake.url(), bad_ca);
  Status s = client.Submit(SubmitBody("ok"));
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("ClientOptions::ca_file"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("/nonexistent/ca.pem"), std::string::npos) << s.message();
}

TEST(ClientTest, UnauthenticatedAnswerSays401) {
  ParticipantServer server;
  server.Handle("POST", "/api/dtmsvr/submit", [](const BranchRequest&) {
    return BranchResult::Custom(
        401, R"({"message":"a valid token is required","code":"UNAUTHENTICATED"})");
  });
  ASSERT_TRUE(server.Start().ok());
  Client client(server.base_url() + "/api/dtmsvr");
  Status s = client.Submit(SubmitBody("ok"));
  EXPECT_EQ(s.code(), Code::kInvalidArgument);  // not a bug of the coordinator: the token
  EXPECT_FALSE(IsRetryable(s.code()));
  EXPECT_NE(s.message().find("HTTP 401 (unauthenticated"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("extra_headers"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("a valid token is required"), std::string::npos) << s.message();
  EXPECT_EQ(s.reason(), "UNAUTHENTICATED");
  ASSERT_NE(s.info(), nullptr);
  EXPECT_EQ(s.info()->Fact("http_status"), "401");
}

// 403 the same way; another unexpected status stays kInternal, with the same facts; the
// notification API and the TCC branch registration map answers alike (one mapping).
TEST(ClientTest, ForbiddenAndOtherAnswersCarryTheStatus) {
  ParticipantServer server;
  server.Handle("POST", "/api/dtmsvr/submit", [](const BranchRequest&) {
    return BranchResult::Custom(403, R"({"message":"not for you","code":"FORBIDDEN"})");
  });
  server.Handle("POST", "/api/dtmsvr/abort",
                [](const BranchRequest&) { return BranchResult::Custom(502, "bad gateway"); });
  server.Handle("POST", "/api/dtx/notify", [](const BranchRequest&) {
    return BranchResult::Custom(
        401, R"({"message":"a valid token is required","code":"UNAUTHENTICATED"})");
  });
  ASSERT_TRUE(server.Start().ok());
  Client client(server.base_url() + "/api/dtmsvr");
  Status s = client.Submit(SubmitBody("ok"));
  EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("HTTP 403 (forbidden): not for you"), std::string::npos)
      << s.message();
  EXPECT_EQ(s.reason(), "FORBIDDEN");
  Status other = client.Abort(SubmitBody("ok"));
  EXPECT_EQ(other.code(), Code::kInternal) << other.ToString();
  EXPECT_NE(other.message().find("HTTP 502: bad gateway"), std::string::npos) << other.message();
  EXPECT_EQ(other.reason(), "HTTP_502");
  ASSERT_NE(other.info(), nullptr);
  EXPECT_EQ(other.info()->Fact("http_status"), "502");
  Notification n(client, "n-403", "http://127.0.0.1:1/hook");
  n.SetPayload("{}");
  Status sent = n.Send();
  EXPECT_EQ(sent.code(), Code::kInvalidArgument) << sent.ToString();
  EXPECT_EQ(sent.reason(), "UNAUTHENTICATED");
}

TEST(ClientTest, ConcurrentCallsOnOneClientAreSerialized) {
  FakeCoordinator fake;
  Client client(fake.url());
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        if (client.Submit(SubmitBody("ok")).ok()) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 100);
}

}  // namespace
}  // namespace dtx
