// Checks and row decoding shared by the Store implementations, so that memory, SQLite and
// PostgreSQL refuse the same requests with the same messages. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "store/store.h"

namespace dtx::store::internal {

// The completion of a write whose operation fills in `value`: `done` gets the value once the write
// is committed, or the status of its failure.
template <class T>
std::function<void(Status)> ValueWhenCommitted(std::shared_ptr<T> value, Callback<T> done) {
  return [value = std::move(value), done = std::move(done)](Status s) {
    if (s.ok()) {
      done(std::move(*value));
    } else {
      done(std::move(s));
    }
  };
}

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

inline Status ValidateKvScan(int64_t before_id, int limit) {
  if (limit < 1 || limit > kMaxListLimit) {
    return Status::InvalidArgument("kv scan limit must be 1.." + std::to_string(kMaxListLimit) +
                                   ", got " + std::to_string(limit));
  }
  if (before_id < 0) return Status::InvalidArgument("kv scan before_id must be >= 0");
  return Status::Ok();
}

inline Status ValidateKvPut(const std::string& cat, const std::string& k, int64_t expected) {
  if (cat.empty() || k.empty()) return Status::InvalidArgument("kv put needs a cat and a key");
  if (expected < 0) return Status::InvalidArgument("kv expected_version must be >= 0");
  return Status::Ok();
}

inline Status KvExists(const std::string& cat, const std::string& k) {
  return Status::Conflict("kv " + cat + "/" + k + " already exists");
}

inline Status KvVersionMismatch(const std::string& cat, const std::string& k, int64_t expected) {
  return Status::Conflict("kv " + cat + "/" + k + " is not at version " + std::to_string(expected) +
                          " (changed concurrently or deleted)");
}

inline Status KvNotFound(const std::string& cat, const std::string& k) {
  return Status::NotFound("kv " + cat + "/" + k + " not found");
}

inline Status ValidateClaimLimit(const char* what, int limit) {
  if (limit < 1 || limit > kMaxClaimLimit) {
    return Status::InvalidArgument(std::string(what) + " limit must be 1.." +
                                   std::to_string(kMaxClaimLimit) + ", got " +
                                   std::to_string(limit));
  }
  return Status::Ok();
}

inline Status ValidateRetentionLimit(int limit) {
  if (limit < 1 || limit > kMaxRetentionBatch) {
    return Status::InvalidArgument("retention batch must be 1.." +
                                   std::to_string(kMaxRetentionBatch) + ", got " +
                                   std::to_string(limit));
  }
  return Status::Ok();
}

inline Status ValidateCountCap(int64_t cap) {
  if (cap < 1 || cap > kMaxCountCap) {
    return Status::InvalidArgument("count cap must be 1.." + std::to_string(kMaxCountCap));
  }
  return Status::Ok();
}

// Whether a key-value category belongs to `cat` in DeleteKvBefore: `cat` itself or `cat:...`.
inline bool KvCatMatches(std::string_view row_cat, std::string_view cat) {
  return row_cat == cat ||
         (row_cat.size() > cat.size() && row_cat.starts_with(cat) && row_cat[cat.size()] == ':');
}

inline Status ConflictStatus(const std::string& gid, core::GlobalStatus expected,
                             core::GlobalStatus actual) {
  return Status::Conflict("transaction " + gid + " is " + std::string(core::ToString(actual)) +
                          ", expected " + std::string(core::ToString(expected)));
}

// An update whose expected_owner or due_by_ms did not match: another coordinator holds the lease.
inline Status LeaseConflict(const std::string& gid) {
  return Status::Conflict("transaction " + gid + " is leased by another coordinator");
}

inline Status TransNotFound(const std::string& gid) {
  return Status::NotFound("transaction " + gid + " not found");
}

inline Status TransExists(const std::string& gid) {
  return Status::AlreadyExists("transaction " + gid + " already exists");
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

// The first row whose (branch_id, op) repeats an earlier row's, or nullptr. (branch_id, op) is
// unique within a gid, so such a Create is refused before anything is written or an id assigned.
inline const core::BranchRow* FindDuplicateBranch(const std::vector<core::BranchRow>& rows) {
  std::set<std::pair<std::string_view, std::string_view>> keys;
  for (const auto& b : rows) {
    if (!keys.insert({b.branch_id, b.op}).second) return &b;
  }
  return nullptr;
}

inline Status CorruptRow(const std::string& what) {
  return Status::Internal("corrupt row in dtx database: " + what);
}

// Decodes the columns of a trans_global row that are stored as wire strings (trans_type, status)
// or JSON (options; empty = defaults) into `g` (whose gid is already set, for the messages).
inline Status DecodeGlobalColumns(std::string_view trans_type, std::string_view status,
                                  std::string_view options, core::GlobalTrans* g) {
  auto t = core::ParseTransType(trans_type);
  if (!t) return CorruptRow("trans_type '" + std::string(trans_type) + "' of " + g->gid);
  auto st = core::ParseGlobalStatus(status);
  if (!st) return CorruptRow("status '" + std::string(status) + "' of " + g->gid);
  g->trans_type = *t;
  g->status = *st;
  if (!options.empty()) {
    auto o = core::DecodeOptionsJson(options);
    if (!o.ok()) return CorruptRow("options of " + g->gid + ": " + o.status().message());
    g->options = std::move(o).value();
  }
  return Status::Ok();
}

inline Status DecodeBranchStatus(std::string_view status, core::BranchRow* b) {
  auto st = core::ParseBranchStatus(status);
  if (!st) return CorruptRow("branch status '" + std::string(status) + "' of " + b->gid);
  b->status = *st;
  return Status::Ok();
}

}  // namespace dtx::store::internal
