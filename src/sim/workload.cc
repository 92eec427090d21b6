// The simulated applications: they create transactions through the coordinator's engine API the
// way DTM clients do over HTTP, with the client side's own faults (a lost answer, a coordinator
// that is down) and retries, and an operator who stops or wakes transactions.
#include <fmt/format.h>

#include <boost/asio/this_coro.hpp>
#include <optional>
#include <vector>

#include "core/business_keys.h"
#include "core/notify.h"
#include "sim/sim_internal.h"

// GCC 12 reports a false -Wmismatched-new-delete for Asio's awaitable frames (GCC bug 109224; see
// src/http/client.cc).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace dtx::sim {

namespace asio = boost::asio;
using asio::awaitable;

asio::awaitable<void> Sim::Sleep(int64_t ms) {
  auto timer = client_timers.NewTimer(client_ctx.get_executor());
  co_await timer->WaitUntil(client_clock.NowMs() + ms);
}

awaitable<Status> Sim::Api(std::string what, Node::Op op) {
  co_await Sleep(world.Uniform(1, 20));
  Node& node =
      *nodes[static_cast<size_t>(world.Uniform(0, static_cast<int64_t>(nodes.size()) - 1))];
  asio::any_io_executor ex = client_ctx.get_executor();
  Status s = co_await node.Call(ex, what, std::move(op));
  if (world.chaos && world.Chance(0.03)) {
    co_await Sleep(world.config.request_timeout_ms);
    co_return Status::Unavailable("client timeout: the answer was lost");
  }
  co_await Sleep(world.Uniform(1, 20));
  co_return s;
}

Node::Op SubmitOp(const std::string& gid, core::TransType type, bool wait) {
  return [gid, type, wait](engine::Engine& e) -> awaitable<Status> {
    engine::Engine::SubmitRequest r;
    r.proposed.global.gid = gid;
    r.proposed.global.trans_type = type;
    r.wait_result = wait;
    co_return co_await e.Submit(std::move(r));
  };
}

Node::Op AbortOp(const std::string& gid, bool wait, const std::string& reason) {
  return [gid, wait, reason](engine::Engine& e) -> awaitable<Status> {
    std::string g = gid;
    std::string why = reason;
    core::OptionsPatch patch;
    co_return co_await e.Abort(std::move(g), wait, std::move(why), std::move(patch));
  };
}

namespace {

std::string Id(size_t k) { return fmt::format("{:02d}", k + 1); }

// Retries an API call while it is retryable (a coordinator down, an answer lost, a limit), as a
// DTM client does, a bounded number of times.
template <class MakeOp>
awaitable<Status> WithRetries(Sim& sim, const std::string& what, MakeOp& make) {
  constexpr int attempts = 6;
  Status s;
  for (int i = 0; i < attempts; ++i) {
    Node::Op op = make();
    s = co_await sim.Api(what, std::move(op));
    if (s.ok() || !s.retryable()) co_return s;
    co_await sim.Sleep(sim.world.Uniform(50, 1500));
  }
  co_return s;
}

}  // namespace

void Sim::AddKeys(TxInfo& tx, core::TransSnapshot& snap) {
  // One or two of three keys (much contention), sometimes refusing to wait.
  core::KeySpec spec;
  const int64_t first = world.Uniform(0, 2);
  spec.keys.push_back(fmt::format("account:{}", first));
  if (world.Chance(0.4))
    spec.keys.push_back(fmt::format("account:{}", (first + world.Uniform(1, 2)) % 3));
  std::sort(spec.keys.begin(), spec.keys.end());
  spec.reject_if_busy = world.Chance(0.1);
  tx.keys = spec.keys;
  snap.global.custom_data = core::WithKeySpec(snap.global.custom_data, spec).value();
}

