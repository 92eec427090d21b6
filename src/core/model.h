// The transaction model shared by every layer: global transactions, branch rows and their options,
// with the field names of PROTOCOL.md §2.4. Plain values, no I/O, no shared state.
//
// Times are UTC epoch milliseconds (0 = unset). Durations carry their unit in the name.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/status.h"

namespace dtx::core {

// kNotify: a best-effort notification (docs/notifications.md), a dtx extension.
enum class TransType : unsigned char { kSaga, kTcc, kXa, kMsg, kWorkflow, kNotify };
enum class GlobalStatus : unsigned char { kPrepared, kSubmitted, kAborting, kSucceed, kFailed };
enum class BranchStatus : unsigned char { kPrepared, kSucceed, kFailed };

std::string_view ToString(TransType t);
std::string_view ToString(GlobalStatus s);
std::string_view ToString(BranchStatus s);
std::optional<TransType> ParseTransType(std::string_view s);
std::optional<GlobalStatus> ParseGlobalStatus(std::string_view s);
std::optional<BranchStatus> ParseBranchStatus(std::string_view s);
inline bool IsFinal(GlobalStatus s) {
  return s == GlobalStatus::kSucceed || s == GlobalStatus::kFailed;
}

using Headers = std::vector<std::pair<std::string, std::string>>;

// Per-transaction options (PROTOCOL.md §1.3). Stored with the transaction at creation.
struct TransOptions {
  bool wait_result = false;
  int64_t timeout_to_fail_s =
      0;  // 0 = the mode's default (saga: never; tcc/xa/msg: server default)
  int64_t request_timeout_s = 0;  // 0 = server --request-timeout
  int64_t retry_interval_s = 0;   // 0 = server --retry-interval
  Headers branch_headers;         // added to every call dtx makes for this transaction
  bool concurrent = false;        // msg only (saga uses custom_data)
  int64_t retry_limit = 0;        // saga: immediate re-invocations allowed; 0 = off
  int64_t retry_count = 0;        // saga: initial value of the retry counter

  bool operator==(const TransOptions&) const = default;
};

// Option keys present in a later request (submit/abort of a prepared transaction): they override
// the stored options (§1.7, §5 #21). Absent keys keep the stored values.
struct OptionsPatch {
  std::optional<int64_t> timeout_to_fail_s;
  std::optional<int64_t> request_timeout_s;
  std::optional<int64_t> retry_interval_s;
  std::optional<int64_t> retry_limit;
  std::optional<Headers> branch_headers;
  std::optional<bool> concurrent;
  bool empty() const {
    return !timeout_to_fail_s && !request_timeout_s && !retry_interval_s && !retry_limit &&
           !branch_headers && !concurrent;
  }
  void ApplyTo(TransOptions& o) const {
    if (timeout_to_fail_s) o.timeout_to_fail_s = *timeout_to_fail_s;
    if (request_timeout_s) o.request_timeout_s = *request_timeout_s;
    if (retry_interval_s) o.retry_interval_s = *retry_interval_s;
    if (retry_limit) o.retry_limit = *retry_limit;
    if (branch_headers) o.branch_headers = *branch_headers;
    if (concurrent) o.concurrent = *concurrent;
  }
};

// The "options" column / JSON string of §2.4.
std::string EncodeOptionsJson(const TransOptions& o);
Result<TransOptions> DecodeOptionsJson(std::string_view json);

struct GlobalTrans {
  int64_t id = 0;  // assigned by the store
  std::string gid;
  TransType trans_type = TransType::kSaga;
  GlobalStatus status = GlobalStatus::kSubmitted;
  std::string protocol = "http";
  std::string query_prepared;
  std::string custom_data;
  std::string rollback_reason;
  std::string result;
  std::string owner;
  TransOptions options;
  int64_t create_time_ms = 0;
  int64_t update_time_ms = 0;
  int64_t finish_time_ms = 0;
  int64_t rollback_time_ms = 0;
  int64_t next_cron_interval_ms = 0;
  int64_t next_cron_time_ms = 0;
  int64_t retry_count = 0;  // persisted saga retry_limit counter (§5 #2)
  // The lease of the round that may have calls in flight, kept apart from the wake-up: recovery
  // claims a transaction only once both next_cron_time and lease_until have passed, so an
  // operator's retry (next_cron_time = now) never cuts a round in flight short.
  int64_t lease_until_ms = 0;
};

struct BranchRow {
  int64_t id = 0;  // assigned by the store, ascending in creation order
  std::string gid;
  std::string url;
  std::string bin_data;
  std::string branch_id;
  std::string op;
  BranchStatus status = BranchStatus::kPrepared;
  int64_t create_time_ms = 0;
  int64_t update_time_ms = 0;
  int64_t finish_time_ms = 0;
  int64_t attempts = 0;    // calls made for this row (§5 #2)
  std::string last_error;  // last non-SUCCESS answer, truncated to kMaxLastErrorBytes
};

// One call of a branch op, kept for operators (issue 13; GET /api/dtx/admin/transactions/{gid}).
// The store keeps the newest kMaxAttemptLog per branch row; BranchRow::attempts counts them all.
struct CallAttempt {
  int64_t seq = 0;      // 1-based: the row's attempts count after this call
  int64_t time_ms = 0;  // when the answer (or the failure) came
  int http_status = 0;  // 0 = no answer (connection error, timeout)
  int64_t latency_ms = 0;
  std::string result;  // SUCCESS, FAILURE, ONGOING or ERROR (the call's class)
  std::string error;   // non-SUCCESS: the answer's start, at most kMaxAttemptErrorBytes
};

// A global transaction with all its branch rows, in creation (id) order.
struct TransSnapshot {
  GlobalTrans global;
  std::vector<BranchRow> branches;
  // Business keys to lock (core/business_keys.h; sorted, distinct): Store::Create writes one key
  // row for each, in the same write. Load leaves it empty (the keys travel in custom_data).
  std::vector<std::string> business_keys;
};

// A change to one transaction, applied only if its status is still `expected_status`
// (compare-and-set); otherwise the whole update is refused with kConflict (kNotFound if the gid
// does not exist).
struct TransUpdate {
  std::string gid;
  GlobalStatus expected_status = GlobalStatus::kSubmitted;
  std::optional<GlobalStatus> new_status;
  std::optional<std::string> rollback_reason;
  std::optional<std::string> custom_data;
  std::optional<TransOptions> options;
  std::optional<int64_t> next_cron_time_ms;
  std::optional<int64_t> next_cron_interval_ms;
  std::optional<int64_t> retry_count;
  std::optional<int64_t> finish_time_ms;
  std::optional<int64_t> rollback_time_ms;
  int64_t update_time_ms = 0;

