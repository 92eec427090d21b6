// Workload::kKeysRegister: a tcc client that does not wait for its keyed prepare's answer (like a
// client whose HTTP deadline is shorter than the coordinator's key wait). It sends the prepare to
// one coordinator and, shortly after, registers a branch there and calls its try if the
// registration was accepted. The coordinator refuses a registration while a keyed prepare of the
// gid waits there without its keys (Engine::CheckKeysHeldForRegister), so a try after an accepted
// registration, made while that prepare was still waiting on the same live coordinator, holds its
// keys: it is checked like a coordinator's call (CheckKeysOnCall). If the prepare no longer waited
// there (the coordinator restarted, or the prepare failed after creating the tcc), nothing
// refuses the registration (the gap docs/tcc.md names): the client tries anyway, that tcc's calls
// are not checked for their keys, but a failed key wait must still cancel the tried branch.
// Afterwards it waits for its prepare and submits or aborts.
#include <fmt/format.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "sim/sim_internal.h"

// GCC 12 reports a false -Wmismatched-new-delete for Asio's awaitable frames (GCC bug 109224; see
// src/http/client.cc).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace dtx::sim {

namespace asio = boost::asio;
using asio::awaitable;

namespace {

Node::Op RegisterOp(const std::string& gid, const std::vector<core::BranchRow>& rows) {
  return [gid, rows](engine::Engine& e) -> awaitable<Status> {
    std::vector<core::BranchRow> copy = rows;
    co_return co_await e.RegisterBranch(gid, core::TransType::kTcc, std::move(copy));
  };
}

}  // namespace

awaitable<void> Sim::PrepareOn(size_t node, core::TransSnapshot snap,
                               std::shared_ptr<std::optional<Status>> answer) {
  Node::Op op = [snap](engine::Engine& e) -> awaitable<Status> {
    co_return co_await e.Prepare(snap);
  };
  const std::string what = "prepare " + snap.global.gid + " (impatient)";
  asio::any_io_executor ex = client_ctx.get_executor();
  Status s = co_await nodes[node]->Call(ex, what, std::move(op));
  *answer = s;
}

awaitable<void> Sim::ImpatientTccApp(std::string gid, core::TransSnapshot snap) {
  TxInfo& tx = txs[gid];
  const size_t n = static_cast<size_t>(world.Uniform(0, static_cast<int64_t>(nodes.size()) - 1));
  Node& node = *nodes[n];
  const int incarnation = node.incarnation();
  auto prepared = std::make_shared<std::optional<Status>>();
  asio::co_spawn(client_ctx, PrepareOn(n, snap, prepared), asio::detached);
  co_await Sleep(world.Uniform(1, 300));

  const std::string bid = "01";
  tx.branch_ids.push_back(bid);
  std::vector<core::BranchRow> rows(2);
  rows[0].branch_id = rows[1].branch_id = bid;
  rows[0].op = "cancel";
  rows[0].url = kTccCancel;
  rows[1].op = "confirm";
  rows[1].url = kTccConfirm;
  asio::any_io_executor ex = client_ctx.get_executor();
  const std::string what = fmt::format("register {} {} (impatient)", gid, bid);
  Status reg = co_await node.Call(ex, what, RegisterOp(gid, rows));
  const bool waited_here = !prepared->has_value() && node.up() && node.incarnation() == incarnation;
  world.Trace(fmt::format("app: impatient tcc {} register -> {} (prepare {})", gid, reg.ToString(),
                          prepared->has_value() ? (*prepared)->ToString() : "not answered"));
  // Checkable: its prepare still waited on this very coordinator, or had answered 200.
  const bool checkable = waited_here || (prepared->has_value() && (*prepared)->ok());
  bool tried = false;
  // Outside the guarantee: the prepare no longer waited here (the coordinator restarted, or the
  // prepare ended with an error after it had created the tcc). A registration may then be stored
  // (even when its answer was lost: seed 831), and a tcc whose key wait fails cancels it without
  // ever holding its keys (docs/tcc.md): its calls are not key-checked.
  if (!checkable) tx.keys_unchecked = true;
  if (reg.ok() && !checkable) {
    // The try may run without the keys, but the branch is registered: if the key wait then fails
    // the tcc, its cancel must still run (the checker's "tried and not cancelled"; seed 729).
    co_await Sleep(world.Uniform(1, 60));
    tried = participants.Try(gid, bid, /*business_ok=*/true);
  } else if (reg.ok()) {
    co_await Sleep(world.Uniform(1, 60));  // the try call travels to the participant
    std::optional<core::TransSnapshot> now_stored = disk.Peek(gid);
    if (now_stored && !core::IsFinal(now_stored->global.status)) {
      CallRecord try_call;
      try_call.node = -1;  // the application
      try_call.gid = gid;
      try_call.branch_id = bid;
      try_call.op = "try";
      try_call.start_ms = world.time.now_ms();
      CheckKeysOnCall(tx, try_call);
    }
    tried = participants.Try(gid, bid, /*business_ok=*/true);
  }
  // Node::Call always answers (the node's death resets the call): this wait ends.
  while (!prepared->has_value()) co_await Sleep(50);
  world.Trace(fmt::format("app: impatient tcc {} prepare -> {}", gid, (*prepared)->ToString()));
  if (!reg.ok() && !(*prepared)->ok()) {
    tx.app_done = true;
    co_return;
  }
  const bool wait = world.Chance(0.3);
  if (reg.ok() && tried && (*prepared)->ok()) {
    std::string submit_what = fmt::format("submit {} {}", gid, wait ? "wait" : "nowait");
    Status s = co_await Api(submit_what, SubmitOp(gid, core::TransType::kTcc, wait));
    world.Trace(fmt::format("app: impatient tcc {} submit -> {}", gid, s.ToString()));
  } else {
    Status s = co_await Api("abort " + gid, AbortOp(gid, wait, "impatient client gives up"));
    world.Trace(fmt::format("app: impatient tcc {} abort -> {}", gid, s.ToString()));
  }
  tx.app_done = true;
}

}  // namespace dtx::sim
