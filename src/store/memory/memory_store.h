// MemoryStore: a Store held in process memory, for tests and deterministic simulation.
//
// Same semantics as the SQLite store (compare-and-set, kAlreadyExists, id assignment, ClaimDue
// order, List cursor and filters) except durability: nothing survives the process. Every callback
// runs inline, on the caller's thread, before the call returns, and after the store's mutex has
// been released (so a callback may call into the store again).
//
// Thread-safety: all methods are thread-safe (one mutex). Failures are values: kNotFound,
// kConflict, kAlreadyExists, kInvalidArgument for a limit out of range, kUnavailable after Close().
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>

#include "store/store.h"

namespace dtx::store {

class MemoryStore final : public Store {
 public:
  MemoryStore() = default;
  MemoryStore(const MemoryStore&) = delete;
  MemoryStore& operator=(const MemoryStore&) = delete;

  void Create(core::TransSnapshot trans, DoneCallback done) override;
  void CreateTakingKeys(core::TransSnapshot trans, Callback<bool> done) override;
  void Update(TransUpdate update, DoneCallback done) override;
  void AddBranches(std::string gid, core::GlobalStatus expected_status,
                   std::vector<core::BranchRow> rows, DoneCallback done) override;
  void Load(std::string gid, Callback<std::optional<core::TransSnapshot>> done) override;
  void List(ListQuery query, Callback<ListPage> done) override;
  void ClaimDue(int64_t now_ms, int limit, int64_t lease_until_ms, std::string owner,
                Callback<std::vector<std::string>> done) override;
  void ResetNextCronTime(std::string gid, int64_t now_ms, DoneCallback done) override;
  void ResetCronTime(int64_t now_ms, int64_t timeout_ms, int limit,
                     Callback<int64_t> done) override;
  void KvGet(std::string cat, std::string k, Callback<std::optional<KvRow>> done) override;
  void KvQuery(std::string cat, std::string k, Callback<std::vector<KvRow>> done) override;
  void KvScan(std::string cat, int64_t before_id, int limit, Callback<KvPage> done) override;
  void KvPut(std::string cat, std::string k, std::string v, int64_t expected_version,
             int64_t now_ms, DoneCallback done) override;
  void KvDelete(std::string cat, std::string k, DoneCallback done) override;
  void AcquireKeys(std::string gid, bool acquire, int64_t wait_until_ms,
                   Callback<core::KeyState> done) override;
  void WakeKeyWaiters(int64_t now_ms, int limit, Callback<std::vector<std::string>> done) override;
  void HasKeyWaiters(Callback<bool> done) override;
  StoreStats Stats() const override;
  // The key state of gid right now (a synchronous AcquireKeys without acquiring; tests, sim).
  core::KeyState PeekKeys(const std::string& gid) const;
  void Close() override;
  // memory_retention.cc
  void LoadAttempts(std::string gid, Callback<std::vector<AttemptRow>> done) override;
  void CountDue(int64_t now_ms, int64_t cap, Callback<int64_t> done) override;
  void DeleteFinished(int64_t before_ms, int limit, Callback<RetentionCount> done) override;
  void DeleteKvBefore(std::string cat, int64_t before_ms, int limit,
                      Callback<int64_t> done) override;

 private:
  // (next_cron_time_ms, id) of every unfinished transaction: the due-work index, the equivalent of
  // SQLite's partial index, ordered like its ORDER BY next_cron_time, id.
  using DueKey = std::pair<int64_t, int64_t>;

  Status CheckOpenLocked() const;
  Status CreateLocked(core::TransSnapshot& trans);
  Status UpdateLocked(const TransUpdate& u);
  Status AddBranchesLocked(const std::string& gid, core::GlobalStatus expected,
                           std::vector<core::BranchRow>& rows);
  Status KvPutLocked(const std::string& cat, const std::string& k, std::string v,
                     int64_t expected_version, int64_t now_ms);
  void Unindex(const core::GlobalTrans& g);
  void Index(const core::GlobalTrans& g);
  void CountWriteLocked(const Status& s);
  // memory_retention.cc: appends a branch update's new_attempts, keeping the newest kMaxAttemptLog.
  void RecordAttemptsLocked(const std::string& gid, const TransUpdate::BranchUpdate& bu);
  // Business keys (memory_keys.cc).
  void InsertKeysLocked(const std::string& gid, const std::vector<std::string>& keys);
  void EraseKeysLocked(const std::string& gid);
  core::KeyState KeyStateLocked(const std::string& gid) const;
  void SetWakeupLocked(const std::string& gid, int64_t next_cron_time_ms, bool clear_lease);

  mutable std::mutex mu_;
  bool closed_ = false;
  int64_t next_trans_id_ = 1;
  int64_t next_branch_id_ = 1;
  std::unordered_map<std::string, core::TransSnapshot> by_gid_;
  std::map<int64_t, core::TransSnapshot*> by_id_;  // points into by_gid_ (node-stable)
  std::set<DueKey> due_;
  int64_t next_kv_id_ = 1;
  std::map<int64_t, KvRow> kv_;  // by id
  // Call history: gid -> (branch_id, op) -> attempts by ascending seq.
  std::unordered_map<std::string,
                     std::map<std::pair<std::string, std::string>, std::vector<core::CallAttempt>>>
      attempts_;
  struct KeyRow {
    std::string key;
    std::string gid;
    bool held = false;
  };
  int64_t next_key_row_id_ = 1;
  std::map<int64_t, KeyRow> key_rows_;                             // by id (arrival order)
  std::map<std::string, std::set<int64_t>> key_index_;             // key -> row ids
  std::unordered_map<std::string, std::vector<int64_t>> keys_of_;  // gid -> row ids
  uint64_t commits_ = 0;
  uint64_t write_ops_ = 0;
};

}  // namespace dtx::store
