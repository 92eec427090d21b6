// DTM's wire wording of the engine's refusals (api/wording.h): the exact strings DTM's clients and
// tests match on.
#include "api/wording.h"

#include <gtest/gtest.h>

#include "api/routes.h"
#include "engine/refusal.h"
#include "store/store.h"

namespace dtx::api {
namespace {

namespace refusal = engine::refusal;
using core::GlobalStatus;
using core::TransType;

TEST(WordingTest, TransitionRefusals) {
  EXPECT_EQ(WireMessage(refusal::WrongStatus("submit", GlobalStatus::kSucceed, TransType::kSaga)),
            "current status 'succeed', cannot sumbmit. FAILURE");
  EXPECT_EQ(WireMessage(refusal::WrongStatus("prepare", GlobalStatus::kSubmitted, TransType::kTcc)),
            "current status 'submitted', cannot prepare. FAILURE");
  EXPECT_EQ(WireMessage(refusal::WrongStatus("abort", GlobalStatus::kSucceed, TransType::kSaga)),
            "trans type: 'saga' current status 'succeed', cannot abort. FAILURE");
  EXPECT_EQ(WireMessage(refusal::NotPrepared("g1")),
            "no trans with gid: g1 status: prepared found FAILURE");
  EXPECT_EQ(WireMessage(refusal::WrongType("g1", TransType::kTcc, TransType::kSaga)),
            "gid 'g1' belongs to a transaction of type 'tcc', not 'saga'. FAILURE");
  EXPECT_EQ(WireMessage(refusal::BranchMismatch("g1", "01")),
            "branch 01 of gid g1 is already registered with different content. FAILURE");
  EXPECT_EQ(WireMessage(refusal::AlreadyFinal(GlobalStatus::kFailed)),
            "global transaction force stop error. status: failed. error: FAILURE");
  EXPECT_EQ(WireMessage(refusal::NotSucceeded()), "wait result not return success");
}

TEST(WordingTest, TopicRefusals) {
  EXPECT_EQ(WireMessage(refusal::Topic(Code::kInvalidArgument, refusal::kTopicEmptyName, "")),
            "empty topic");
  EXPECT_EQ(WireMessage(refusal::Topic(Code::kInvalidArgument, refusal::kTopicEmptyUrl, "t")),
            "empty url");
  EXPECT_EQ(WireMessage(refusal::Topic(Code::kAlreadyExists, refusal::kTopicUrlExists, "t")),
            "this url exists");
  EXPECT_EQ(
      WireMessage(refusal::Topic(Code::kNotFound, refusal::kTopicNotFound, "t", "unsubscribe")),
      "no such a topic");
  EXPECT_EQ(WireMessage(refusal::Topic(Code::kNotFound, refusal::kTopicNotFound, "t", "delete")),
            "storage: NotFound");
  EXPECT_EQ(WireMessage(refusal::Topic(Code::kNotFound, refusal::kTopicUrlNotFound, "t")),
            "no such an url");
}

TEST(WordingTest, OtherStatusesKeepTheirMessage) {
  EXPECT_EQ(WireMessage(Status::Conflict("no stock")), "no stock");
  EXPECT_EQ(WireMessage(Status::Conflict("x").WithInfo({"SOMETHING_ELSE", {}})), "x");
}

TEST(WordingTest, ErrorResponseUsesTheWireWording) {
  http::Response r =
      ErrorResponse(refusal::WrongStatus("submit", GlobalStatus::kFailed, TransType::kSaga), "g1");
  EXPECT_EQ(r.status, 409);
  EXPECT_NE(r.body.find(R"("message":"current status 'failed', cannot sumbmit. FAILURE")"),
            std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find(R"("dtm_result":"FAILURE")"), std::string::npos) << r.body;
}

TEST(WordingTest, DatabaseErrorsNeverReachTheClient) {
  // What the PostgreSQL store returns for invalid UTF-8 (issue 15): the wire message names no
  // table, no SQLSTATE.
  Status s =
      Status::InvalidArgument(
          "postgres: kv put: invalid byte sequence for encoding \"UTF8\": 0xff (SQLSTATE "
          "22021)")
          .WithInfo(ErrorInfo{std::string(store::kDatabaseErrorReason), {{"sqlstate", "22021"}}});
  EXPECT_EQ(WireMessage(s), "the store refused a value of this request");
  Status down = Status::Unavailable("postgres: claim: terminating connection (SQLSTATE 57P01)")
                    .WithInfo(ErrorInfo{std::string(store::kDatabaseErrorReason), {}});
  EXPECT_EQ(WireMessage(down), "the store is unavailable; retry later");
  Status other = Status::Internal("postgres: unexpected result shape of dtx_trans")
                     .WithInfo(ErrorInfo{std::string(store::kDatabaseErrorReason), {}});
  EXPECT_EQ(WireMessage(other), "the store failed; the coordinator's log has the details");
  EXPECT_EQ(ErrorResponse(s).status, 400);
  EXPECT_EQ(ErrorResponse(s).body.find("SQLSTATE"), std::string::npos);
  EXPECT_EQ(ErrorResponse(other).body.find("dtx_trans"), std::string::npos);
}

}  // namespace
}  // namespace dtx::api