awaitable<void> Sim::SagaApp(std::string gid) {
  TxInfo& tx = txs[gid];
  const size_t steps = static_cast<size_t>(world.Uniform(1, 4));
  const bool dag = steps > 1 && world.Chance(0.4);
  core::TransSnapshot snap;
  snap.global.gid = gid;
  snap.global.trans_type = core::TransType::kSaga;
  std::string orders;
  tx.preds.assign(steps, {});
  for (size_t k = 0; k < steps; ++k) {
    if (!dag) {
      if (k > 0) tx.preds[k].push_back(k - 1);
    } else {
      for (size_t p = 0; p < k; ++p) {
        if (world.Chance(0.4)) tx.preds[k].push_back(p);
      }
      if (!tx.preds[k].empty()) {
        std::string list;
        for (size_t p : tx.preds[k]) list += (list.empty() ? "" : ",") + std::to_string(p);
        orders += fmt::format("{}\"{}\":[{}]", orders.empty() ? "" : ",", k, list);
      }
    }
    const bool fails = world.Chance(0.12);
    tx.failing.push_back(fails);
    tx.branch_ids.push_back(Id(k));
    participants.PlanSagaStep(gid, Id(k), fails);
    core::BranchRow comp, action;
    comp.branch_id = action.branch_id = Id(k);
    comp.op = "compensate";
    comp.url = kSagaCompensate;
    action.op = "action";
    action.url = kSagaAction;
    snap.branches.push_back(comp);
    snap.branches.push_back(action);
  }
  if (dag)
    snap.global.custom_data = fmt::format(R"({{"concurrent":true,"orders":{{{}}}}})", orders);
  if (world.Chance(0.2)) snap.global.options.retry_limit = world.Uniform(1, 3);
  if (world.Chance(0.25)) snap.global.options.timeout_to_fail_s = world.Uniform(2, 20);
  if (KeysWorkload()) AddKeys(tx, snap);
  const bool wait = world.Chance(0.5);
  world.Trace(fmt::format("app: saga {} steps={} dag={} failing={} wait_result={} {}", gid, steps,
                          dag, std::count(tx.failing.begin(), tx.failing.end(), true), wait,
                          snap.global.custom_data));
  auto make = [&] {
    return [snap, wait](engine::Engine& e) -> awaitable<Status> {
      engine::Engine::SubmitRequest r;
      r.proposed = snap;
      r.wait_result = wait;
      co_return co_await e.Submit(std::move(r));
    };
  };
  std::string what = fmt::format("submit {} {}", gid, wait ? "wait" : "nowait");
  Status s = co_await WithRetries(*this, what, make);
  world.Trace(fmt::format("app: saga {} submit -> {}", gid, s.ToString()));
  if (s.ok() && world.Chance(0.1)) {  // a client that submits again (DTM: a re-submit resumes)
    co_await Sleep(world.Uniform(10, 3000));
    std::string again_what = fmt::format("submit {} nowait", gid);
    Node::Op again_op = make();
    Status again = co_await Api(again_what, std::move(again_op));
    world.Trace(fmt::format("app: saga {} re-submit -> {}", gid, again.ToString()));
  }
  tx.app_done = true;
}

