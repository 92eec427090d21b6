// The pure transaction state machines: (snapshot, event, now) -> decision. No I/O, no clock, no
// randomness beyond the deterministic jitter of retry_policy.h. The engine owns the snapshot and
// the round state, persists each decision's update (durably) before making the calls it asks for,
// and feeds every call's result back as an event.
//
// A "round" is one processing pass over a transaction (PROTOCOL.md §1.4): started by the request
// that created or submitted it, or by recovery when it is due. Within a round a branch that
// answered anything but SUCCESS is not called again (it waits for its next wake-up), except for
// saga retry_limit.
//
// Thread-safety: none needed; each transaction is driven by one engine shard at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/model.h"
#include "core/retry_policy.h"

namespace dtx::core {

struct NotifyCache;  // core/notify.h

// Engine-owned, in-memory state of one round. Not persisted: a restart begins a new round.
struct Round {
  std::vector<unsigned char> in_flight;  // per branch index: a call is outstanding
  std::vector<unsigned char> parked;     // per branch index: answered non-SUCCESS this round
  // Saga: predecessors of each step, parsed from custom_data at the round's start.
  std::vector<std::vector<size_t>> predecessors;
  bool concurrent = false;
  size_t in_flight_count = 0;  // includes the msg check-back
  // msg: the check-back call (kCheckBackIndex) is outstanding / answered non-SUCCESS this round.
  bool check_back_in_flight = false;
  bool check_back_parked = false;
  // notify: the state parsed from custom_data, kept for the round so that it is parsed once, not
  // at every step and call (core/notify.h, RoundNotifyState).
  std::shared_ptr<NotifyCache> notify;
};

// msg: the check-back call (GET query_prepared?gid&trans_type=msg&branch_id=00&op=msg) has no
// branch row; its calls and results use this pseudo index.
inline constexpr size_t kCheckBackIndex = static_cast<size_t>(-2);

struct Event {
  enum class Kind : unsigned char { kStart, kResult };
  Kind kind = Kind::kStart;
  size_t branch_index = 0;  // kResult: which row's call finished
  CallClass result = CallClass::kSuccess;
  std::string answer;  // kResult: body or error text (for reasons and last_error)
  // kResult, notify attempts: the HTTP status (0 = no answer) and how long the call took.
  int http_status = 0;
  int64_t latency_ms = 0;
};

struct Decision {
  // To persist (compare-and-set on the status the snapshot had before this decision) before any
  // call in `calls` is made. Empty when nothing changed.
  std::optional<TransUpdate> update;
  std::vector<size_t> calls;  // branch indices to call now (msg: may hold kCheckBackIndex)
  bool round_over = false;    // nothing in flight and nothing more to do in this round
};

// Applies `event` to `snap` (mutated to the state the update describes) and `round`.
// Precondition (asserted): a kResult event names a branch that is in flight.
Decision Step(TransSnapshot& snap, Round& round, const Event& event, const Settings& settings,
              int64_t now_ms);

// Saga layout from custom_data {"concurrent":bool,"orders":{"2":[0,1]}} (keys case-insensitive).
// predecessors[k]: 0-based steps that must succeed before step k starts. Sequential sagas get
// predecessors[k] = {k-1}. Out-of-range indices, self-dependencies and cycles -> kInvalidArgument.
struct SagaLayout {
  bool concurrent = false;
  std::vector<std::vector<size_t>> predecessors;
};
Result<SagaLayout> ParseSagaLayout(std::string_view custom_data, size_t step_count);

// msg custom_data {"delay":N}: the delay in seconds before the first round (key matched by Go's
// rule, core/json_keys.h), capped at 100 years; 0 when custom_data is empty, null or has no delay.
// Not JSON, not an object, or a delay that is not a non-negative integer -> kInvalidArgument.
Result<int64_t> ParseMsgDelayS(std::string_view custom_data);

// Saga retry_limit: whether an answer of class `c` to branch `index` is re-invoked within the round
// (an action of a submitted saga answering ONGOING or ERROR while retry_count < retry_limit). The
// engine pauses core::ImmediateRetryDelayMs before feeding such an answer back.
bool SagaRetriesAtOnce(const GlobalTrans& global, size_t index, CallClass c);

// Validates the branch rows of a saga: pairs (compensate, action) with branch_id %02d of the step.
bool IsWellFormedSaga(const TransSnapshot& snap);

}  // namespace dtx::core
