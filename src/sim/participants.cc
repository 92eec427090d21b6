#include "sim/participants.h"

namespace dtx::sim {
namespace {

Answer Success() { return {200, R"({"dtm_result":"SUCCESS"})"}; }
Answer Failure() { return {409, R"({"dtm_result":"FAILURE"})"}; }

}  // namespace

void World::Violation(std::string text) {
  trace.push_back({time.now_ms(), "VIOLATION: " + text});
  violations.push_back(std::move(text));
}

bool Participants::Insert(const std::string& gid, const std::string& bid, const std::string& op) {
  return barrier_.insert({gid, bid, op}).second;
}

const Participants::Effects* Participants::EffectsOf(const std::string& gid,
                                                     const std::string& branch_id) const {
  auto it = effects_.find({gid, branch_id});
  return it == effects_.end() ? nullptr : &it->second;
}

Answer Participants::Handle(const std::string& url, const std::string& gid,
                            const std::string& branch_id, const std::string& op) {
  if (url == kSagaAction) return SagaAction(gid, branch_id);
  if (url == kSagaCompensate) return Undo(gid, branch_id, "action", "compensate");
  if (url == kTccConfirm) return TccConfirm(gid, branch_id);
  if (url == kTccCancel) return Undo(gid, branch_id, "try", "cancel");
  if (url == kMsgAction) return MsgAction(gid, branch_id);
  if (url == kQueryPrepared) return QueryPrepared(gid);
  if (url == kNotifyUrl) return Notify(gid);
  world_.Violation("call to an unknown url " + url + " op " + op);
  return {404, "not found"};
}

Answer Participants::SagaAction(const std::string& gid, const std::string& bid) {
  // A business failure rolls back the local transaction, barrier row included (DTM).
  auto plan = failing_steps_.find(gid);
  if (plan != failing_steps_.end() && plan->second.count(bid)) {
    if (barrier_.count({gid, bid, "action"})) return Success();  // hanging after compensation
    return Failure();
  }
  if (!Insert(gid, bid, "action")) return Success();  // duplicate, or hanging: no effect
  Effects& e = effects_[{gid, bid}];
  e.action = true;
  e.applied_times += 1;
  if (e.undo) world_.Violation("gid " + gid + " branch " + bid + ": action applied after its undo");
  return Success();
}

Answer Participants::Undo(const std::string& gid, const std::string& bid, const std::string& origin,
                          const std::string& op) {
  // The barrier inserts the origin op's row first: if it was absent, the action never ran and this
  // is a null compensation; the row also keeps a late action from running (anti-hanging).
  const bool null_compensation = Insert(gid, bid, origin);
  if (!Insert(gid, bid, op)) return Success();  // duplicate
  if (null_compensation) return Success();
  Effects& e = effects_[{gid, bid}];
  e.undo = true;
  if (e.confirm) {
    world_.Violation("gid " + gid + " branch " + bid + ": cancelled after it was confirmed");
  }
  return Success();
}

bool Participants::Try(const std::string& gid, const std::string& bid, bool business_ok) {
  if (!business_ok) return false;
  if (!Insert(gid, bid, "try")) {
    // Already tried, or cancelled first (anti-hanging): the effect is what is stored.
    const Effects* e = EffectsOf(gid, bid);
    return e != nullptr && e->action && !e->undo;
  }
  Effects& e = effects_[{gid, bid}];
  e.action = true;
  e.applied_times += 1;
  return true;
}

Answer Participants::TccConfirm(const std::string& gid, const std::string& bid) {
  if (!Insert(gid, bid, "confirm")) return Success();
  Effects& e = effects_[{gid, bid}];
  if (!e.action)
    world_.Violation("gid " + gid + " branch " + bid + ": confirm of a branch never tried");
  e.confirm = true;
  if (e.undo)
    world_.Violation("gid " + gid + " branch " + bid + ": confirmed after it was cancelled");
  return Success();
}

Answer Participants::MsgAction(const std::string& gid, const std::string& bid) {
  if (Local(gid) != LocalTx::kCommitted) {
    world_.Violation("gid " + gid + ": msg branch " + bid +
                     " delivered but the producer's local transaction did not commit");
  }
  if (!Insert(gid, bid, "action")) return Success();
  Effects& e = effects_[{gid, bid}];
  e.action = true;
  e.applied_times += 1;
  return Success();
}

LocalTx Participants::Local(const std::string& gid) const {
  auto it = local_.find(gid);
  return it == local_.end() ? LocalTx::kUndecided : it->second;
}

LocalTx Participants::DecideLocal(const std::string& gid, bool commit) {
  LocalTx& t = local_[gid];
  // DoAndSubmit: the local transaction inserts the barrier row; a check-back that got there first
  // inserted it as "rollback", so the commit fails.
  if (t == LocalTx::kUndecided) t = commit ? LocalTx::kCommitted : LocalTx::kRolledBack;
  return t;
}

Answer Participants::QueryPrepared(const std::string& gid) {
  // The check-back of DoAndSubmit: an undecided local transaction is decided as rolled back.
  LocalTx t = DecideLocal(gid, /*commit=*/false);
  return t == LocalTx::kCommitted ? Success() : Failure();
}

Answer Participants::Notify(const std::string& gid) {
  NotifyReceiver& r = notify_[gid];
  if (r.two_phase && Local(gid) != LocalTx::kCommitted) {
    world_.Violation(
        "gid " + gid +
        ": notification delivered but the producer's local transaction did not commit");
  }
  r.calls += 1;
  if (r.calls <= r.fail_first) return {500, "down"};
  r.accepted += 1;
  return {200, "success"};
}

}  // namespace dtx::sim
