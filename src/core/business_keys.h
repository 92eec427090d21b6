// Business keys (issue 15 item 2, docs/saga.md "Business keys"): a durable semantic lock. A
// transaction lists keys such as "account:42"; while an earlier unfinished transaction holds or
// queues ahead on any of them, it waits on the coordinator, and it starts once it is the front-most
// waiter on every one of its keys and nobody holds them (all keys or none, FIFO per key).
//
// The keys travel in the transaction's custom_data ({"business_keys":[...],"on_busy":"reject"},
// read with Go's key rule, core/json_keys.h), so every reader of a stored transaction knows them;
// the store keeps the lock itself (one row per key, written with the transaction, deleted in the
// write that makes it final). This file: the pure parts (parsing, limits, the wait decision).
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/model.h"
#include "core/retry_policy.h"
#include "util/status.h"

namespace dtx::core {

inline constexpr size_t kMaxBusinessKeys = 16;       // keys per transaction
inline constexpr size_t kMaxBusinessKeyBytes = 128;  // bytes per key

struct KeySpec {
  std::vector<std::string> keys;  // sorted, without duplicates; empty = no serialization
  bool reject_if_busy = false;    // "on_busy": "reject"
};

// Checks a key list as given by a client: 1..kMaxBusinessKeys strings of 1..kMaxBusinessKeyBytes
// bytes, valid UTF-8 without control characters. kInvalidArgument naming the problem. Returns the
// keys sorted without duplicates.
Result<std::vector<std::string>> NormalizeBusinessKeys(const std::vector<std::string>& keys);

// "wait" (or empty) -> false, "reject" -> true; anything else kInvalidArgument.
Result<bool> ParseOnBusy(std::string_view on_busy);

// The key spec stored in custom_data. Empty custom_data, non-JSON or a non-object custom_data, or
// no "business_keys" key -> an empty spec. A business_keys value that is not an array of strings,
// or keys outside the limits, or an unknown on_busy -> kInvalidArgument.
Result<KeySpec> ParseKeySpec(std::string_view custom_data);

// custom_data with "business_keys" (and "on_busy" when reject_if_busy) set. custom_data must be
// empty or a JSON object (kInvalidArgument otherwise); its other members are kept.
Result<std::string> WithKeySpec(std::string_view custom_data, const KeySpec& spec);

// What the store says about a transaction's keys (store::Store::AcquireKeys).
struct KeyState {
  bool held = false;        // it holds all its keys (or has no key rows left)
  std::string waiting_for;  // not held: the gid ahead of it (a holder or an earlier waiter)
  std::string waiting_key;  // ... on this key
  // Not held and nothing decided (PostgreSQL: another decision on one of the keys was in flight,
  // store/postgres/keys.h): neither acquired nor parked; ask again.
  bool contended = false;
};

// The decision at the start of a round of a transaction with keys that does not hold them.
struct KeyWait {
  enum class Kind : unsigned char { kRun, kWait, kFail };
  Kind kind = Kind::kRun;
  int64_t wake_at_ms = 0;  // kWait: the stored wake-up (the timeout, or a daily re-check)
  std::string reason;      // kFail: the rollback_reason
};

// A waiter wakes by itself at the latest after this long (a safety net; it is normally woken when
// the keys are released).
inline constexpr int64_t kKeyWaitRecheckMs = int64_t{24} * 3600 * 1000;

// tcc and xa wait for their keys in `prepare` (their try phase runs in the client once prepare has
// answered): at most this long after the transaction was created, and never past its
// timeout_to_fail (docs/tcc.md "Business keys").
inline constexpr int64_t kMaxPrepareKeyWaitMs = 30'000;

// The end of a tcc/xa's wait for its keys: create_time + min(timeout_to_fail, kMaxPrepareKeyWaitMs)
// (timeout_to_fail 0, never, counts as unlimited).
int64_t PrepareKeyWaitDeadlineMs(const GlobalTrans& g, const Settings& settings);

// Whether a round may call branches. A submitted saga or msg without its keys waits (a prepared
// one calls no action). A prepared tcc/xa without its keys waits until PrepareKeyWaitDeadlineMs,
// then fails (no branch of it ran: the client calls its tries only after prepare answered 200);
// on_busy reject fails it at once. A saga with timeout_to_fail fails once it has passed while it
// waits (no branch call is made); on_busy reject fails at once. An aborting saga that does not hold
// its keys never held them (they are released only in the final write), so none of its actions ran:
// it fails without a call (reason: its rollback_reason).
KeyWait DecideKeyWait(const GlobalTrans& g, const KeySpec& spec, const KeyState& state,
                      const Settings& settings, int64_t now_ms);

}  // namespace dtx::core
