#include "engine/refusal.h"

#include <fmt/format.h>

namespace dtx::engine::refusal {
namespace {

std::string Str(std::string_view s) { return std::string(s); }

Status With(Status status, std::string_view reason,
            std::vector<std::pair<std::string, std::string>> facts) {
  return std::move(status).WithInfo(ErrorInfo{Str(reason), std::move(facts)});
}

}  // namespace

Status WrongStatus(std::string_view op, core::GlobalStatus status, core::TransType type) {
  return With(Status::Conflict(fmt::format("{} refused: the {} transaction is {}", op,
                                           core::ToString(type), core::ToString(status))),
              kWrongStatus,
              {{"op", Str(op)},
               {"status", Str(core::ToString(status))},
               {"type", Str(core::ToString(type))}});
}

Status WrongType(std::string_view gid, core::TransType stored, core::TransType requested) {
  return With(Status::Conflict(fmt::format("gid {} is a {} transaction, not {}", gid,
                                           core::ToString(stored), core::ToString(requested))),
              kWrongType,
              {{"gid", Str(gid)},
               {"stored_type", Str(core::ToString(stored))},
               {"type", Str(core::ToString(requested))}});
}

Status NotPrepared(std::string_view gid) {
  return With(Status::Conflict(fmt::format("gid {} has no prepared transaction", gid)),
              kNotPrepared, {{"gid", Str(gid)}});
}

Status BranchMismatch(std::string_view gid, std::string_view branch_id) {
  return With(Status::Conflict(fmt::format("branch {} of gid {} is registered with other content",
                                           branch_id, gid)),
              kBranchMismatch, {{"gid", Str(gid)}, {"branch_id", Str(branch_id)}});
}

Status AlreadyFinal(core::GlobalStatus status) {
  return With(
      Status::Conflict(fmt::format("the transaction is already {}", core::ToString(status))),
      kAlreadyFinal, {{"status", Str(core::ToString(status))}});
}

Status NotSucceeded() {
  return With(Status::Conflict("the round did not end in the wanted state"), kNotSucceeded, {});
}

Status Topic(Code code, std::string_view reason, std::string_view topic, std::string_view op) {
  std::vector<std::pair<std::string, std::string>> facts{{"topic", Str(topic)}};
  if (!op.empty()) facts.emplace_back("op", Str(op));
  return With(Status(code, fmt::format("topic '{}': {}", topic, reason)), reason, std::move(facts));
}

}  // namespace dtx::engine::refusal
