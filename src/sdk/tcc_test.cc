// Tests of the TCC scope (include/dtx/tcc.h): branch ids, the wire bodies, the Try URL and answer
// classification as pure units, then TccGlobalTransaction's call sequence against a fake
// coordinator (a ParticipantServer on 127.0.0.1:0 that records every call and also plays the
// participants' Try endpoints). The real coordinator is exercised in tests/tcc_bank_test.cc.
#include "dtx/tcc.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "dtx/participant.h"

namespace dtx {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

json::object ParseObject(const std::string& s) { return json::parse(s).as_object(); }

// ---------------------------------------------------------------------------------------------------
// Pure units

TEST(BranchIdGenerator, TwoDigitsUpTo99) {
  BranchIdGenerator g;
  EXPECT_EQ(*g.Next(), "01");
  EXPECT_EQ(*g.Next(), "02");
  for (int i = 3; i <= 98; ++i) ASSERT_TRUE(g.Next().ok());
  EXPECT_EQ(*g.Next(), "99");
  EXPECT_EQ(g.issued(), 99);
  auto over = g.Next();
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), Code::kInvalidArgument);
}

TEST(BranchIdGenerator, NestedIdsAppendToTheParent) {
  BranchIdGenerator g("02");
  EXPECT_EQ(*g.Next(), "0201");
  EXPECT_EQ(*g.Next(), "0202");
  BranchIdGenerator deep("020103040506070809");  // 18 characters: one more level fits (20)
  EXPECT_EQ(*deep.Next(), "02010304050607080901");
  BranchIdGenerator too_deep("02010304050607080910");  // 20 characters: DTM refuses to nest
  EXPECT_EQ(too_deep.Next().status().code(), Code::kInvalidArgument);
}

TEST(TccBodies, PrepareCarriesTheOptions) {
  TccOptions o;
  o.wait_result = true;
  o.retry_interval_s = 15;
  o.timeout_to_fail_s = 60;
  o.branch_headers = {{"test_header", "test"}};
  // The PROTOCOL.md §2.2 example, as an object (key order is not significant).
  EXPECT_EQ(ParseObject(BuildTccTransBody(TccPhase::kPrepare, "g2", o)),
            ParseObject(R"({"gid":"g2","trans_type":"tcc","wait_result":true,"retry_interval":15,)"
                        R"("timeout_to_fail":60,"branch_headers":{"test_header":"test"}})"));
  EXPECT_EQ(BuildTccTransBody(TccPhase::kSubmit, "g3", TccOptions{}),
            R"({"gid":"g3","trans_type":"tcc"})");
  o = {};
  o.request_timeout_s = 4;
  EXPECT_EQ(
      BuildTccTransBody(TccPhase::kAbort, "g4", o, "try failed"),
      R"({"gid":"g4","trans_type":"tcc","request_timeout":4,"rollback_reason":"try failed"})");
  // A rollback reason only goes with abort.
  EXPECT_FALSE(
      ParseObject(BuildTccTransBody(TccPhase::kSubmit, "g4", o, "x")).contains("rollback_reason"));
}