awaitable<void> Sim::TccApp(std::string gid) {
  TxInfo& tx = txs[gid];
  core::TransSnapshot snap;
  snap.global.gid = gid;
  snap.global.trans_type = core::TransType::kTcc;
  if (world.Chance(0.3)) snap.global.options.timeout_to_fail_s = world.Uniform(2, 10);
  // Workload::kKeys: it waits for its keys in prepare (engine/keys_prepare.cc).
  if (KeysWorkload()) AddKeys(tx, snap);
  if (workload == Workload::kKeysRegister && world.Chance(0.5)) {
    co_await ImpatientTccApp(gid, std::move(snap));
    co_return;
  }
  std::string what = "prepare " + gid;
  auto prepare = [&] {
    return [snap](engine::Engine& e) -> awaitable<Status> { co_return co_await e.Prepare(snap); };
  };
  Status s = co_await WithRetries(*this, what, prepare);
  world.Trace(
      fmt::format("app: tcc {} prepare -> {} {}", gid, s.ToString(), snap.global.custom_data));
  if (!s.ok()) {
    tx.app_done = true;
    co_return;
  }
  const size_t branches = static_cast<size_t>(world.Uniform(1, 3));
  bool all_tried = true;
  for (size_t k = 0; k < branches && all_tried; ++k) {
    if (world.chaos && world.Chance(0.06)) {  // the application dies here: it goes silent
      world.Trace(fmt::format("app: tcc {} goes silent", gid));
      tx.app_done = true;
      co_return;
    }
    const std::string bid = Id(k);
    tx.branch_ids.push_back(bid);
    std::vector<core::BranchRow> rows(2);
    rows[0].branch_id = rows[1].branch_id = bid;
    rows[0].op = "cancel";
    rows[0].url = kTccCancel;
    rows[1].op = "confirm";
    rows[1].url = kTccConfirm;
    const int repeats = world.Chance(0.15) ? 2 : 1;  // a client that registers twice
    for (int r = 0; r < repeats; ++r) {
      what = fmt::format("register {} {}", gid, bid);
      auto reg = [&] {
        return [gid, rows](engine::Engine& e) -> awaitable<Status> {
          std::vector<core::BranchRow> copy = rows;
          co_return co_await e.RegisterBranch(gid, core::TransType::kTcc, std::move(copy));
        };
      };
      s = co_await WithRetries(*this, what, reg);
    }
    world.Trace(fmt::format("app: tcc {} register {} -> {}", gid, bid, s.ToString()));
    if (!s.ok()) {  // e.g. the transaction timed out meanwhile: stop
      tx.app_done = true;
      co_return;
    }
    co_await Sleep(world.Uniform(1, 60));  // the try call travels to the participant
    std::optional<core::TransSnapshot> now_stored = disk.Peek(gid);
    if (!tx.keys.empty() && now_stored && !core::IsFinal(now_stored->global.status)) {
      // The try is the tcc's first business call: the same key invariants as a coordinator's call
      // (it holds its keys; no other holder of one of them has started and is unfinished; FIFO).
      // A try after the tcc became final (timed out meanwhile) is refused by the barrier (its
      // branch was cancelled first): nothing to check.
      CallRecord try_call;
      try_call.node = -1;  // the application
      try_call.gid = gid;
      try_call.branch_id = bid;
      try_call.op = "try";
      try_call.start_ms = world.time.now_ms();
      CheckKeysOnCall(tx, try_call);
    }
    all_tried = participants.Try(gid, bid, /*business_ok=*/!world.Chance(0.1));
    world.Trace(fmt::format("app: tcc {} try {} -> {}", gid, bid, all_tried ? "ok" : "failed"));
  }
  const bool wait = world.Chance(0.3);
  if (all_tried && !world.Chance(0.05)) {
    what = fmt::format("submit {} {}", gid, wait ? "wait" : "nowait");
    auto submit = [&] { return SubmitOp(gid, core::TransType::kTcc, wait); };
    s = co_await WithRetries(*this, what, submit);
    world.Trace(fmt::format("app: tcc {} submit -> {}", gid, s.ToString()));
  } else {
    what = "abort " + gid;
    auto abort = [&] { return AbortOp(gid, wait, "try failed"); };
    s = co_await WithRetries(*this, what, abort);
    world.Trace(fmt::format("app: tcc {} abort -> {}", gid, s.ToString()));
  }
  tx.app_done = true;
}

awaitable<void> Sim::MsgApp(std::string gid) {
  TxInfo& tx = txs[gid];
  core::TransSnapshot snap;
  snap.global.gid = gid;
  snap.global.trans_type = core::TransType::kMsg;
  snap.global.query_prepared = kQueryPrepared;
  if (world.Chance(0.3)) snap.global.options.concurrent = true;
  if (world.Chance(0.3)) snap.global.options.timeout_to_fail_s = world.Uniform(2, 10);
  const size_t branches = static_cast<size_t>(world.Uniform(1, 3));
  for (size_t k = 0; k < branches; ++k) {
    core::BranchRow row;
    row.branch_id = Id(k);
    row.op = "action";
    row.url = kMsgAction;
    snap.branches.push_back(row);
    tx.branch_ids.push_back(Id(k));
  }
  std::string what = "prepare " + gid;
  auto prepare = [&] {
    return [snap](engine::Engine& e) -> awaitable<Status> { co_return co_await e.Prepare(snap); };
  };
  Status s = co_await WithRetries(*this, what, prepare);
  world.Trace(fmt::format("app: msg {} prepare -> {}", gid, s.ToString()));
  if (!s.ok()) {
    // Not prepared (as far as the application knows): it does not commit its local transaction.
    participants.DecideLocal(gid, false);
    tx.app_done = true;
    co_return;
  }
  co_await Sleep(world.Uniform(1, 3000));  // the local transaction runs
  const LocalTx local = participants.DecideLocal(gid, world.Chance(0.75));
  world.Trace(fmt::format("app: msg {} local transaction {}", gid,
                          local == LocalTx::kCommitted ? "committed" : "rolled back"));
  if (world.chaos && world.Chance(0.1)) {  // the application dies before submit/abort
    world.Trace(fmt::format("app: msg {} goes silent", gid));
    tx.app_done = true;
    co_return;
  }
  const bool wait = world.Chance(0.3);
  if (local == LocalTx::kCommitted) {
    what = fmt::format("submit {} {}", gid, wait ? "wait" : "nowait");
    auto submit = [&] { return SubmitOp(gid, core::TransType::kMsg, wait); };
    s = co_await WithRetries(*this, what, submit);
  } else {
    what = "abort " + gid;
    auto abort = [&] { return AbortOp(gid, false, "local transaction rolled back"); };
    s = co_await WithRetries(*this, what, abort);
  }
  world.Trace(fmt::format("app: msg {} {} -> {}", gid,
                          local == LocalTx::kCommitted ? "submit" : "abort", s.ToString()));
  tx.app_done = true;
}

