#include "api/wording.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "engine/refusal.h"
#include "store/store.h"

namespace dtx::api {

namespace refusal = engine::refusal;

namespace {

std::string WrongStatusMessage(const ErrorInfo& info) {
  const std::string_view op = info.Fact("op");
  const std::string_view status = info.Fact("status");
  if (op == "submit") return fmt::format("current status '{}', cannot sumbmit. FAILURE", status);
  if (op == "abort") {
    return fmt::format("trans type: '{}' current status '{}', cannot abort. FAILURE",
                       info.Fact("type"), status);
  }
  return fmt::format("current status '{}', cannot {}. FAILURE", status, op);
}

std::string TopicMessage(const ErrorInfo& info, const std::string& fallback) {
  const std::string_view r = info.reason;
  if (r == refusal::kTopicEmptyName) return "empty topic";
  if (r == refusal::kTopicEmptyUrl) return "empty url";
  if (r == refusal::kTopicUrlExists) return "this url exists";
  if (r == refusal::kTopicUrlNotFound) return "no such an url";
  if (r == refusal::kTopicNotFound) {
    // DTM's delete reports its storage layer's error.
    return info.Fact("op") == "delete" ? "storage: NotFound" : "no such a topic";
  }
  return fallback;
}

// A failure the database reported: its text names tables, constraints and SQLSTATEs, which are
// the operator's business (logged here), not the client's (issue 15).
std::string DatabaseErrorMessage(const Status& status) {
  spdlog::warn("answering a client with a store error: {}", status.ToString());
  switch (status.code()) {
    case Code::kInvalidArgument:
      return "the store refused a value of this request";
    case Code::kAlreadyExists:
      return "the store refused the write: the row already exists";
    case Code::kUnavailable:
      return "the store is unavailable; retry later";
    default:
      return "the store failed; the coordinator's log has the details";
  }
}

}  // namespace

std::string WireMessage(const Status& status) {
  const ErrorInfo* info = status.info();
  if (info == nullptr) return status.message();
  const std::string_view r = info->reason;
  if (r == store::kDatabaseErrorReason) return DatabaseErrorMessage(status);
  if (r == refusal::kWrongStatus) return WrongStatusMessage(*info);
  if (r == refusal::kWrongType) {
    return fmt::format("gid '{}' belongs to a transaction of type '{}', not '{}'. FAILURE",
                       info->Fact("gid"), info->Fact("stored_type"), info->Fact("type"));
  }
  if (r == refusal::kNotPrepared) {
    return fmt::format("no trans with gid: {} status: prepared found FAILURE", info->Fact("gid"));
  }
  if (r == refusal::kBranchMismatch) {
    return fmt::format("branch {} of gid {} is already registered with different content. FAILURE",
                       info->Fact("branch_id"), info->Fact("gid"));
  }
  if (r == refusal::kAlreadyFinal) {
    return fmt::format("global transaction force stop error. status: {}. error: FAILURE",
                       info->Fact("status"));
  }
  if (r == refusal::kNotSucceeded) return "wait result not return success";
  return TopicMessage(*info, status.message());
}

}  // namespace dtx::api
