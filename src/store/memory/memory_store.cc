#include "store/memory/memory_store.h"

#include <algorithm>
#include <iterator>
#include <limits>

#include "store/internal.h"

namespace dtx::store {

namespace {

core::BranchRow* FindBranch(core::TransSnapshot& t, const std::string& branch_id,
                            const std::string& op) {
  for (auto& b : t.branches) {
    if (b.branch_id == branch_id && b.op == op) return &b;
  }
  return nullptr;
}

}  // namespace

std::unique_ptr<Store> NewMemoryStore() { return std::make_unique<MemoryStore>(); }

Status MemoryStore::CheckOpenLocked() const {
  if (closed_) return Status::Unavailable("store closed");
  return Status::Ok();
}

void MemoryStore::Unindex(const core::GlobalTrans& g) {
  if (!core::IsFinal(g.status)) due_.erase({g.next_cron_time_ms, g.id});
}

void MemoryStore::Index(const core::GlobalTrans& g) {
  if (!core::IsFinal(g.status)) due_.insert({g.next_cron_time_ms, g.id});
}

void MemoryStore::CountWriteLocked(const Status& s) {
  if (!s.ok()) return;
  ++commits_;
  ++write_ops_;
}

Status MemoryStore::CreateLocked(core::TransSnapshot& trans) {
  const std::string& gid = trans.global.gid;
  if (by_gid_.contains(gid)) return internal::TransExists(gid);
  // (branch_id, op) is unique within a gid; check before anything is assigned, so a refused Create
  // consumes no id (as SQLite's savepoint rollback also restores the AUTOINCREMENT sequence).
  if (const core::BranchRow* dup = internal::FindDuplicateBranch(trans.branches)) {
    return internal::BranchExists(gid, dup->branch_id, dup->op);
  }
  trans.global.id = next_trans_id_++;
  for (auto& b : trans.branches) {
    b.id = next_branch_id_++;
    b.gid = gid;
  }
  InsertKeysLocked(gid, trans.business_keys);
  trans.business_keys.clear();  // the key rows hold them
  auto [it, inserted] = by_gid_.emplace(gid, std::move(trans));
  DTX_ASSERT(inserted);
  by_id_.emplace(it->second.global.id, &it->second);
  Index(it->second.global);
  return Status::Ok();
}

void MemoryStore::Create(core::TransSnapshot trans, DoneCallback done) {
  Status s;
  {
    std::lock_guard lock(mu_);
    s = CheckOpenLocked();
    if (s.ok()) s = CreateLocked(trans);
    CountWriteLocked(s);
  }
  done(std::move(s));
}

void MemoryStore::CreateTakingKeys(core::TransSnapshot trans, Callback<bool> done) {
  Result<bool> r = false;
  {
    const std::string gid = trans.global.gid;
    std::lock_guard lock(mu_);
    Status s = CheckOpenLocked();
    if (s.ok()) s = CreateLocked(trans);
    CountWriteLocked(s);
    if (s.ok()) {
      r = KeyStateLocked(gid).held;
    } else {
      r = std::move(s);
    }
  }
  done(std::move(r));
}

Status MemoryStore::UpdateLocked(const TransUpdate& u) {
  auto it = by_gid_.find(u.gid);
  if (it == by_gid_.end()) return internal::TransNotFound(u.gid);
  core::TransSnapshot& t = it->second;
  if (t.global.status != u.expected_status) {
    return internal::ConflictStatus(u.gid, u.expected_status, t.global.status);
  }
  if ((u.expected_owner && t.global.owner != *u.expected_owner) ||
      (u.due_by_ms &&
       (t.global.next_cron_time_ms > *u.due_by_ms || t.global.lease_until_ms > *u.due_by_ms))) {
    return internal::LeaseConflict(u.gid);
  }
  // All or nothing: every addressed branch row must exist before anything changes.
  for (const auto& bu : u.branches) {
    if (FindBranch(t, bu.branch_id, bu.op) == nullptr) {
      return internal::BranchNotFound(u.gid, bu.branch_id, bu.op);
    }
  }
  core::GlobalTrans& g = t.global;
  Unindex(g);
  if (u.new_status) g.status = *u.new_status;
  if (u.rollback_reason) g.rollback_reason = *u.rollback_reason;
  if (u.custom_data) g.custom_data = *u.custom_data;
  if (u.options) g.options = *u.options;
  if (u.next_cron_time_ms) g.next_cron_time_ms = *u.next_cron_time_ms;
  if (u.next_cron_interval_ms) g.next_cron_interval_ms = *u.next_cron_interval_ms;
  if (u.retry_count) g.retry_count = *u.retry_count;
  if (u.finish_time_ms) g.finish_time_ms = *u.finish_time_ms;
  if (u.rollback_time_ms) g.rollback_time_ms = *u.rollback_time_ms;
  if (u.owner) g.owner = *u.owner;
  if (u.lease_until_ms) g.lease_until_ms = *u.lease_until_ms;
  g.update_time_ms = u.update_time_ms;
  Index(g);
  if (core::IsFinal(g.status)) EraseKeysLocked(u.gid);  // the final write releases the keys
  for (const auto& bu : u.branches) {
    core::BranchRow* b = FindBranch(t, bu.branch_id, bu.op);
    if (bu.status) b->status = *bu.status;
    if (bu.attempts) b->attempts = *bu.attempts;
    if (bu.last_error) b->last_error = *bu.last_error;
    if (bu.finish_time_ms) b->finish_time_ms = *bu.finish_time_ms;
    if (!bu.new_attempts.empty()) RecordAttemptsLocked(u.gid, bu);
    b->update_time_ms = u.update_time_ms;
  }
  return Status::Ok();
}

void MemoryStore::Update(TransUpdate update, DoneCallback done) {
  Status s;
  {
    std::lock_guard lock(mu_);
    s = CheckOpenLocked();
    if (s.ok()) s = UpdateLocked(update);
    CountWriteLocked(s);
  }
  done(std::move(s));
}

Status MemoryStore::AddBranchesLocked(const std::string& gid, core::GlobalStatus expected,
                                      std::vector<core::BranchRow>& rows) {
  auto it = by_gid_.find(gid);
  if (it == by_gid_.end()) return internal::TransNotFound(gid);
  core::TransSnapshot& t = it->second;
  if (t.global.status != expected) return internal::ConflictStatus(gid, expected, t.global.status);
  std::set<std::pair<std::string, std::string>> keys;
  for (const auto& b : t.branches) keys.insert({b.branch_id, b.op});
  for (const auto& b : rows) {
    if (!keys.insert({b.branch_id, b.op}).second)
      return internal::BranchExists(gid, b.branch_id, b.op);
  }
  for (auto& b : rows) {
    b.id = next_branch_id_++;
    b.gid = gid;
    t.branches.push_back(std::move(b));
  }
  return Status::Ok();
}

void MemoryStore::AddBranches(std::string gid, core::GlobalStatus expected_status,
                              std::vector<core::BranchRow> rows, DoneCallback done) {
  Status s;
  {
    std::lock_guard lock(mu_);
    s = CheckOpenLocked();
    if (s.ok()) s = AddBranchesLocked(gid, expected_status, rows);
    CountWriteLocked(s);
  }
  done(std::move(s));
}

void MemoryStore::Load(std::string gid, Callback<std::optional<core::TransSnapshot>> done) {
  std::optional<Result<std::optional<core::TransSnapshot>>> r;
  {
    std::lock_guard lock(mu_);
    if (Status s = CheckOpenLocked(); !s.ok()) {
      r.emplace(std::move(s));
    } else if (auto it = by_gid_.find(gid); it == by_gid_.end()) {
      r.emplace(std::optional<core::TransSnapshot>());
    } else {
      r.emplace(std::optional<core::TransSnapshot>(it->second));
    }
  }
  done(std::move(*r));
}

void MemoryStore::List(ListQuery q, Callback<ListPage> done) {
  if (Status s = internal::ValidateListQuery(q); !s.ok()) return done(std::move(s));
  ListPage page;
  bool closed = false;
  {
    std::lock_guard lock(mu_);
    closed = closed_;
    auto end = q.before_id > 0 ? by_id_.lower_bound(q.before_id) : by_id_.end();
    for (auto it = std::make_reverse_iterator(end); !closed && it != by_id_.rend(); ++it) {
      const core::GlobalTrans& g = it->second->global;
      if (!q.gid.empty() && g.gid != q.gid) continue;
      if (!q.status.empty() && core::ToString(g.status) != q.status) continue;
      if (!q.trans_type.empty() && core::ToString(g.trans_type) != q.trans_type) continue;
      if (q.create_time_start_ms != 0 && g.create_time_ms < q.create_time_start_ms) continue;
      if (q.create_time_end_ms != 0 && g.create_time_ms > q.create_time_end_ms) continue;
      page.transactions.push_back(g);
      if (static_cast<int>(page.transactions.size()) == q.limit) break;
    }
  }
  if (closed) return done(Status::Unavailable("store closed"));
  if (static_cast<int>(page.transactions.size()) == q.limit) {
    page.next_before_id = page.transactions.back().id;
  }
  done(std::move(page));
}

void MemoryStore::ClaimDue(int64_t now_ms, int limit, int64_t lease_until_ms, std::string owner,
                           Callback<std::vector<std::string>> done) {
  if (Status s = internal::ValidateClaimLimit("claim", limit); !s.ok()) return done(std::move(s));
  std::vector<std::string> gids;
  bool closed = false;
  {
    std::lock_guard lock(mu_);
    closed = closed_;
    if (!closed) {
      std::vector<int64_t> ids;
      for (auto it = due_.begin(); it != due_.end() && it->first <= now_ms; ++it) {
        if (by_id_.at(it->second)->global.lease_until_ms > now_ms) continue;  // a round holds it
        ids.push_back(it->second);
        if (static_cast<int>(ids.size()) == limit) break;
      }
      for (int64_t id : ids) {
        core::TransSnapshot* t = by_id_.at(id);
        Unindex(t->global);
        t->global.next_cron_time_ms = lease_until_ms;
        t->global.lease_until_ms = lease_until_ms;
        t->global.owner = owner;
        Index(t->global);
        gids.push_back(t->global.gid);
      }
      ++commits_;
      ++write_ops_;
    }
  }
  if (closed) return done(Status::Unavailable("store closed"));
  done(std::move(gids));
}

void MemoryStore::ResetNextCronTime(std::string gid, int64_t now_ms, DoneCallback done) {
  Status s;
  {
    std::lock_guard lock(mu_);
    s = CheckOpenLocked();
    if (s.ok()) {
      auto it = by_gid_.find(gid);
      if (it == by_gid_.end()) {
        s = internal::TransNotFound(gid);
      } else if (!core::IsFinal(it->second.global.status)) {
        Unindex(it->second.global);
        it->second.global.next_cron_time_ms = now_ms;
        Index(it->second.global);
      }
    }
    CountWriteLocked(s);
  }
  done(std::move(s));
}

void MemoryStore::ResetCronTime(int64_t now_ms, int64_t timeout_ms, int limit,
                                Callback<int64_t> done) {
  if (Status s = internal::ValidateClaimLimit("reset cron time", limit); !s.ok()) {
    return done(std::move(s));
  }
  int64_t changed = 0;
  bool closed = false;
  {
    std::lock_guard lock(mu_);
    closed = closed_;
    if (!closed) {
      const int64_t threshold = internal::SaturatingAdd(now_ms, timeout_ms);
      std::vector<int64_t> ids;
      for (auto it = due_.upper_bound({threshold, std::numeric_limits<int64_t>::max()});
           it != due_.end() && static_cast<int>(ids.size()) < limit; ++it) {
        ids.push_back(it->second);
      }
      for (int64_t id : ids) {
        core::TransSnapshot* t = by_id_.at(id);
        Unindex(t->global);
        t->global.next_cron_time_ms = now_ms;
        Index(t->global);
      }
      changed = static_cast<int64_t>(ids.size());
      ++commits_;
      ++write_ops_;
    }
  }
  if (closed) return done(Status::Unavailable("store closed"));
  done(changed);
}

void MemoryStore::KvGet(std::string cat, std::string k, Callback<std::optional<KvRow>> done) {
  std::optional<KvRow> row;
  bool closed = false;
  {
    std::lock_guard lock(mu_);
    closed = closed_;
    for (const auto& [id, r] : kv_) {
      if (r.cat == cat && r.k == k) row = r;
    }
  }
  if (closed) return done(Status::Unavailable("store closed"));
  done(std::move(row));
}

void MemoryStore::KvQuery(std::string cat, std::string k, Callback<std::vector<KvRow>> done) {
  std::vector<KvRow> rows;
  bool closed = false;
  {
    std::lock_guard lock(mu_);
    closed = closed_;
    for (const auto& [id, r] : kv_) {
      if ((cat.empty() || r.cat == cat) && (k.empty() || r.k == k)) rows.push_back(r);
    }
  }
  if (closed) return done(Status::Unavailable("store closed"));
  done(std::move(rows));
}

void MemoryStore::KvScan(std::string cat, int64_t before_id, int limit, Callback<KvPage> done) {
  if (Status s = internal::ValidateKvScan(before_id, limit); !s.ok()) return done(std::move(s));
  KvPage page;
  bool closed = false;
  {
    std::lock_guard lock(mu_);
    closed = closed_;
    auto end = before_id > 0 ? kv_.lower_bound(before_id) : kv_.end();
    for (auto it = std::make_reverse_iterator(end); !closed && it != kv_.rend(); ++it) {
      if (it->second.cat != cat) continue;
      page.rows.push_back(it->second);
      if (static_cast<int>(page.rows.size()) == limit) break;
    }
  }
  if (closed) return done(Status::Unavailable("store closed"));
  if (static_cast<int>(page.rows.size()) == limit) page.next_before_id = page.rows.back().id;
  done(std::move(page));
}

Status MemoryStore::KvPutLocked(const std::string& cat, const std::string& k, std::string v,
                                int64_t expected_version, int64_t now_ms) {
  auto it = std::find_if(kv_.begin(), kv_.end(),
                         [&](const auto& e) { return e.second.cat == cat && e.second.k == k; });
  if (expected_version == 0) {
    if (it != kv_.end()) return internal::KvExists(cat, k);
    const int64_t id = next_kv_id_++;
    kv_.emplace(id, KvRow{.id = id,
                          .cat = cat,
                          .k = k,
                          .v = std::move(v),
                          .version = 1,
                          .create_time_ms = now_ms,
                          .update_time_ms = now_ms});
    return Status::Ok();
  }
  if (it == kv_.end() || it->second.version != expected_version) {
    return internal::KvVersionMismatch(cat, k, expected_version);
  }
  it->second.v = std::move(v);
  it->second.version = expected_version + 1;
  it->second.update_time_ms = now_ms;
  return Status::Ok();
}

void MemoryStore::KvPut(std::string cat, std::string k, std::string v, int64_t expected_version,
                        int64_t now_ms, DoneCallback done) {
  Status s = internal::ValidateKvPut(cat, k, expected_version);
  if (s.ok()) {
    std::lock_guard lock(mu_);
    s = CheckOpenLocked();
    if (s.ok()) s = KvPutLocked(cat, k, std::move(v), expected_version, now_ms);
    CountWriteLocked(s);
  }
  done(std::move(s));
}

void MemoryStore::KvDelete(std::string cat, std::string k, DoneCallback done) {
  Status s;
  {
    std::lock_guard lock(mu_);
    s = CheckOpenLocked();
    if (s.ok()) {
      auto it = std::find_if(kv_.begin(), kv_.end(),
                             [&](const auto& e) { return e.second.cat == cat && e.second.k == k; });
      if (it == kv_.end()) {
        s = internal::KvNotFound(cat, k);
      } else {
        kv_.erase(it);
      }
    }
    CountWriteLocked(s);
  }
  done(std::move(s));
}

StoreStats MemoryStore::Stats() const {
  std::lock_guard lock(mu_);
  return StoreStats{.commits = commits_, .write_ops = write_ops_, .queued_writes = 0};
}

void MemoryStore::Close() {
  std::lock_guard lock(mu_);
  closed_ = true;
}

}  // namespace dtx::store