  // Leases between coordinators that share a store (docs/ARCHITECTURE.md, "Several coordinators").
  // expected_owner: also compare-and-set on the stored owner, so a coordinator whose lease was
  // taken over (it was paused, its clock jumped) can no longer write (fencing). due_by_ms: apply
  // only if the stored next_cron_time <= due_by_ms, i.e. nobody holds a lease on it (the claim of
  // one transaction). owner: the new owner. A mismatch fails the update with kConflict.
  // due_by_ms also requires the stored lease_until <= due_by_ms. lease_until_ms: the new lease
  // (GlobalTrans::lease_until_ms).
  std::optional<std::string> expected_owner;
  std::optional<int64_t> due_by_ms;
  std::optional<std::string> owner;
  std::optional<int64_t> lease_until_ms;

  // Branch rows are addressed by (branch_id, op), unique within a gid. An update of a row that does
  // not exist fails the whole TransUpdate with kNotFound.
  struct BranchUpdate {
    std::string branch_id;
    std::string op;
    std::optional<BranchStatus> status;
    std::optional<int64_t> attempts;  // new absolute value
    std::optional<std::string> last_error;
    std::optional<int64_t> finish_time_ms;
    // Calls to record in the row's attempt history (appended; the store keeps the newest
    // kMaxAttemptLog of the row). Written in the same atomic write as the rest of the update.
    std::vector<CallAttempt> new_attempts;
  };
  std::vector<BranchUpdate> branches;
};

inline constexpr size_t kMaxGidBytes = 128;
inline constexpr size_t kMaxBranchIdBytes = 128;
inline constexpr size_t kMaxOpBytes = 45;
inline constexpr size_t kMaxUrlBytes = 1024;
inline constexpr size_t kMaxCustomDataBytes = 1024;
inline constexpr size_t kMaxRollbackReasonBytes = 1024;
inline constexpr size_t kMaxLastErrorBytes = 1024;
inline constexpr size_t kMaxAttemptLog = 20;             // attempts kept per branch row
inline constexpr size_t kMaxAttemptErrorBytes = 256;     // CallAttempt::error
inline constexpr size_t kMaxBinDataBytes = 1024 * 1024;  // per branch payload; DTM/MySQL: 64 KiB
inline constexpr size_t kMaxSteps = 1000;                // steps per saga/msg

// A gid as the API accepts it: kept verbatim (DTM strips ';', CR and LF; dtx does not, so a client
// finds its transaction under the gid it sent). Empty, over kMaxGidBytes, or holding a control
// character (bytes 0x00-0x1F and 0x7F) -> kInvalidArgument naming the problem.
Status ValidateGid(std::string_view gid);

}  // namespace dtx::core
