// MemoryStore: the retention and monitoring operations (store.h), with SQLite's semantics.
#include <algorithm>

#include "store/internal.h"
#include "store/memory/memory_store.h"

namespace dtx::store {

void MemoryStore::RecordAttemptsLocked(const std::string& gid,
                                       const TransUpdate::BranchUpdate& bu) {
  auto& log = attempts_[gid][{bu.branch_id, bu.op}];
  for (const core::CallAttempt& a : bu.new_attempts) {
    // A seq already kept is not recorded again (an update re-applied after an unknown outcome).
    auto at = std::lower_bound(log.begin(), log.end(), a.seq,
                               [](const core::CallAttempt& x, int64_t seq) { return x.seq < seq; });
    if (at == log.end() || at->seq != a.seq) log.insert(at, a);
  }
  if (log.size() > core::kMaxAttemptLog) {
    log.erase(log.begin(), log.end() - static_cast<std::ptrdiff_t>(core::kMaxAttemptLog));
  }
}

void MemoryStore::LoadAttempts(std::string gid, Callback<std::vector<AttemptRow>> done) {
  std::vector<AttemptRow> rows;
  {
    std::lock_guard lock(mu_);
    if (closed_) return done(Status::Unavailable("store closed"));
    auto it = attempts_.find(gid);
    if (it != attempts_.end()) {
      for (const auto& [key, log] : it->second) {
        for (const core::CallAttempt& a : log) rows.push_back({key.first, key.second, a});
      }
    }
  }
  done(std::move(rows));
}

void MemoryStore::CountDue(int64_t now_ms, int64_t cap, Callback<int64_t> done) {
  if (Status s = internal::ValidateCountCap(cap); !s.ok()) return done(std::move(s));
  int64_t n = 0;
  {
    std::lock_guard lock(mu_);
    if (closed_) return done(Status::Unavailable("store closed"));
    for (auto it = due_.begin(); it != due_.end() && it->first <= now_ms && n < cap; ++it) {
      if (by_id_.at(it->second)->global.lease_until_ms <= now_ms) ++n;
    }
  }
  done(n);
}

void MemoryStore::DeleteFinished(int64_t before_ms, int limit, Callback<RetentionCount> done) {
  if (Status s = internal::ValidateRetentionLimit(limit); !s.ok()) return done(std::move(s));
  RetentionCount count;
  {
    std::lock_guard lock(mu_);
    if (closed_) return done(Status::Unavailable("store closed"));
    const int64_t newest = by_id_.empty() ? 0 : by_id_.rbegin()->first;
    for (auto it = by_id_.begin(); it != by_id_.end() && count.transactions < limit;) {
      const core::GlobalTrans& g = it->second->global;
      if (it->first == newest || !core::IsFinal(g.status) || g.update_time_ms >= before_ms) {
        ++it;
        continue;
      }
      count.transactions += 1;
      count.branches += static_cast<int64_t>(it->second->branches.size());
      const std::string gid = g.gid;
      it = by_id_.erase(it);
      by_gid_.erase(gid);
      attempts_.erase(gid);
    }
    ++commits_;
    ++write_ops_;
  }
  done(count);
}

void MemoryStore::DeleteKvBefore(std::string cat, int64_t before_ms, int limit,
                                 Callback<int64_t> done) {
  if (Status s = internal::ValidateRetentionLimit(limit); !s.ok()) return done(std::move(s));
  if (cat.empty()) return done(Status::InvalidArgument("kv retention needs a category"));
  int64_t n = 0;
  {
    std::lock_guard lock(mu_);
    if (closed_) return done(Status::Unavailable("store closed"));
    for (auto it = kv_.begin(); it != kv_.end() && n < limit;) {
      if (internal::KvCatMatches(it->second.cat, cat) && it->second.update_time_ms < before_ms) {
        it = kv_.erase(it);
        ++n;
      } else {
        ++it;
      }
    }
    ++commits_;
    ++write_ops_;
  }
  done(n);
}

}  // namespace dtx::store
