// The participant services and applications of the simulated world, with DTM's sub-transaction
// barrier semantics (idempotency, null compensation, anti-hanging) and the business effects that
// the invariants check: a saga step's action and compensation, a TCC branch's try/confirm/cancel, a
// msg branch's delivery and the producing application's local transaction.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "sim/world.h"

namespace dtx::sim {

// URLs of the simulated services; the path says which handler answers.
inline constexpr const char* kSagaAction = "http://svc.sim/saga/action";
inline constexpr const char* kSagaCompensate = "http://svc.sim/saga/compensate";
inline constexpr const char* kTccConfirm = "http://svc.sim/tcc/confirm";
inline constexpr const char* kTccCancel = "http://svc.sim/tcc/cancel";
inline constexpr const char* kMsgAction = "http://svc.sim/msg/action";
inline constexpr const char* kQueryPrepared = "http://app.sim/msg/query_prepared";
// The receiver of notifications (its URL carries ?gid=&branch_id=01&op=notify for the records).
inline constexpr const char* kNotifyUrl = "http://merchant.sim/notify";

// The local transaction of a msg's producer (seed 002 / DoAndSubmit with the barrier).
enum class LocalTx : unsigned char { kUndecided, kCommitted, kRolledBack };

struct Answer {
  int status = 0;  // 0 = no answer
  std::string body;
};

class Participants {
 public:
  explicit Participants(World& world) : world_(world) {}

  // Business plans, set by the workload when it creates a transaction.
  void PlanSagaStep(const std::string& gid, const std::string& branch_id, bool fails) {
    failing_steps_[gid].insert(branch_id);
    if (!fails) failing_steps_[gid].erase(branch_id);
  }

  // A notification's receiver answers 500 to its first `fail_first` calls, then the success body;
  // a two-phase one must never arrive unless the producer's local transaction committed.
  void PlanNotify(const std::string& gid, int fail_first, bool two_phase) {
    notify_[gid] = NotifyReceiver{fail_first, two_phase, 0, 0};
  }
  struct NotifyReceiver {
    int fail_first = 0;
    bool two_phase = false;
    int calls = 0;
    int accepted = 0;  // calls answered with the success body
  };
  const NotifyReceiver* NotifyOf(const std::string& gid) const {
    auto it = notify_.find(gid);
    return it == notify_.end() ? nullptr : &it->second;
  }

  // A call delivered to the service at `url` (without query) for (gid, branch_id, op).
  Answer Handle(const std::string& url, const std::string& gid, const std::string& branch_id,
                const std::string& op);

  // The application's side of TCC: the try of one branch, called by the application itself.
  // Returns true when the try succeeded (its effect is in place).
  bool Try(const std::string& gid, const std::string& branch_id, bool business_ok);
  // The producer's local transaction: commit fails if a check-back already rolled it back.
  LocalTx DecideLocal(const std::string& gid, bool commit);
  LocalTx Local(const std::string& gid) const;

  // Effects, for the invariants.
  struct Effects {
    bool action = false;    // saga action / tcc try / msg action applied by its own call
    bool undo = false;      // saga compensation / tcc cancel applied (undoing `action`)
    bool confirm = false;   // tcc confirm applied
    int applied_times = 0;  // how often the action's effect was applied (must stay <= 1)
  };
  const Effects* EffectsOf(const std::string& gid, const std::string& branch_id) const;
  const std::map<std::pair<std::string, std::string>, Effects>& effects() const { return effects_; }

 private:
  Answer SagaAction(const std::string& gid, const std::string& bid);
  Answer Undo(const std::string& gid, const std::string& bid, const std::string& origin,
              const std::string& op);
  Answer TccConfirm(const std::string& gid, const std::string& bid);
  Answer MsgAction(const std::string& gid, const std::string& bid);
  Answer QueryPrepared(const std::string& gid);
  Answer Notify(const std::string& gid);
  // Inserts a barrier row; false if it exists (DTM: INSERT IGNORE affected 0 rows).
  bool Insert(const std::string& gid, const std::string& bid, const std::string& op);

  World& world_;
  std::map<std::string, std::set<std::string>> failing_steps_;
  std::set<std::tuple<std::string, std::string, std::string>> barrier_;
  std::map<std::pair<std::string, std::string>, Effects> effects_;
  std::map<std::string, LocalTx> local_;
  std::map<std::string, NotifyReceiver> notify_;
};

}  // namespace dtx::sim
