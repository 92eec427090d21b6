// The pieces of one simulation run (simulation.cc), shared by the workload (workload.cc) and the
// invariant checks (checker.cc). Internal to src/sim.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/model.h"
#include "sim/node.h"
#include "sim/participants.h"
#include "sim/sim_store.h"
#include "sim/simulation.h"
#include "sim/world.h"

namespace dtx::sim {

// What the simulation knows about one transaction it started.
struct TxInfo {
  std::string gid;
  core::TransType type = core::TransType::kSaga;
  std::vector<std::string> branch_ids;     // "01", "02", ...
  std::vector<std::vector<size_t>> preds;  // saga: predecessors of each step
  std::vector<bool> failing;               // saga: the step's action fails (business)
  bool force_stopped = false;              // an operator's forceStop was acknowledged
  bool force_stop_sent = false;            // ... or may have landed
  bool operator_skipped = false;           // an operator's skip may have landed
  bool app_done = false;
  // An impatient tcc (impatient_tcc.cc) registered while its prepare was not waiting on that
  // coordinator any more (it had restarted): the registration is not checked there (the gap
  // docs/tcc.md names), so neither are its calls nor others' against it.
  bool keys_unchecked = false;
  // Workload::kKeys: the saga's or tcc's business keys, and when its first branch call started (-1:
  // none).
  std::vector<std::string> keys;
  int64_t first_call_ms = -1;
  // notify: its schedule and whether it was created two-phase.
  std::vector<int64_t> schedule_ms;
  bool two_phase = false;
};

class Sim {
 public:
  Sim(uint64_t seed, bool trace, Mutant mutant, Workload workload);
  ~Sim();
  RunResult Run();

  // --- workload (workload.cc) ---
  boost::asio::awaitable<void> SagaApp(std::string gid);
  boost::asio::awaitable<void> TccApp(std::string gid);
  // Workload::kKeysRegister (impatient_tcc.cc): a tcc client that registers and tries without
  // waiting for its keyed prepare's answer.
  boost::asio::awaitable<void> ImpatientTccApp(std::string gid, core::TransSnapshot snap);
  boost::asio::awaitable<void> PrepareOn(size_t node, core::TransSnapshot snap,
                                         std::shared_ptr<std::optional<Status>> answer);
  bool KeysWorkload() const {
    return workload == Workload::kKeys || workload == Workload::kKeysRegister;
  }
  boost::asio::awaitable<void> MsgApp(std::string gid);
  boost::asio::awaitable<void> NotifyApp(std::string gid);
  boost::asio::awaitable<void> OperatorApp();
  // retention.cc: deletes finished transactions older than a horizon, as --retain-finished does.
  boost::asio::awaitable<void> RetentionApp();
  boost::asio::awaitable<void> Sleep(int64_t ms);
  // An API call through the (faulty) client network to a random coordinator.
  boost::asio::awaitable<Status> Api(std::string what, Node::Op op);

  // --- invariants (checker.cc) ---
  void OnCall(const CallRecord& call);
  void CheckKeysOnCall(TxInfo& tx, const CallRecord& call);
  // Workload::kKeys: one or two of a few business keys into tx and the snapshot's custom_data.
  void AddKeys(TxInfo& tx, core::TransSnapshot& snap);
  void OnWrite(const core::TransSnapshot& before, const core::TransSnapshot& after);
  void OnAck(int node, const std::string& what, const Status& status);
  void CheckEnd();

  World world;
  SimDisk disk;
  Participants participants;
  Mutant mutant;
  Workload workload;
  std::vector<std::unique_ptr<Node>> nodes;
  boost::asio::io_context client_ctx;
  SkewedClock client_clock;
  VirtualTimerFactory client_timers;
  std::map<std::string, TxInfo> txs;
  int apps_running = 0;
  // Transactions the retention deleted: their last stored state, checked at the end instead.
  std::map<std::string, core::TransSnapshot> retained;

 private:
  void Configure(uint64_t seed);
  void ScheduleChaos();
  void CheckSaga(const TxInfo& tx, const core::TransSnapshot& snap);
  void CheckTcc(const TxInfo& tx, const core::TransSnapshot& snap);
  void CheckMsg(const TxInfo& tx, const core::TransSnapshot& snap);
  void CheckNotify(const TxInfo& tx, const core::TransSnapshot& snap);
  void CheckCompensationOrder(const TxInfo& tx);
};

std::vector<std::string> SplitWords(const std::string& s);

// The submit / abort calls of the simulated applications (workload.cc).
Node::Op SubmitOp(const std::string& gid, core::TransType type, bool wait);
Node::Op AbortOp(const std::string& gid, bool wait, const std::string& reason);

}  // namespace dtx::sim