awaitable<void> Sim::NotifyApp(std::string gid) {
  TxInfo& tx = txs[gid];
  tx.two_phase = world.Chance(0.4);
  core::NotifyState st;
  const size_t steps = static_cast<size_t>(world.Uniform(1, 5));
  for (size_t k = 0; k < steps; ++k) {
    st.schedule_ms.push_back(k == 0 && world.Chance(0.5) ? 0 : world.Uniform(0, 3000));
  }
  st.success = {core::SuccessRule::Kind::kBody, "", "success"};
  st.timeout_ms = world.config.request_timeout_ms;
  st.request_hash = "hash-" + gid;  // the same request each time it is sent
  tx.schedule_ms = st.schedule_ms;
  // The receiver fails its first calls: sometimes more than the schedule has (-> failed).
  const int fail_first = static_cast<int>(world.Uniform(0, static_cast<int64_t>(steps) + 1));
  participants.PlanNotify(gid, fail_first, tx.two_phase);
  core::TransSnapshot snap;
  core::GlobalTrans& g = snap.global;
  g.gid = gid;
  g.trans_type = core::TransType::kNotify;
  g.status = tx.two_phase ? core::GlobalStatus::kPrepared : core::GlobalStatus::kSubmitted;
  if (tx.two_phase) g.query_prepared = kQueryPrepared;
  g.options.request_timeout_s = (st.timeout_ms + 999) / 1000;
  if (tx.two_phase && world.Chance(0.3)) g.options.timeout_to_fail_s = world.Uniform(2, 10);
  core::BranchRow& row = snap.branches.emplace_back();
  row.url = std::string(kNotifyUrl) + "?gid=" + gid + "&branch_id=01&op=notify";
  row.branch_id = "01";
  row.op = "notify";
  row.bin_data = "payload of " + gid;
  tx.branch_ids.push_back("01");
  world.Trace(fmt::format("app: notify {} two_phase={} schedule={} receiver fails {}", gid,
                          tx.two_phase, steps, fail_first));
  auto create = [&] {
    return [snap, st](engine::Engine& e) -> awaitable<Status> {
      core::TransSnapshot copy = snap;
      core::NotifyState state = st;
      co_return co_await e.CreateNotify(std::move(copy), std::move(state));
    };
  };
  std::string what = (tx.two_phase ? "prepare " : "create ") + gid;
  Status s = co_await WithRetries(*this, what, create);
  world.Trace(fmt::format("app: notify {} create -> {}", gid, s.ToString()));
  if (s.ok() && world.Chance(0.1)) {  // the same request again: idempotent
    Node::Op again_op = create();
    Status again = co_await Api(what, std::move(again_op));
    world.Trace(fmt::format("app: notify {} create again -> {}", gid, again.ToString()));
  }
  if (!tx.two_phase) {
    tx.app_done = true;
    co_return;
  }
  if (!s.ok()) {
    participants.DecideLocal(gid, false);
    tx.app_done = true;
    co_return;
  }
  co_await Sleep(world.Uniform(1, 3000));  // the local transaction runs
  const LocalTx local = participants.DecideLocal(gid, world.Chance(0.75));
  if (world.chaos && world.Chance(0.1)) {  // the producer dies: the check-back decides
    world.Trace(fmt::format("app: notify {} goes silent", gid));
    tx.app_done = true;
    co_return;
  }
  if (local == LocalTx::kCommitted) {
    what = "submit " + gid + " nowait";
    auto submit = [&] {
      return [gid](engine::Engine& e) -> awaitable<Status> {
        std::string id = gid;
        co_return co_await e.SubmitNotify(std::move(id));
      };
    };
    s = co_await WithRetries(*this, what, submit);
  } else {
    what = "abort " + gid;
    auto abort = [&] {
      return [gid](engine::Engine& e) -> awaitable<Status> {
        std::string id = gid;
        co_return co_await e.AbortNotify(std::move(id));
      };
    };
    s = co_await WithRetries(*this, what, abort);
  }
  world.Trace(fmt::format("app: notify {} {} -> {}", gid,
                          local == LocalTx::kCommitted ? "submit" : "abort", s.ToString()));
  tx.app_done = true;
}

