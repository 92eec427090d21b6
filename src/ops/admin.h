// The admin service (issue 13): what an operator can see and do, with no HTTP in it. The admin
// routes (api/admin_routes.cc), the `dtx tx` command line (through those routes) and the console
// all go through these operations.
//
// - List: transactions with filters (status, type, gid prefix, created range, stuck, resolved,
//   waiting for business keys), paged by position (a row id cursor); at most kMaxScanRows stored
//   rows and AdminOptions::max_key_reads key states are read per call, so a filter that matches
//   little answers a short page with a position to continue from.
// - Show: one transaction, its branches (attempts, last error), its business keys (held, or the
//   gid it waits for), its audit log, its resolve mark.
// - Act: retry, stop, abort, skip (engine::Engine::Operate) and resolve (a mark, no state change);
//   a reason is required; `expect_status` makes the action a compare-and-set on the status the
//   operator saw. A successful action is recorded in the audit log with who, when, reason and
//   status before -> after.
// - Audit: the audit log, newest first, for all transactions or one gid.
// - Notifications (docs/notifications.md, ops/admin_notify.cc): list and show in the notification
//   API's status words, resend (engine::Engine::ResendNotify) with a reason, audited like the
//   actions above. A notification's secret is never in what List, Show or these return.
//
// Storage: the audit log and resolve marks live in the store's key-value table (cat "dtx-audit",
// "dtx-audit:<gid>", "dtx-resolved"), so they are durable on SQLite, PostgreSQL and memory alike.
// The audit record is written after the action commits (a crash in between loses the record,
// not the action); the answer is given after both.
//
// Thread-safety: every awaitable may be awaited from any executor concurrently.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/business_keys.h"
#include "core/model.h"
#include "engine/engine.h"
#include "ops/metrics.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/status.h"

namespace dtx::ops {

inline constexpr int kMaxAdminListLimit = 500;
inline constexpr int kMaxScanRows = 5000;  // stored rows read by one List call at most
inline constexpr size_t kMaxReasonBytes = 1024;
inline constexpr int kMaxAuditLimit = 1000;
// Key states (Engine::KeyStateOf, one store read each) read by one List call at most.
inline constexpr int kMaxKeyReadsPerList = 200;

struct AdminOptions {
  int64_t alert_retry_limit = 3;  // stuck: an unfinished transaction retried at least this often
  int max_key_reads = kMaxKeyReadsPerList;  // per List call (>= 1)
};

struct AuditRecord {
  int64_t id = 0;  // store row id (descending order; a position for paging)
  int64_t time_ms = 0;
  std::string who;
  std::string gid;
  std::string action;
  std::string reason;
  std::string status_before;
  std::string status_after;
  std::string branch_id;  // skip
  std::string op;         // skip
};

struct AdminListQuery {
  std::string status;
  std::string trans_type;
  std::string gid_prefix;
  bool stuck = false;
  std::optional<bool> resolved;  // nullopt: both
  bool waiting = false;          // only unfinished ones whose business keys are not held
  int64_t created_after_ms = 0;  // inclusive, 0 = unbounded
  int64_t created_before_ms = 0;
  int limit = 50;        // 1..kMaxAdminListLimit
  int64_t position = 0;  // 0 = from the newest
};

struct NotifyListQuery {
  std::string status;  // pending, delivered, failed, aborted, prepared; empty: all
  int limit = 50;      // 1..kMaxAdminListLimit
  int64_t position = 0;
};

struct AdminRow {
  core::GlobalTrans trans;
  bool stuck = false;
  int64_t retries = 0;  // derived from the backoff interval, as DTM does
  bool resolved = false;
  // Business keys of an unfinished transaction that lists them (Engine::KeyStateOf): held, or the
  // gid it waits for. nullopt: final, no keys, or (List) not read.
  std::optional<core::KeyState> keys;
};

struct AdminPage {
  std::vector<AdminRow> rows;
  int64_t next_position = 0;  // 0 = nothing more
  int64_t scanned = 0;        // stored rows read
  int64_t key_reads = 0;      // key states read (at most AdminOptions::max_key_reads)
};

struct TransDetail {
  AdminRow row;
  std::vector<core::BranchRow> branches;
  // Per branch row (same order as `branches`): its newest calls (core::kMaxAttemptLog), oldest
  // first; BranchRow::attempts counts all of them. Empty when the store keeps no history.
  std::vector<std::vector<core::CallAttempt>> attempts;
  std::vector<AuditRecord> audit;  // newest first, at most 100
  std::optional<AuditRecord> resolved;
};

struct ActionRequest {
  std::string who;  // the token's name
  std::string gid;
  std::string action;  // retry, stop, abort, skip, resolve
  std::string reason;
  std::optional<std::string> expect_status;
  std::string branch_id;  // skip
  std::string op;         // skip; inferred when the branch has one unfinished op
};

struct ActionResult {
  std::string status_before;
  std::string status_after;
};

class AdminService {
 public:
  // All references must outlive the service; `metrics` may be null.
  AdminService(engine::Engine& engine, store::Store& store, Clock& clock, Metrics* metrics,
               AdminOptions options);

  boost::asio::awaitable<Result<AdminPage>> List(AdminListQuery query);
  // nullopt: unknown gid.
  boost::asio::awaitable<Result<std::optional<TransDetail>>> Show(std::string gid);
  // kInvalidArgument: no reason, unknown action, bad expect_status; kNotFound: unknown gid or
  // branch; kConflict: not allowed now or not the expected status (the caller shows the current
  // state with Show).
  boost::asio::awaitable<Result<ActionResult>> Act(ActionRequest request);
  // gid empty: all transactions. limit 1..kMaxAuditLimit; position 0 = from the newest.
  boost::asio::awaitable<Result<std::vector<AuditRecord>>> Audit(std::string gid, int limit,
                                                                 int64_t position);

  // Notifications (ops/admin_notify.cc). kInvalidArgument: an unknown status word.
  boost::asio::awaitable<Result<AdminPage>> ListNotifications(NotifyListQuery query);
  // nullopt: no notification with that id (or the gid is another kind of transaction).
  boost::asio::awaitable<Result<std::optional<TransDetail>>> ShowNotification(std::string id);
  // A delivered or failed notification becomes pending, its schedule from the start; statuses in
  // the notification API's words. kInvalidArgument: no reason; kNotFound; kConflict: pending,
  // prepared or aborted.
  boost::asio::awaitable<Result<ActionResult>> Resend(std::string who, std::string id,
                                                      std::string reason);

  // Whether `g` is stuck now, and its retry count (derived from the backoff).
  AdminRow Classify(core::GlobalTrans g) const;

 private:
  boost::asio::awaitable<Status> Record(AuditRecord record);
  boost::asio::awaitable<Result<ActionResult>> Resolve(const ActionRequest& r,
                                                       const core::GlobalTrans& g);
  boost::asio::awaitable<bool> IsResolved(const std::string& gid);

  engine::Engine& engine_;
  store::Store& store_;
  Clock& clock_;
  Metrics* metrics_;
  AdminOptions options_;
};

}  // namespace dtx::ops
