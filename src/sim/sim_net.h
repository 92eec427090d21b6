// The simulated network between a coordinator and the participants: engine::BranchCaller on
// virtual time with injected faults — refused connections, 5xx, ONGOING, answers lost after the
// effect, slow calls past the deadline, duplicated and late deliveries. Every call is recorded in
// World::calls for the invariants.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>

#include "engine/branch_caller.h"
#include "sim/participants.h"
#include "sim/world.h"

namespace dtx::sim {

// Observes every call as it starts (the lease and no-call-after-final invariants).
using CallObserver = std::function<void(const CallRecord&)>;

class SimCaller final : public engine::BranchCaller {
 public:
  SimCaller(World& world, Participants& participants, boost::asio::any_io_executor executor,
            int node, int incarnation, CallObserver observer);
  ~SimCaller() override;
  boost::asio::awaitable<engine::BranchAnswer> Call(engine::BranchCallSpec spec) override;

 private:
  using Handler = std::function<void(engine::BranchAnswer)>;
  void Start(engine::BranchCallSpec spec, Handler handler);
  void Complete(uint64_t pending_id, engine::BranchAnswer answer);
  void Deliver(size_t record, const std::string& url, bool answer_lost, int64_t extra_delay_ms,
               uint64_t pending_id, bool corrupt);

  World& world_;
  Participants& participants_;
  boost::asio::any_io_executor executor_;
  int node_;
  int incarnation_;
  CallObserver observer_;
  uint64_t next_pending_ = 1;
  // Calls whose answer has not reached the coordinator; destroyed (never run) with the caller.
  struct Pending {
    Handler handler;
    size_t record;  // index into World::calls
  };
  std::map<uint64_t, Pending> pending_;
  std::shared_ptr<bool> alive_;
};

}  // namespace dtx::sim
