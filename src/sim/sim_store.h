// The simulated store: one durable MemoryStore shared by every coordinator (the "disk"), and per
// coordinator incarnation a store::Store connection with latency, failed operations, answers lost
// after the commit (PostgreSQL's "outcome unknown"), and a crash that drops or lands each operation
// still in flight. Operations of one connection are applied in the order they were issued (one
// writer, as in SQLite); their callbacks run from the world's events, never inline.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>

#include "sim/world.h"
#include "store/memory/memory_store.h"
#include "store/store.h"

namespace dtx::sim {

// Called after every write that the disk applied, with the transaction before and after (a
// transaction absent before has before.global.gid empty).
using WriteObserver =
    std::function<void(const core::TransSnapshot& before, const core::TransSnapshot& after)>;

class SimDisk {
 public:
  SimDisk() = default;
  store::MemoryStore& mem() { return mem_; }
  // The stored transaction right now, or nullopt.
  std::optional<core::TransSnapshot> Peek(const std::string& gid);
  void set_observer(WriteObserver o) { observer_ = std::move(o); }
  void Observe(const std::string& gid, const core::TransSnapshot& before);
  // Mutant "compare-and-set skipped": the disk applies updates whatever the stored status.
  bool skip_cas = false;

 private:
  store::MemoryStore mem_;
  WriteObserver observer_;
};

class SimStore final : public store::Store {
 public:
  SimStore(World& world, SimDisk& disk, int node);
  ~SimStore() override;

  // The process died: operations not applied yet either land or are lost (at random); no callback
  // runs any more.
  void Crash();

  void Create(core::TransSnapshot trans, store::DoneCallback done) override;
  void CreateTakingKeys(core::TransSnapshot trans, store::Callback<bool> done) override;
  void Update(store::TransUpdate update, store::DoneCallback done) override;
  void AddBranches(std::string gid, core::GlobalStatus expected_status,
                   std::vector<core::BranchRow> rows, store::DoneCallback done) override;
  void Load(std::string gid, store::Callback<std::optional<core::TransSnapshot>> done) override;
  void List(store::ListQuery query, store::Callback<store::ListPage> done) override;
  void ClaimDue(int64_t now_ms, int limit, int64_t lease_until_ms, std::string owner,
                store::Callback<std::vector<std::string>> done) override;
  void ResetNextCronTime(std::string gid, int64_t now_ms, store::DoneCallback done) override;
  void ResetCronTime(int64_t now_ms, int64_t timeout_ms, int limit,
                     store::Callback<int64_t> done) override;
  void KvGet(std::string cat, std::string k,
             store::Callback<std::optional<store::KvRow>> done) override;
  void KvQuery(std::string cat, std::string k,
               store::Callback<std::vector<store::KvRow>> done) override;
  void KvScan(std::string cat, int64_t before_id, int limit,
              store::Callback<store::KvPage> done) override;
  void KvPut(std::string cat, std::string k, std::string v, int64_t expected_version,
             int64_t now_ms, store::DoneCallback done) override;
  void KvDelete(std::string cat, std::string k, store::DoneCallback done) override;
  void AcquireKeys(std::string gid, bool acquire, int64_t wait_until_ms,
                   store::Callback<core::KeyState> done) override;
  void HasKeyWaiters(store::Callback<bool> done) override;
  void WakeKeyWaiters(int64_t now_ms, int limit,
                      store::Callback<std::vector<std::string>> done) override;
  store::StoreStats Stats() const override { return {}; }
  void Close() override {}

 private:
  // One queued operation: `apply` runs it on the disk and returns the callback to run with its
  // result (bound already), or an empty function.
  using Apply = std::function<std::function<void()>(bool fail, bool lose_answer)>;
  void Enqueue(bool is_write, Apply apply);
  void RunOp(uint64_t id);

  World& world_;
  SimDisk& disk_;
  int node_;
  int64_t last_apply_ms_ = 0;
  uint64_t next_id_ = 1;
  struct Op {
    bool is_write;
    Apply apply;
    uint64_t event;
  };
  std::map<uint64_t, Op> queued_;                      // not applied yet
  std::map<uint64_t, std::function<void()>> answers_;  // applied, answer on its way
  std::shared_ptr<bool> alive_;
};

}  // namespace dtx::sim