TEST(TccBodies, RegisterBranchIsStringsOnly) {
  const std::string body =
      BuildTccRegisterBody("g2", "01", R"({"amount":30})", "http://busi/api/TransOutConfirm",
                           "http://busi/api/TransOutRevert");
  EXPECT_EQ(
      body,
      R"({"gid":"g2","trans_type":"tcc","branch_id":"01","data":"{\"amount\":30}",)"
      R"("confirm":"http://busi/api/TransOutConfirm","cancel":"http://busi/api/TransOutRevert"})");
  for (const auto& kv : ParseObject(body)) EXPECT_TRUE(kv.value().is_string()) << kv.key();
}

TEST(TccBodies, TryUrlCarriesTheIdentity) {
  EXPECT_EQ(BuildTccTryUrl("http://busi/api/TransOutTry", "http://127.0.0.1:36789/api/dtmsvr",
                           "g 1", "02"),
            "http://busi/api/TransOutTry?branch_id=02&dtm=http%3A%2F%2F127.0.0.1%3A36789%2Fapi%2F"
            "dtmsvr&gid=g%201&op=try&trans_type=tcc");
  EXPECT_EQ(BuildTccTryUrl("http://busi/try?shard=3", "http://d", "g", "01"),
            "http://busi/try?shard=3&branch_id=01&dtm=http%3A%2F%2Fd&gid=g&op=try&trans_type=tcc");
  EXPECT_EQ(BuildTccTryUrl("http://busi/try?", "http://d", "g", "01"),
            "http://busi/try?branch_id=01&dtm=http%3A%2F%2Fd&gid=g&op=try&trans_type=tcc");
}

TEST(TccBodies, TryAnswersAreClassifiedAsTheCoordinatorDoes) {
  EXPECT_TRUE(ClassifyTryAnswer(200, R"({"dtm_result":"SUCCESS"})", "try").ok());
  EXPECT_TRUE(ClassifyTryAnswer(200, "", "try").ok());
  EXPECT_EQ(ClassifyTryAnswer(409, "{}", "try").code(), Code::kConflict);
  EXPECT_EQ(ClassifyTryAnswer(200, R"({"dtm_result":"FAILURE"})", "try").code(), Code::kConflict);
  EXPECT_EQ(ClassifyTryAnswer(500, "FAILURE", "try").code(), Code::kConflict);
  EXPECT_EQ(ClassifyTryAnswer(425, "", "try").code(), Code::kOngoing);
  EXPECT_EQ(ClassifyTryAnswer(200, "ONGOING", "try").code(), Code::kOngoing);
  EXPECT_EQ(ClassifyTryAnswer(500, "boom", "try").code(), Code::kInternal);
  EXPECT_EQ(ClassifyTryAnswer(204, "", "try").code(), Code::kInternal);
  EXPECT_EQ(ClassifyTryAnswer(503, "", "try").code(), Code::kUnavailable);
  Status s = ClassifyTryAnswer(409, R"({"message":"insufficient balance"})", "try http://m/try");
  EXPECT_NE(s.message().find("try http://m/try answered 409"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("insufficient balance"), std::string::npos) << s.message();
}

TEST(TccBodies, TruncateUtf8KeepsWholeCharacters) {
  EXPECT_EQ(TruncateUtf8("abc", 10), "abc");
  EXPECT_EQ(TruncateUtf8("abcdef", 3), "abc");
  const std::string euros = "\xE2\x82\xAC\xE2\x82\xAC";  // two 3-byte characters
  EXPECT_EQ(TruncateUtf8(euros, 5), "\xE2\x82\xAC");
  EXPECT_EQ(TruncateUtf8(euros, 3), "\xE2\x82\xAC");
  EXPECT_EQ(TruncateUtf8(euros, 2), "");
}

// ---------------------------------------------------------------------------------------------------
// TccGlobalTransaction against a fake coordinator

struct Call {
  std::string path;   // "prepare", "registerBranch", "submit", "abort", "newGid", or "try:<name>"
  json::object body;  // parsed, for coordinator calls
  std::string raw_body;
  std::map<std::string, std::string> query;
  std::string header;  // value of X-Token, when sent
};

class FakeCoordinator {
 public:
  FakeCoordinator() {
    ParticipantOptions options;
    options.worker_threads = 4;
    server_ = std::make_unique<ParticipantServer>(options);
    for (const char* op : {"prepare", "registerBranch", "submit", "abort", "newGid"}) {
      server_->Handle("*", std::string("/api/dtmsvr/") + op, [this, op](const BranchRequest& r) {
        Call c;
        c.path = op;
        c.raw_body = r.body;
        if (!r.body.empty()) c.body = ParseObject(r.body);
        BranchResult answer = BranchResult::Success();
        {
          std::lock_guard lock(mu_);
          calls_.push_back(c);
          if (auto it = coordinator_answers_.find(op); it != coordinator_answers_.end()) {
            answer = it->second;
          }
        }
        if (std::string(op) == "newGid") {
          return BranchResult::Custom(200, R"({"gid":"fresh-gid","dtm_result":"SUCCESS"})");
        }
        return answer;
      });
    }
    for (const char* name : {"a", "b", "c"}) {
      server_->Handle("POST", std::string("/try/") + name, [this, name](const BranchRequest& r) {
        Call c;
        c.path = std::string("try:") + name;
        c.raw_body = r.body;
        for (const char* k : {"gid", "branch_id", "op", "trans_type", "dtm"}) {
          if (auto v = r.QueryParam(k)) c.query[k] = *v;
        }
        c.header = std::string(r.Header("X-Token"));
        BranchResult answer = BranchResult::Custom(
            200, R"({"dtm_result":"SUCCESS","try":")" + std::string(name) + "\"}");
        std::chrono::milliseconds delay{0};
        {
          std::lock_guard lock(mu_);
          calls_.push_back(c);
          if (auto it = try_answers_.find(name); it != try_answers_.end()) answer = it->second;
          if (auto it = try_delays_.find(name); it != try_delays_.end()) delay = it->second;
        }
        std::this_thread::sleep_for(delay);
        return answer;
      });
    }
    Status s = server_->Start();
    EXPECT_TRUE(s.ok()) << s.ToString();
  }

  std::string api() const { return server_->base_url() + "/api/dtmsvr"; }
  std::string TryUrl(const std::string& name) const { return server_->base_url() + "/try/" + name; }
  void AnswerTry(const std::string& name, BranchResult r) {
    std::lock_guard lock(mu_);
    try_answers_[name] = std::move(r);
  }
  void DelayTry(const std::string& name, std::chrono::milliseconds d) {
    std::lock_guard lock(mu_);
    try_delays_[name] = d;
  }
  void AnswerCoordinator(const std::string& op, BranchResult r) {
    std::lock_guard lock(mu_);
    coordinator_answers_[op] = std::move(r);
  }
  std::vector<Call> calls() const {
    std::lock_guard lock(mu_);
    return calls_;
  }
  std::vector<std::string> paths() const {
    std::vector<std::string> out;
    for (const Call& c : calls()) out.push_back(c.path);
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::vector<Call> calls_;
  std::map<std::string, BranchResult> try_answers_;
  std::map<std::string, std::chrono::milliseconds> try_delays_;
  std::map<std::string, BranchResult> coordinator_answers_;
  std::unique_ptr<ParticipantServer> server_;
};

using Paths = std::vector<std::string>;

TEST(TccGlobalTransaction, AllTriesSucceedThenSubmit) {
  FakeCoordinator fake;
  Client client(fake.api());
  TccOptions options;
  options.wait_result = true;
  options.timeout_to_fail_s = 60;
  options.branch_headers = {{"X-Token", "secret"}};
  std::vector<std::string> try_bodies;
  Status s = TccGlobalTransaction(client, "g1", options, [&](Tcc& tcc) {
    EXPECT_EQ(tcc.gid(), "g1");
    auto a = tcc.CallBranch(R"({"amount":30})", fake.TryUrl("a"), "http://busi/a/confirm",
                            "http://busi/a/cancel");
    if (!a.ok()) return a.status();
    try_bodies.push_back(*a);
    auto b = tcc.CallBranch(R"({"amount":30})", fake.TryUrl("b"), "http://busi/b/confirm",
                            "http://busi/b/cancel");
    if (!b.ok()) return b.status();
    try_bodies.push_back(*b);
    EXPECT_EQ(tcc.branch_ids(), (std::vector<std::string>{"01", "02"}));
    return Status::Ok();
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(fake.paths(),
            (Paths{"prepare", "registerBranch", "try:a", "registerBranch", "try:b", "submit"}));
  EXPECT_EQ(try_bodies, (std::vector<std::string>{R"({"dtm_result":"SUCCESS","try":"a"})",
                                                  R"({"dtm_result":"SUCCESS","try":"b"})"}));
  auto calls = fake.calls();
  EXPECT_EQ(calls[0].body,
            ParseObject(R"({"gid":"g1","trans_type":"tcc","wait_result":true,)"
                        R"("timeout_to_fail":60,"branch_headers":{"X-Token":"secret"}})"));
  EXPECT_EQ(calls[1].body,
            ParseObject(R"({"gid":"g1","trans_type":"tcc","branch_id":"01",)"
                        R"("data":"{\"amount\":30}","confirm":"http://busi/a/confirm",)"
                        R"("cancel":"http://busi/a/cancel"})"));
  EXPECT_EQ(calls[3].body.at("branch_id"), "02");
  EXPECT_EQ(calls[2].raw_body, R"({"amount":30})");
  EXPECT_EQ(calls[2].query, (std::map<std::string, std::string>{{"gid", "g1"},
                                                                {"branch_id", "01"},
                                                                {"op", "try"},
                                                                {"trans_type", "tcc"},
                                                                {"dtm", fake.api()}}));
  EXPECT_EQ(calls[4].query.at("branch_id"), "02");
  EXPECT_EQ(calls[2].header, "secret");  // branch headers go with the Try too
  EXPECT_EQ(calls[5].body.at("gid"), "g1");
  EXPECT_EQ(calls[5].body.at("wait_result"), true);
}

TEST(TccGlobalTransaction, FailedTryAbortsWithTheReasonAndStops) {
  FakeCoordinator fake;
  fake.AnswerTry("b", BranchResult::Failure("insufficient balance"));
  Client client(fake.api());
  bool reached_c = false;
  Status s = TccGlobalTransaction(client, "g2", {}, [&](Tcc& tcc) {
    for (const char* name : {"a", "b", "c"}) {
      auto r = tcc.CallBranch("{}", fake.TryUrl(name), "http://busi/confirm", "http://busi/cancel");
      if (!r.ok()) return r.status();
      reached_c = std::string(name) == "c";
    }
    return Status::Ok();
  });
  EXPECT_EQ(s.code(), Code::kConflict) << s.ToString();
  EXPECT_NE(s.message().find("insufficient balance"), std::string::npos) << s.message();
  EXPECT_FALSE(reached_c);
  EXPECT_EQ(fake.paths(),
            (Paths{"prepare", "registerBranch", "try:a", "registerBranch", "try:b", "abort"}));
  const json::object abort = fake.calls().back().body;
  EXPECT_EQ(abort.at("gid"), "g2");
  EXPECT_EQ(abort.at("trans_type"), "tcc");
  const std::string reason(abort.at("rollback_reason").as_string());
  EXPECT_NE(reason.find("CONFLICT"), std::string::npos) << reason;
  EXPECT_NE(reason.find("(branch 02) answered 409"), std::string::npos) << reason;
  EXPECT_NE(reason.find("insufficient balance"), std::string::npos) << reason;
}

TEST(TccGlobalTransaction, ServerErrorsAndTimeoutsOfATryAreErrorsToo) {
  FakeCoordinator fake;
  fake.AnswerTry("a", BranchResult::Error("database down"));
  fake.DelayTry("b", 1500ms);
  Client client(fake.api());
  TccOptions options;
  options.try_timeout = 300ms;
  Status a_status, b_status;
  Status s = TccGlobalTransaction(client, "g3", options, [&](Tcc& tcc) {
    a_status = tcc.CallBranch("{}", fake.TryUrl("a"), "", "").status();
    b_status = tcc.CallBranch("{}", fake.TryUrl("b"), "", "").status();
    return b_status;
  });
  EXPECT_EQ(a_status.code(), Code::kInternal) << a_status.ToString();
  EXPECT_NE(a_status.message().find("database down"), std::string::npos);
  EXPECT_EQ(b_status.code(), Code::kTimeout) << b_status.ToString();
  EXPECT_EQ(s.code(), Code::kTimeout);
  EXPECT_EQ(fake.paths().back(), "abort");
}

TEST(TccGlobalTransaction, BodyErrorAborts) {
  FakeCoordinator fake;
  Client client(fake.api());
  Status s = TccGlobalTransaction(client, "g4", {}, [&](Tcc& tcc) {
    auto r = tcc.CallBranch("{}", fake.TryUrl("a"), "", "");
    EXPECT_TRUE(r.ok());
    return Status::Conflict("order no longer valid");
  });
  EXPECT_EQ(s.code(), Code::kConflict);
  EXPECT_EQ(s.message(), "order no longer valid");
  EXPECT_EQ(fake.paths(), (Paths{"prepare", "registerBranch", "try:a", "abort"}));
  EXPECT_EQ(fake.calls().back().body.at("rollback_reason"), "CONFLICT: order no longer valid");
}

TEST(TccGlobalTransaction, ExceptionAbortsAndIsRethrown) {
  FakeCoordinator fake;
  Client client(fake.api());
  EXPECT_THROW(
      {
        (void)TccGlobalTransaction(client, "g5", {}, [&](Tcc& tcc) -> Status {
          (void)tcc.CallBranch("{}", fake.TryUrl("a"), "", "");
          throw std::runtime_error("bug in the application");
        });
      },
      std::runtime_error);
  EXPECT_EQ(fake.paths(), (Paths{"prepare", "registerBranch", "try:a", "abort"}));
  EXPECT_EQ(fake.calls().back().body.at("rollback_reason"), "exception: bug in the application");
}

TEST(TccGlobalTransaction, IgnoredTryFailureStillAborts) {
  FakeCoordinator fake;
  fake.AnswerTry("a", BranchResult::Failure("no"));
  Client client(fake.api());
  Status s = TccGlobalTransaction(client, "g6", {}, [&](Tcc& tcc) {
    (void)tcc.CallBranch("{}", fake.TryUrl("a"), "", "");  // error ignored: a bug
    return Status::Ok();
  });
  EXPECT_EQ(s.code(), Code::kConflict);
  EXPECT_NE(s.message().find("body returned ok"), std::string::npos) << s.message();
  EXPECT_EQ(fake.paths().back(), "abort");
}

TEST(TccGlobalTransaction, RefusedRegistrationSkipsTheTry) {
  FakeCoordinator fake;
  fake.AnswerCoordinator(
      "registerBranch",
      BranchResult::Custom(409,
                           R"({"dtm_result":"FAILURE","message":"current status 'aborting'"})"));
  Client client(fake.api());
  Status s = TccGlobalTransaction(client, "g7", {}, [&](Tcc& tcc) {
    return tcc.CallBranch("{}", fake.TryUrl("a"), "", "").status();
  });
  EXPECT_EQ(s.code(), Code::kConflict);
  EXPECT_NE(s.message().find("current status 'aborting'"), std::string::npos) << s.message();
  EXPECT_EQ(fake.paths(), (Paths{"prepare", "registerBranch", "abort"}));
}

TEST(TccGlobalTransaction, FailedPrepareRunsNothing) {
  FakeCoordinator fake;
  fake.AnswerCoordinator("prepare", BranchResult::Custom(409, R"({"dtm_result":"FAILURE"})"));
  Client client(fake.api());
  bool ran = false;
  Status s = TccGlobalTransaction(client, "g8", {}, [&](Tcc&) {
    ran = true;
    return Status::Ok();
  });
  EXPECT_EQ(s.code(), Code::kConflict);
  EXPECT_FALSE(ran);
  EXPECT_EQ(fake.paths(), (Paths{"prepare"}));
}

TEST(TccGlobalTransaction, EmptyGidTakesANewOne) {
  FakeCoordinator fake;
  Client client(fake.api());
  std::string seen;
  Status s = TccGlobalTransaction(client, "", {}, [&](Tcc& tcc) {
    seen = tcc.gid();
    return Status::Ok();
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(seen, "fresh-gid");
  EXPECT_EQ(fake.paths(), (Paths{"newGid", "prepare", "submit"}));
}

TEST(TccGlobalTransaction, InvalidOptionsAreRefusedBeforeAnyCall) {
  FakeCoordinator fake;
  Client client(fake.api());
  TccOptions options;
  options.timeout_to_fail_s = -1;
  Status s = TccGlobalTransaction(client, "g9", options, [](Tcc&) { return Status::Ok(); });
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_TRUE(fake.paths().empty());
}

TEST(TccGlobalTransaction, ParallelBranchesGetDistinctIds) {
  FakeCoordinator fake;
  fake.DelayTry("a", 100ms);
  Client client(fake.api());
  Status s = TccGlobalTransaction(client, "g10", {}, [&](Tcc& tcc) {
    std::vector<std::thread> threads;
    std::atomic<int> ok{0};
    for (int i = 0; i < 8; ++i) {
      threads.emplace_back([&] {
        if (tcc.CallBranch("{}", fake.TryUrl("a"), "", "").ok()) ++ok;
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(ok.load(), 8);
    return Status::Ok();
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::vector<std::string> registered;
  for (const Call& c : fake.calls()) {
    if (c.path == "registerBranch") registered.emplace_back(c.body.at("branch_id").as_string());
  }
  EXPECT_EQ(registered, (std::vector<std::string>{"01", "02", "03", "04", "05", "06", "07", "08"}));
}

TEST(TccFromRequest, NestedBranchesAppendToTheCallersId) {
  FakeCoordinator fake;
  BranchRequest r;
  r.gid = "g11";
  r.trans_type = "tcc";
  r.branch_id = "02";
  r.op = "try";
  r.query = "gid=g11&branch_id=02&op=try&trans_type=tcc&dtm=" + fake.api();
  auto tcc = Tcc::FromRequest(r);
  ASSERT_TRUE(tcc.ok()) << tcc.status().ToString();
  EXPECT_EQ(tcc->server_url(), fake.api());
  ASSERT_TRUE(tcc->CallBranch("{}", fake.TryUrl("c"), "http://x/confirm", "http://x/cancel").ok());
  auto calls = fake.calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].body.at("branch_id"), "0201");
  EXPECT_EQ(calls[1].query.at("branch_id"), "0201");
  EXPECT_EQ(calls[1].query.at("dtm"), fake.api());

  BranchRequest saga = r;
  saga.trans_type = "saga";
  EXPECT_EQ(Tcc::FromRequest(saga).status().code(), Code::kInvalidArgument);
  BranchRequest no_dtm = r;
  no_dtm.query = "gid=g11";
  EXPECT_EQ(Tcc::FromRequest(no_dtm).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace dtx