awaitable<void> Sim::OperatorApp() {
  // Now and then, an operator stops a transaction (DTM's forceStop), makes one due now (DTM's
  // resetNextCronTime), or acts through the admin actions: retry, stop, abort, skip.
  while (world.chaos) {
    co_await Sleep(world.Uniform(2000, 15000));
    if (!world.chaos || txs.empty()) break;
    // Mostly one the console shows as unfinished (an operator acts on those), else any.
    std::vector<std::string> open;
    for (const auto& [g, info] : txs) {
      std::optional<core::TransSnapshot> stored = disk.Peek(g);
      if (stored && !core::IsFinal(stored->global.status)) open.push_back(g);
    }
    std::string gid;
    if (!open.empty() && world.Chance(0.8)) {
      gid = open[static_cast<size_t>(world.Uniform(0, static_cast<int64_t>(open.size()) - 1))];
    } else {
      auto any = txs.begin();
      std::advance(any, world.Uniform(0, static_cast<int64_t>(txs.size()) - 1));
      gid = any->first;
    }
    TxInfo& tx = txs.at(gid);
    const int64_t pick = world.Uniform(0, 9);
    if (pick < 3) {
      tx.force_stop_sent = true;
      std::string what = "forceStop " + gid;
      Node::Op op = [gid](engine::Engine& e) -> awaitable<Status> {
        std::string g = gid;
        co_return co_await e.ForceStop(std::move(g));
      };
      Status s = co_await Api(what, std::move(op));
      world.Trace(fmt::format("operator: forceStop {} -> {}", gid, s.ToString()));
      continue;
    }
    if (pick < 5) {
      std::string what = "reset " + gid;
      Node::Op op = [gid](engine::Engine& e) -> awaitable<Status> {
        std::string g = gid;
        co_return co_await e.ResetNextCronTime(std::move(g));
      };
      Status s = co_await Api(what, std::move(op));
      world.Trace(fmt::format("operator: resetNextCronTime {} -> {}", gid, s.ToString()));
      continue;
    }
    using A = engine::Engine::OperatorAction;
    engine::Engine::OperatorRequest req;
    req.gid = gid;
    req.reason = "simulated operator";
    req.action = pick < 7 ? A::kRetry : pick < 8 ? A::kStop : pick < 9 ? A::kAbort : A::kSkip;
    if (req.action == A::kStop) tx.force_stop_sent = true;  // no outcome to check, like forceStop
    if (req.action == A::kSkip) {
      if (tx.branch_ids.empty()) continue;
      req.branch_id = tx.branch_ids[static_cast<size_t>(
          world.Uniform(0, static_cast<int64_t>(tx.branch_ids.size()) - 1))];
      req.op = tx.type == core::TransType::kTcc ? "confirm" : "action";
      tx.operator_skipped = true;  // a branch never ran: the outcome checks do not apply
    }
    std::string what = fmt::format("operator-{} {}", engine::ToString(req.action), gid);
    Node::Op op = [req](engine::Engine& e) -> awaitable<Status> {
      engine::Engine::OperatorRequest r = req;
      auto out = co_await e.Operate(std::move(r));
      co_return out.status();
    };
    Status s = co_await Api(what, std::move(op));
    world.Trace(fmt::format("operator: {} -> {}", what, s.ToString()));
  }
}

}  // namespace dtx::sim
