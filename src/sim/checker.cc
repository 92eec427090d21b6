// The invariants of docs/simulation.md, checked online (every call, write and acknowledgement as it
// happens) and at the end of a run (every transaction final, business effects consistent).
#include <fmt/format.h>

#include <algorithm>
#include <sstream>

#include "core/notify.h"
#include "engine/engine.h"
#include "sim/sim_internal.h"

namespace dtx::sim {

std::vector<std::string> SplitWords(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

void Sim::OnCall(const CallRecord& c) {
  auto tx = txs.find(c.gid);
  // No branch operation after a final state. (The msg check-back is a read-only query: one in
  // flight when the application aborts is answered and ignored.)
  if (std::optional<core::TransSnapshot> stored = disk.Peek(c.gid);
      stored && core::IsFinal(stored->global.status) && c.op != "msg" &&
      !(tx != txs.end() && tx->second.force_stop_sent)) {
    world.Violation(fmt::format("gid {}: {} {} called by n{}.{} after the transaction became {}",
                                c.gid, c.branch_id, c.op, c.node, c.incarnation,
                                core::ToString(stored->global.status)));
  }
  // No branch called by two coordinators (or two rounds) at once: the lease must cover every call.
  for (const CallRecord& o : world.calls) {
    if (o.id == c.id || o.gid != c.gid || o.branch_id != c.branch_id) continue;
    const int64_t o_end = o.end_ms >= 0 ? o.end_ms : o.deadline_ms;
    if (o_end <= c.start_ms) continue;
    const bool same_round_owner = o.node == c.node && o.incarnation == c.incarnation;
    world.Violation(fmt::format(
        "gid {} branch {}: {} by n{}.{} at +{} ms overlaps {} by n{}.{} in flight since +{} ms{}",
        c.gid, c.branch_id, c.op, c.node, c.incarnation, world.Rel(c.start_ms), o.op, o.node,
        o.incarnation, world.Rel(o.start_ms),
        same_round_owner ? " (same coordinator)" : " (lease not respected)"));
    break;
  }
  if (tx != txs.end() && !tx->second.keys.empty()) CheckKeysOnCall(tx->second, c);
}

void Sim::CheckKeysOnCall(TxInfo& tx, const CallRecord& c) {
  // An operator's stop/forceStop makes a transaction final (and releases its keys) while a call
  // may be in flight: no key ordering to check for it, nor for one it overlaps.
  if (tx.force_stop_sent || tx.keys_unchecked) return;
  // The store says the caller holds its keys.
  const core::KeyState mine = disk.mem().PeekKeys(tx.gid);
  if (!mine.held) {
    world.Violation(fmt::format(
        "gid {}: {} {} called by n{}.{} without holding its keys (waits "
        "for {} on {})",
        tx.gid, c.branch_id, c.op, c.node, c.incarnation, mine.waiting_for, mine.waiting_key));
  }
  std::optional<core::TransSnapshot> self = disk.Peek(tx.gid);
  const bool first = tx.first_call_ms < 0;
  if (first) tx.first_call_ms = c.start_ms;
  for (auto& [gid, other] : txs) {
    if (gid == tx.gid || other.keys.empty() || other.force_stop_sent || other.keys_unchecked) {
      continue;
    }
    std::string shared;
    for (const std::string& k : tx.keys) {
      if (std::find(other.keys.begin(), other.keys.end(), k) != other.keys.end()) shared = k;
    }
    if (shared.empty()) continue;
    std::optional<core::TransSnapshot> o = disk.Peek(gid);
    if (!o || core::IsFinal(o->global.status)) continue;
    // Never two holders of one key at once: the other one has started and is not final.
    if (other.first_call_ms >= 0) {
      world.Violation(fmt::format(
          "key {}: gid {} calls {} {} at +{} ms while gid {} (started +{} ms) is still {}", shared,
          tx.gid, c.branch_id, c.op, world.Rel(c.start_ms), gid, world.Rel(other.first_call_ms),
          core::ToString(o->global.status)));
      continue;
    }
    // FIFO per key: an earlier transaction on the key that has not started yet, and is not final,
    // would have been passed.
    if (first && self && o->global.id < self->global.id) {
      world.Violation(fmt::format(
          "key {}: gid {} started before gid {}, which came first and waits", shared, tx.gid, gid));
    }
  }
}

void Sim::OnWrite(const core::TransSnapshot& before, const core::TransSnapshot& after) {
  const core::GlobalTrans& b = before.global;
  const core::GlobalTrans& a = after.global;
  if (!b.gid.empty() && core::IsFinal(b.status) && a.status != b.status) {
    world.Violation(fmt::format("gid {}: a write moved the final status {} to {}", a.gid,
                                core::ToString(b.status), core::ToString(a.status)));
  }
  if (a.next_cron_interval_ms > world.config.max_retry_interval_ms) {
    world.Violation(fmt::format("gid {}: retry interval {} ms over the cap {} ms", a.gid,
                                a.next_cron_interval_ms, world.config.max_retry_interval_ms));
  }
  // A transaction waiting for its business keys sleeps until woken (a daily re-check at most).
  const bool key_waiter = !core::IsFinal(a.status) && !disk.mem().PeekKeys(a.gid).held;
  if (!core::IsFinal(a.status) && !key_waiter) {
    // The next wake-up lies within the backoff cap (with jitter), a lease, or the timeout.
    const int64_t bound = std::max<int64_t>(world.config.max_retry_interval_ms * 11 / 10,
                                            20'000 + world.config.request_timeout_ms) +
                          world.config.request_timeout_ms + engine::kLeaseMarginMs +
                          2 * world.config.max_skew_ms + world.config.timeout_to_fail_ms;
    if (a.next_cron_time_ms - world.time.now_ms() > bound) {
      world.Violation(fmt::format("gid {}: next wake-up {} ms away, beyond the backoff bound {}",
                                  a.gid, a.next_cron_time_ms - world.time.now_ms(), bound));
    }
  }
}

void Sim::OnAck(int node, const std::string& what, const Status& status) {
  if (!status.ok()) return;
  const std::vector<std::string> w = SplitWords(what);
  if (w.size() < 2) return;
  const std::string& kind = w[0];
  const std::string& gid = w[1];
  auto tx = txs.find(gid);
  if (tx != txs.end() && kind == "forceStop") tx->second.force_stopped = true;
  if (tx == txs.end() || tx->second.force_stop_sent) return;
  std::optional<core::TransSnapshot> stored = disk.Peek(gid);
  auto fail = [&](const std::string& why) {
    world.Violation(fmt::format("n{} acknowledged '{}' but the store {}", node, what, why));
  };
  if (kind == "submit" || kind == "prepare" || kind == "register" || kind == "abort" ||
      kind == "create") {
    if (!stored) return fail("does not hold the transaction");
  }
  if (kind == "submit") {
    if (stored->global.status == core::GlobalStatus::kPrepared)
      return fail("still has it prepared");
    if (w.size() > 2 && w[2] == "wait" && stored->global.status != core::GlobalStatus::kSucceed) {
      return fail(fmt::format("has it {}", core::ToString(stored->global.status)));
    }
  } else if (kind == "register" && w.size() > 2) {
    size_t rows = 0;
    for (const auto& b : stored->branches) rows += b.branch_id == w[2];
    if (rows != 2) return fail(fmt::format("holds {} rows of branch {}", rows, w[2]));
  } else if (kind == "abort") {
    const core::GlobalStatus st = stored->global.status;
    if (st != core::GlobalStatus::kAborting && st != core::GlobalStatus::kFailed) {
      return fail(fmt::format("has it {}", core::ToString(st)));
    }
  }
}

void Sim::CheckEnd() {
  for (auto& [gid, tx] : txs) {
    std::optional<core::TransSnapshot> stored = disk.Peek(gid);
    if (!stored) {
      auto r = retained.find(gid);
      if (r == retained.end()) continue;  // never created (every attempt failed before persisting)
      stored = r->second;                 // deleted by the retention once final
    }
    if (!core::IsFinal(stored->global.status)) {
      world.Violation(fmt::format("gid {}: still {} at the end (liveness)", gid,
                                  core::ToString(stored->global.status)));
      continue;
    }
    // Stopped by an operator, or a branch marked done without running: no outcome to check.
    if (tx.force_stop_sent || tx.operator_skipped) continue;
    switch (tx.type) {
      case core::TransType::kSaga:
        CheckSaga(tx, *stored);
        break;
      case core::TransType::kTcc:
        CheckTcc(tx, *stored);
        break;
      case core::TransType::kMsg:
        CheckMsg(tx, *stored);
        break;
      case core::TransType::kNotify:
        CheckNotify(tx, *stored);
        break;
      default:
        break;
    }
  }
  for (const auto& [key, e] : participants.effects()) {
    if (e.applied_times > 1) {
      world.Violation(fmt::format("gid {} branch {}: effect applied {} times", key.first,
                                  key.second, e.applied_times));
    }
  }
}

void Sim::CheckSaga(const TxInfo& tx, const core::TransSnapshot& snap) {
  const bool succeeded = snap.global.status == core::GlobalStatus::kSucceed;
  for (size_t k = 0; k < tx.branch_ids.size(); ++k) {
    const Participants::Effects* e = participants.EffectsOf(tx.gid, tx.branch_ids[k]);
    const bool action = e && e->action;
    const bool undo = e && e->undo;
    if (succeeded && (!action || undo)) {
      world.Violation(fmt::format("saga {} succeeded but step {} is {}", tx.gid, k + 1,
                                  !action ? "not applied" : "compensated"));
    }
    if (!succeeded && action != undo) {
      world.Violation(
          fmt::format("saga {} failed but step {} was applied and not compensated", tx.gid, k + 1));
    }
  }
  for (const CallRecord& c : world.calls) {
    if (c.gid != tx.gid || c.op != "compensate") continue;
    if (succeeded) {
      world.Violation(
          fmt::format("saga {} succeeded but compensation {} was called", tx.gid, c.branch_id));
      break;
    }
    // A compensation is only for a step that may have run: all its predecessors succeeded.
    const size_t k = static_cast<size_t>(std::stoi(c.branch_id)) - 1;
    for (size_t p : tx.preds[k]) {
      const Participants::Effects* e = participants.EffectsOf(tx.gid, tx.branch_ids[p]);
      if (!(e && e->action)) {
        world.Violation(
            fmt::format("saga {}: step {} compensated although its predecessor {} never ran",
                        tx.gid, k + 1, p + 1));
      }
    }
  }
  if (!succeeded) CheckCompensationOrder(tx);
}

void Sim::CheckCompensationOrder(const TxInfo& tx) {
  // comp(k) may start only after comp(j) succeeded, for every step j that depends on k.
  auto first_start = [&](const std::string& bid) {
    int64_t t = -1;
    for (const CallRecord& c : world.calls) {
      if (c.gid == tx.gid && c.branch_id == bid && c.op == "compensate" && t < 0) t = c.start_ms;
    }
    return t;
  };
  auto first_success = [&](const std::string& bid) {
    int64_t t = -1;
    for (const CallRecord& c : world.calls) {
      if (c.gid == tx.gid && c.branch_id == bid && c.op == "compensate" && c.answer_status == 200 &&
          c.delivered_ms >= 0 && (t < 0 || c.delivered_ms < t)) {
        t = c.delivered_ms;
      }
    }
    return t;
  };
  for (size_t j = 0; j < tx.preds.size(); ++j) {
    const int64_t j_start = first_start(tx.branch_ids[j]);
    if (j_start < 0) continue;
    const int64_t j_done = first_success(tx.branch_ids[j]);
    for (size_t k : tx.preds[j]) {
      const int64_t k_start = first_start(tx.branch_ids[k]);
      if (k_start < 0) continue;
      if (j_done < 0 || k_start < j_done) {
        world.Violation(fmt::format(
            "saga {}: compensation of step {} started at +{} ms before the compensation of step "
            "{} (which depends on it) succeeded",
            tx.gid, k + 1, world.Rel(k_start), j + 1));
      }
    }
  }
}

void Sim::CheckTcc(const TxInfo& tx, const core::TransSnapshot& snap) {
  const bool succeeded = snap.global.status == core::GlobalStatus::kSucceed;
  for (const auto& b : snap.branches) {
    if (b.op != "confirm") continue;
    const Participants::Effects* e = participants.EffectsOf(tx.gid, b.branch_id);
    const bool tried = e && e->action;
    if (succeeded && !(e && e->confirm)) {
      world.Violation(
          fmt::format("tcc {} succeeded but branch {} is not confirmed", tx.gid, b.branch_id));
    }
    if (!succeeded && tried && !e->undo) {
      world.Violation(fmt::format("tcc {} failed but branch {} was tried and not cancelled", tx.gid,
                                  b.branch_id));
    }
    if (!succeeded && e && e->confirm) {
      world.Violation(
          fmt::format("tcc {} failed but branch {} was confirmed", tx.gid, b.branch_id));
    }
  }
}

void Sim::CheckMsg(const TxInfo& tx, const core::TransSnapshot& snap) {
  const bool succeeded = snap.global.status == core::GlobalStatus::kSucceed;
  const bool committed = participants.Local(tx.gid) == LocalTx::kCommitted;
  if (succeeded != committed) {
    world.Violation(fmt::format("msg {} is {} but the producer's local transaction {}", tx.gid,
                                core::ToString(snap.global.status),
                                committed ? "committed" : "did not commit"));
  }
  if (succeeded) {
    for (const std::string& bid : tx.branch_ids) {
      const Participants::Effects* e = participants.EffectsOf(tx.gid, bid);
      if (!(e && e->action)) {
        world.Violation(
            fmt::format("msg {} succeeded but branch {} was never delivered", tx.gid, bid));
      }
    }
  }
}

}  // namespace dtx::sim

namespace dtx::sim {

// A notification ended as its schedule and its receiver allow: aborted only two-phase and only if
// the local transaction did not commit; delivered on a success answer; failed only after every
// step of the schedule; no attempt skipped (the log counts up without a gap); no attempt earlier
// than its wait after the previous one (clocks of different coordinators may differ by twice the
// skew).
void Sim::CheckNotify(const TxInfo& tx, const core::TransSnapshot& snap) {
  const core::GlobalTrans& g = snap.global;
  Result<core::NotifyState> st = core::DecodeNotifyState(g.custom_data);
  if (!st.ok()) return world.Violation("gid " + g.gid + ": unreadable notify state");
  const bool aborted =
      g.status == core::GlobalStatus::kFailed && g.rollback_reason != core::kNotifyExhausted;
  const LocalTx local = participants.Local(g.gid);
  if (aborted) {
    if (!tx.two_phase) world.Violation("gid " + g.gid + ": a plain notification was aborted");
    if (local == LocalTx::kCommitted) {
      world.Violation("gid " + g.gid + ": aborted though the local transaction committed");
    }
    if (st->total_attempts != 0) world.Violation("gid " + g.gid + ": aborted after attempts");
    return;
  }
  if (tx.two_phase && local != LocalTx::kCommitted) {
    world.Violation("gid " + g.gid + ": sent though the local transaction did not commit");
  }
  const auto& log = st->log;
  if (log.empty()) return world.Violation("gid " + g.gid + ": final without an attempt");
  const int64_t first_n = st->total_attempts - static_cast<int64_t>(log.size()) + 1;
  const int64_t tolerance_ms = 2 * world.config.max_skew_ms + 5;
  for (size_t i = 0; i < log.size(); ++i) {
    const core::NotifyAttempt& a = log[i];
    if (a.n != first_n + static_cast<int64_t>(i)) {
      world.Violation(fmt::format("gid {}: attempt {} logged as n={} (skipped or repeated)", g.gid,
                                  first_n + static_cast<int64_t>(i), a.n));
    }
    const bool ok = a.http_status == 200 && a.error.empty();
    const bool last = i + 1 == log.size();
    if (ok != (last && g.status == core::GlobalStatus::kSucceed)) {
      world.Violation(fmt::format("gid {}: attempt {} {} but the notification is {}", g.gid, a.n,
                                  ok ? "succeeded" : "failed", core::ToString(g.status)));
    }
    const size_t k = static_cast<size_t>(a.n - 1);  // no resend in the simulation
    if (k >= tx.schedule_ms.size()) {
      world.Violation(fmt::format("gid {}: attempt {} beyond the schedule", g.gid, a.n));
      continue;
    }
    const int64_t earliest = k == 0
                                 ? st->cycle_start_ms + tx.schedule_ms[0]
                                 : log[i - 1].time_ms + log[i - 1].latency_ms + tx.schedule_ms[k];
    if ((k == 0 || i > 0) && a.time_ms + tolerance_ms < earliest) {
      world.Violation(fmt::format("gid {}: attempt {} at {} ms, {} ms before its schedule", g.gid,
                                  a.n, world.Rel(a.time_ms), earliest - a.time_ms));
    }
  }
  if (g.status == core::GlobalStatus::kFailed &&
      st->cycle_attempts != static_cast<int64_t>(tx.schedule_ms.size())) {
    world.Violation(fmt::format("gid {}: failed after {} of {} attempts", g.gid, st->cycle_attempts,
                                tx.schedule_ms.size()));
  }
  const Participants::NotifyReceiver* r = participants.NotifyOf(g.gid);
  if (g.status == core::GlobalStatus::kSucceed && (r == nullptr || r->accepted == 0)) {
    world.Violation("gid " + g.gid + ": delivered without a success answer from the receiver");
  }
}

}  // namespace dtx::sim
