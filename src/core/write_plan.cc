#include "core/write_plan.h"

#include <iterator>
#include <string>
#include <utility>

#include "util/mutation.h"

namespace dtx::core {

bool CanHold(const TransUpdate& u, int64_t stored_lease_ms, int64_t lease_needed_ms) {
  if (u.new_status || u.rollback_reason || u.custom_data || u.options || u.retry_count ||
      u.finish_time_ms || u.rollback_time_ms) {
    return false;
  }
  if (u.branches.empty() || stored_lease_ms < lease_needed_ms) return false;
  for (const auto& b : u.branches) {
    if (b.status != BranchStatus::kSucceed) return false;
  }
  return true;
}

void MergeInto(std::optional<TransUpdate>& into, TransUpdate later) {
  if (!into) {
    into = std::move(later);
    return;
  }
  TransUpdate& u = *into;
  u.expected_status = later.expected_status;
  auto take = [](auto& mine, auto& theirs) {
    if (theirs) mine = std::move(theirs);
  };
  take(u.new_status, later.new_status);
  take(u.rollback_reason, later.rollback_reason);
  take(u.custom_data, later.custom_data);
  take(u.options, later.options);
  take(u.next_cron_time_ms, later.next_cron_time_ms);
  take(u.next_cron_interval_ms, later.next_cron_interval_ms);
  take(u.retry_count, later.retry_count);
  take(u.lease_until_ms, later.lease_until_ms);
  take(u.finish_time_ms, later.finish_time_ms);
  take(u.rollback_time_ms, later.rollback_time_ms);
  u.update_time_ms = later.update_time_ms;
  u.branches.insert(u.branches.end(), std::make_move_iterator(later.branches.begin()),
                    std::make_move_iterator(later.branches.end()));
}

WritePlan PlanWrite(std::optional<TransUpdate> update, std::optional<TransUpdate> held,
                    const WriteContext& ctx) {
  WritePlan plan;
  const int64_t need = ctx.lease_needed_ms;
  if (update && !ctx.round_over && !ctx.stopping && CanHold(*update, ctx.stored_lease_ms, need)) {
    MergeInto(held, std::move(*update));
    plan.held = std::move(held);
    return plan;
  }
  // What is held goes with the next write (held first, the decision's update over it).
  auto take_held = [&] {
    if (!held) return;
    if (update) MergeInto(held, std::move(*update));
    update = std::move(held);
    held.reset();
  };
  if (update || ctx.round_over) take_held();
  if (need == 0 && update && !update->lease_until_ms && ctx.stored_lease_ms > ctx.now_ms) {
    // Nothing of this round is in flight: its lease ends with this write, so that the wake-up it
    // writes (a short backoff) is not held back by the lease of calls that have returned.
    update->lease_until_ms = ctx.now_ms;
  }
  if (need > 0) {
    // The stored lease (or the one this update writes) must cover the calls in flight.
    const int64_t lease =
        update && update->lease_until_ms ? *update->lease_until_ms : ctx.stored_lease_ms;
    // (The simulator's self-test variant skips this: dtx-sim must catch it.)
    if (lease < need && !DTX_MUTANT(kSkipLeaseExtension)) {
      if (!update) {
        update.emplace();
        update->gid = std::string(ctx.gid);
        update->expected_status = ctx.status;
        update->update_time_ms = ctx.now_ms;
      }
      update->lease_until_ms = need;
      // The wake-up never comes before the lease ends (recovery would only skip it meanwhile).
      const int64_t wakeup =
          update->next_cron_time_ms ? *update->next_cron_time_ms : ctx.stored_wakeup_ms;
      if (wakeup < need) update->next_cron_time_ms = need;
      plan.lease_ms = need;
      take_held();  // a lease-only update takes what is held along
    }
  }
  plan.write = std::move(update);
  plan.held = std::move(held);
  return plan;
}

}  // namespace dtx::core
