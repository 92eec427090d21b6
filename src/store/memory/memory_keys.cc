// MemoryStore: business keys (store.h AcquireKeys / WakeKeyWaiters), the reference semantics the
// SQLite and PostgreSQL stores follow.
#include <algorithm>

#include "store/memory/memory_store.h"

namespace dtx::store {

void MemoryStore::InsertKeysLocked(const std::string& gid, const std::vector<std::string>& keys) {
  if (keys.empty()) return;
  // None of its keys has any row: it takes them at insert (as SQLite does, store/sqlite/keys.h).
  const bool free = std::none_of(keys.begin(), keys.end(),
                                 [&](const std::string& k) { return key_index_.contains(k); });
  std::vector<int64_t>& mine = keys_of_[gid];
  for (const std::string& k : keys) {
    const int64_t id = next_key_row_id_++;
    key_rows_.emplace(id, KeyRow{k, gid, free});
    key_index_[k].insert(id);
    mine.push_back(id);
  }
}

void MemoryStore::EraseKeysLocked(const std::string& gid) {
  auto it = keys_of_.find(gid);
  if (it == keys_of_.end()) return;
  for (int64_t id : it->second) {
    auto row = key_rows_.find(id);
    auto idx = key_index_.find(row->second.key);
    idx->second.erase(id);
    if (idx->second.empty()) key_index_.erase(idx);
    key_rows_.erase(row);
  }
  keys_of_.erase(it);
}

core::KeyState MemoryStore::KeyStateLocked(const std::string& gid) const {
  core::KeyState st;
  auto it = keys_of_.find(gid);
  if (it == keys_of_.end()) {
    st.held = true;  // no key rows (none given, or final)
    return st;
  }
  st.held = std::all_of(it->second.begin(), it->second.end(),
                        [&](int64_t id) { return key_rows_.at(id).held; });
  if (st.held) return st;
  // The first row ahead on one of its keys: a holder, else the earliest waiter.
  for (int64_t id : it->second) {
    const KeyRow& mine = key_rows_.at(id);
    const int64_t* ahead = nullptr;
    for (const int64_t& other : key_index_.at(mine.key)) {
      const KeyRow& o = key_rows_.at(other);
      if (o.gid == gid) continue;
      if (o.held) {
        ahead = &other;
        break;
      }
      if (other < id && ahead == nullptr) ahead = &other;
    }
    if (ahead != nullptr) {
      st.waiting_for = key_rows_.at(*ahead).gid;
      st.waiting_key = mine.key;
      return st;
    }
  }
  return st;  // not held, nobody ahead: it may acquire
}

core::KeyState MemoryStore::PeekKeys(const std::string& gid) const {
  std::lock_guard lock(mu_);
  return KeyStateLocked(gid);
}

void MemoryStore::SetWakeupLocked(const std::string& gid, int64_t next_cron_time_ms,
                                  bool clear_lease) {
  auto t = by_gid_.find(gid);
  if (t == by_gid_.end() || core::IsFinal(t->second.global.status)) return;
  core::GlobalTrans& g = t->second.global;
  Unindex(g);
  g.next_cron_time_ms = next_cron_time_ms;
  if (clear_lease) g.lease_until_ms = 0;
  Index(g);
}

void MemoryStore::AcquireKeys(std::string gid, bool acquire, int64_t wait_until_ms,
                              Callback<core::KeyState> done) {
  Result<core::KeyState> r = Status::Internal("unset");
  {
    std::lock_guard lock(mu_);
    Status s = CheckOpenLocked();
    if (!s.ok()) {
      r = s;
    } else {
      core::KeyState st = KeyStateLocked(gid);
      if (!st.held && st.waiting_for.empty() && acquire) {
        for (int64_t id : keys_of_.at(gid)) key_rows_.at(id).held = true;
        st.held = true;
        // A parked waiter's wake-up (its timeout, or a day away) comes back to its round's lease
        // in the same write (due at once if no lease covers it: a round whose process stopped
        // right after this write leaves it to recovery), so that a crash never leaves it, and
        // everything queued behind it, asleep until then (dtx-sim --workload keys, seed 3478).
        auto t = by_gid_.find(gid);
        if (t != by_gid_.end() &&
            t->second.global.next_cron_time_ms > t->second.global.lease_until_ms) {
          SetWakeupLocked(gid, t->second.global.lease_until_ms, false);
        }
      }
      if (!st.held && wait_until_ms > 0) SetWakeupLocked(gid, wait_until_ms, true);
      CountWriteLocked(s);
      r = std::move(st);
    }
  }
  done(std::move(r));
}

void MemoryStore::HasKeyWaiters(Callback<bool> done) {
  Result<bool> r = false;
  {
    std::lock_guard lock(mu_);
    Status s = CheckOpenLocked();
    if (s.ok()) {
      r = std::any_of(key_rows_.begin(), key_rows_.end(),
                      [](const auto& row) { return !row.second.held; });
    } else {
      r = std::move(s);
    }
  }
  done(std::move(r));
}

void MemoryStore::WakeKeyWaiters(int64_t now_ms, int limit,
                                 Callback<std::vector<std::string>> done) {
  Result<std::vector<std::string>> r = Status::Internal("unset");
  {
    std::lock_guard lock(mu_);
    Status s = CheckOpenLocked();
    if (!s.ok()) {
      r = s;
    } else if (limit < 1 || limit > kMaxClaimLimit) {
      r = Status::InvalidArgument("WakeKeyWaiters: limit out of range");
    } else {
      std::vector<std::string> woken;
      std::set<std::string> seen;
      for (auto& [id, row] : key_rows_) {
        if (static_cast<int>(woken.size()) >= limit) break;
        if (row.held || !seen.insert(row.gid).second) continue;
        const core::KeyState st = KeyStateLocked(row.gid);
        if (st.held || !st.waiting_for.empty()) continue;
        for (int64_t mine : keys_of_.at(row.gid)) key_rows_.at(mine).held = true;
        SetWakeupLocked(row.gid, now_ms, false);
        woken.push_back(row.gid);
      }
      CountWriteLocked(s);
      r = std::move(woken);
    }
  }
  done(std::move(r));
}

}  // namespace dtx::store
