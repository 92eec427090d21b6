// Why the engine refused a request, as machine-readable facts (ErrorInfo, util/status.h) on the
// Status it returns. The engine words its messages in its own terms; the API renders DTM's wire
// wording from these reasons and facts (api/wording.h), so the engine knows nothing of DTM's text.
#pragma once

#include <string>
#include <string_view>

#include "core/model.h"
#include "util/status.h"

namespace dtx::engine::refusal {

// Reasons (ErrorInfo::reason) and their facts.
// The transaction's status does not allow `op` (submit, prepare, abort). Facts: op, status, type.
inline constexpr std::string_view kWrongStatus = "WRONG_STATUS";
// The gid belongs to a transaction of another type. Facts: gid, stored_type, type.
inline constexpr std::string_view kWrongType = "WRONG_TYPE";
// registerBranch, or a submit of a tcc/xa, for a gid that is not a prepared transaction. Facts:
// gid.
inline constexpr std::string_view kNotPrepared = "NOT_PREPARED";
// registerBranch of rows whose ids exist with other content. Facts: gid, branch_id.
inline constexpr std::string_view kBranchMismatch = "BRANCH_MISMATCH";
// forceStop of a transaction that is already final. Facts: status.
inline constexpr std::string_view kAlreadyFinal = "ALREADY_FINAL";
// wait_result: the round did not end in the wanted state, and no answer or reason says why.
inline constexpr std::string_view kNotSucceeded = "NOT_SUCCEEDED";
// Topics: an empty topic name / url (kInvalidArgument), a url subscribed twice (kAlreadyExists),
// an unknown topic (kNotFound; fact op: unsubscribe or delete), an unknown url (kNotFound).
inline constexpr std::string_view kTopicEmptyName = "TOPIC_EMPTY_NAME";
inline constexpr std::string_view kTopicEmptyUrl = "TOPIC_EMPTY_URL";
inline constexpr std::string_view kTopicUrlExists = "TOPIC_URL_EXISTS";
inline constexpr std::string_view kTopicNotFound = "TOPIC_NOT_FOUND";
inline constexpr std::string_view kTopicUrlNotFound = "TOPIC_URL_NOT_FOUND";

// kConflict: `op` is not allowed in `status`.
Status WrongStatus(std::string_view op, core::GlobalStatus status, core::TransType type);
// kConflict: `gid` is a `stored` transaction, not a `requested` one.
Status WrongType(std::string_view gid, core::TransType stored, core::TransType requested);
// kConflict: `gid` has no prepared transaction.
Status NotPrepared(std::string_view gid);
// kConflict: branch `branch_id` of `gid` is registered with other content.
Status BranchMismatch(std::string_view gid, std::string_view branch_id);
// kConflict: forceStop of a final transaction.
Status AlreadyFinal(core::GlobalStatus status);
// kConflict: wait_result did not see the wanted final state.
Status NotSucceeded();
// A topic refusal with `code` and `reason`; `op` is recorded for kTopicNotFound.
Status Topic(Code code, std::string_view reason, std::string_view topic, std::string_view op = {});

}  // namespace dtx::engine::refusal
