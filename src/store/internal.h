// Checks shared by the Store implementations, so that memory and SQLite refuse the same requests
// with the same messages. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <limits>
#include <string>

#include "store/store.h"

namespace dtx::store::internal {

// a + b, clamped to the int64 range (a caller-supplied timeout must not overflow into the past).
inline int64_t SaturatingAdd(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) {
    return b > 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
  }
  return r;
}

inline Status ValidateListQuery(const ListQuery& q) {
  if (q.limit < 1 || q.limit > kMaxListLimit) {
    return Status::InvalidArgument("list limit must be 1.." + std::to_string(kMaxListLimit) +
                                   ", got " + std::to_string(q.limit));
  }
  if (q.before_id < 0) return Status::InvalidArgument("list before_id must be >= 0");
  return Status::Ok();
}

inline Status ValidateClaimLimit(const char* what, int limit) {
  if (limit < 1 || limit > kMaxClaimLimit) {
    return Status::InvalidArgument(std::string(what) + " limit must be 1.." +
                                   std::to_string(kMaxClaimLimit) + ", got " +
                                   std::to_string(limit));
  }
  return Status::Ok();
}

inline Status ConflictStatus(const std::string& gid, core::GlobalStatus expected,
                             core::GlobalStatus actual) {
  return Status::Conflict("transaction " + gid + " is " + std::string(core::ToString(actual)) +
                          ", expected " + std::string(core::ToString(expected)));
}

inline Status TransNotFound(const std::string& gid) {
  return Status::NotFound("transaction " + gid + " not found");
}

inline Status BranchNotFound(const std::string& gid, const std::string& branch_id,
                             const std::string& op) {
  return Status::NotFound("branch (" + branch_id + ", " + op + ") of transaction " + gid +
                          " not found");
}

inline Status BranchExists(const std::string& gid, const std::string& branch_id,
                           const std::string& op) {
  return Status::AlreadyExists("branch (" + branch_id + ", " + op + ") of transaction " + gid +
                               " already exists");
}

}  // namespace dtx::store::internal
