// Private to src/core: the helpers every state machine shares, and the per-mode step functions that
// core::Step dispatches to. Same contract as machine.h.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/machine.h"
#include "util/utf8.h"

namespace dtx::core {

inline std::string Truncate(std::string_view s, size_t max_bytes) {
  return std::string(s.substr(0, std::min(s.size(), max_bytes)));
}

// Accumulates one decision's changes, applying them to the snapshot at the same time.
class Writer {
 public:
  Writer(TransSnapshot& snap, int64_t now_ms) : snap_(snap), now_ms_(now_ms) {
    update_.gid = snap.global.gid;
    update_.expected_status = snap.global.status;
  }

  void SetStatus(GlobalStatus s) {
    snap_.global.status = s;
    update_.new_status = s;
    touched_ = true;
    if (IsFinal(s)) {
      snap_.global.finish_time_ms = now_ms_;
      update_.finish_time_ms = now_ms_;
    }
    if (s == GlobalStatus::kAborting) {
      snap_.global.rollback_time_ms = now_ms_;
      update_.rollback_time_ms = now_ms_;
    }
  }
  void SetRollbackReason(std::string reason) {
    reason = Truncate(reason, kMaxRollbackReasonBytes);
    snap_.global.rollback_reason = reason;
    update_.rollback_reason = std::move(reason);
    touched_ = true;
  }
  void SetWakeup(const Wakeup& w) {
    snap_.global.next_cron_interval_ms = w.interval_ms;
    snap_.global.next_cron_time_ms = w.next_cron_time_ms;
    update_.next_cron_interval_ms = w.interval_ms;
    update_.next_cron_time_ms = w.next_cron_time_ms;
    touched_ = true;
  }
  void SetCustomData(std::string custom_data) {
    snap_.global.custom_data = custom_data;
    update_.custom_data = std::move(custom_data);
    touched_ = true;
  }
  bool has_wakeup() const { return update_.next_cron_time_ms.has_value(); }
  void SetRetryCount(int64_t n) {
    snap_.global.retry_count = n;
    update_.retry_count = n;
    touched_ = true;
  }

  TransUpdate::BranchUpdate& Branch(size_t i) {
    const BranchRow& row = snap_.branches[i];
    for (auto& bu : update_.branches) {
      if (bu.branch_id == row.branch_id && bu.op == row.op) return bu;
    }
    touched_ = true;
    auto& bu = update_.branches.emplace_back();
    bu.branch_id = row.branch_id;
    bu.op = row.op;
    return bu;
  }
  void SetBranchStatus(size_t i, BranchStatus s) {
    snap_.branches[i].status = s;
    snap_.branches[i].update_time_ms = now_ms_;
    auto& bu = Branch(i);
    bu.status = s;
    if (s != BranchStatus::kPrepared) {
      snap_.branches[i].finish_time_ms = now_ms_;
      bu.finish_time_ms = now_ms_;
    }
  }
  // `ev` given: the call is also recorded in the row's attempt history (notifications keep their
  // own log in custom_data instead).
  void RecordAttempt(size_t i, CallClass c, std::string_view answer, const Event* ev = nullptr) {
    BranchRow& row = snap_.branches[i];
    row.attempts += 1;
    auto& bu = Branch(i);
    bu.attempts = row.attempts;
    if (ev != nullptr) {
      CallAttempt& a = bu.new_attempts.emplace_back();
      a.seq = row.attempts;
      a.time_ms = now_ms_;
      a.http_status = ev->http_status;
      a.latency_ms = std::max<int64_t>(ev->latency_ms, 0);
      a.result = std::string(ToString(c));
      if (c != CallClass::kSuccess) a.error = RepairUtf8(Truncate(answer, kMaxAttemptErrorBytes));
    }
    if (c != CallClass::kSuccess) {
      row.last_error = Truncate(fmt::format("{}: {}", ToString(c), answer), kMaxLastErrorBytes);
      bu.last_error = row.last_error;
    }
  }

  std::optional<TransUpdate> Take() {
    if (!touched_) return std::nullopt;
    update_.update_time_ms = now_ms_;
    snap_.global.update_time_ms = now_ms_;
    return std::move(update_);
  }

 private:
  TransSnapshot& snap_;
  int64_t now_ms_;
  TransUpdate update_;
  bool touched_ = false;
};

// The end of one machine decision: hands over the calls to make, ends the round when nothing is
// left in flight (a non-final transaction always leaves a round with a wake-up in the future), and
// takes the update.
inline Decision EndDecision(const TransSnapshot& snap, const Round& round, const Settings& settings,
                            int64_t now_ms, Writer& w, std::vector<size_t>& calls) {
  Decision d;
  d.calls = std::move(calls);
  if (d.calls.empty() && round.in_flight_count == 0) {
    d.round_over = true;
    if (!IsFinal(snap.global.status) && !w.has_wakeup() &&
        snap.global.next_cron_time_ms <= now_ms) {
      w.SetWakeup(NextWakeup(CallClass::kOngoing, snap.global.next_cron_interval_ms,
                             InitialIntervalMs(snap.global.options, settings), settings,
                             snap.global.gid, now_ms));
    }
  }
  d.update = w.Take();
  return d;
}

// msg and notify, prepared (two-phase): the check-back (core/check_back.cc). It is asked once
// timeout_to_fail has passed since creation (the call is appended to `calls`); until then the next
// round is due exactly then. Nothing when one is in flight or answered this round.
void MaybeCheckBack(const TransSnapshot& snap, Round& round, Writer& w, const Settings& settings,
                    int64_t now_ms, std::vector<size_t>& calls);
// What a check-back answer decides: kSubmit (SUCCESS) and kFail (FAILURE) are applied by the
// mode; ONGOING (ask again after I0) and anything else (back off, the guarded rule) set the
// wake-up here and decide kNone, as does an answer that arrives after the status left prepared.
enum class CheckBackDecision : unsigned char { kNone, kSubmit, kFail };
CheckBackDecision OnCheckBackResult(const TransSnapshot& snap, Round& round, Writer& w,
                                    const Settings& settings, int64_t now_ms, const Event& ev);

Decision SagaStep(TransSnapshot& snap, Round& round, const Event& event, const Settings& settings,
                  int64_t now_ms);
// tcc and xa: second phase over confirm/cancel (tcc) or commit/rollback (xa) rows.
Decision TccStep(TransSnapshot& snap, Round& round, const Event& event, const Settings& settings,
                 int64_t now_ms);
Decision MsgStep(TransSnapshot& snap, Round& round, const Event& event, const Settings& settings,
                 int64_t now_ms);
// notify (core/notify.h): one row, attempts on the schedule kept in custom_data.
Decision NotifyStep(TransSnapshot& snap, Round& round, const Event& event, const Settings& settings,
                    int64_t now_ms);

}  // namespace dtx::core
