// How a processing round writes the outcome of one step: the durability rule of
// docs/ARCHITECTURE.md ("Durability", "Several coordinators") as a pure function. The engine
// (engine/round.cc) asks PlanWrite after every decision and commits `write`, if any, before it
// makes the calls the decision orders.
//
// The rule:
// - Hold: an update that records only branch successes (no status, option, retry or reason change)
//   and whose calls are covered by the wake-up already stored is held in memory and written with
//   the round's next update. Losing it in a crash re-calls a branch (at-least-once anyway); nothing
//   is acknowledged on it.
// - Flush: any other update, or the end of the round, takes what is held along (held first, the
//   decision's update merged over it: the later branch update wins).
// - Lease: while calls are in flight the stored lease (lease_until, kept apart from the wake-up so
//   that an operator's retry cannot shorten it) must reach `lease_needed_ms` (their deadline plus
//   the clock-skew margin), so that no other coordinator claims the transaction meanwhile. If it
//   does not, lease_until is written (an update is created for that alone if needed, and it takes
//   what is held along), and next_cron_time is pushed to it too when it would come earlier.
//   A write made while nothing is in flight ends the lease (lease_until = now).
//
// Pure: no I/O, no clock (now is an input). Thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "core/model.h"

namespace dtx::core {

// The round's situation when a decision's update is to be written.
struct WriteContext {
  std::string_view gid;      // of the transaction (for a lease-only update)
  GlobalStatus status;       // the status the store holds (a lease-only update's expected_status)
  int64_t stored_wakeup_ms;  // the next_cron_time the store holds now
  int64_t stored_lease_ms;   // the lease_until the store holds now
  int64_t lease_needed_ms;   // 0 = no call in flight; else the wake-up that covers them all
  bool round_over = false;   // the decision ends the round
  bool stopping = false;     // the engine is stopping: nothing more is held
  int64_t now_ms = 0;        // update_time of a lease-only update
};

struct WritePlan {
  std::optional<TransUpdate> write;  // to commit now, before the decision's calls
  std::optional<TransUpdate> held;   // to write with the round's next update
  // Set when the plan wrote lease_until to cover the calls in flight (the engine's snapshot takes
  // it as its lease, and as its wake-up when the write pushed next_cron_time to it).
  std::optional<int64_t> lease_ms;
};

// `update`: the decision's update (nullopt if it has none); `held`: what earlier steps of the round
// hold.
WritePlan PlanWrite(std::optional<TransUpdate> update, std::optional<TransUpdate> held,
                    const WriteContext& ctx);

// True if `u` may be held: it records only branch successes (and the wake-up that follows them),
// and `stored_lease_ms` covers `lease_needed_ms`.
bool CanHold(const TransUpdate& u, int64_t stored_lease_ms, int64_t lease_needed_ms);

// Folds `later` into `into`, as if applied one after the other: branch updates are appended (the
// store applies them in order, so a later update of the same row wins) and a global field set in
// `later` replaces the held one.
void MergeInto(std::optional<TransUpdate>& into, TransUpdate later);

}  // namespace dtx::core
