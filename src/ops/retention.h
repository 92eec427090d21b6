// Retention (issue 13): a job that deletes old history so the store does not grow without bound —
// finished transactions (succeed or failed, notifications included) with their branch rows, after
// --retain-finished; the audit log and resolve marks after --retain-audit (longer by default).
// Unfinished transactions are never touched (Store::DeleteFinished selects final statuses only).
//
// Deletion goes in small batches (batch_rows per store write, a pause between batches) so that the
// store's writer keeps serving the engine in between, and each run stops after max_batches_per_run
// batches per table (what is left waits for the next run). Several coordinators sharing one
// PostgreSQL may all run it: a batch only deletes rows that are still there.
//
// Thread-safety: Start/Stop from any thread; RunOnce may be awaited from any executor (runs of one
// job must not overlap: Start's loop runs them one after another).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <memory>

#include "ops/metrics.h"
#include "store/store.h"
#include "util/clock.h"
#include "util/status.h"

namespace dtx::ops {

struct RetentionOptions {
  int64_t retain_finished_ms = 0;                     // 0: finished transactions are kept
  int64_t retain_audit_ms = 90LL * 24 * 3600 * 1000;  // 0: the audit log is kept
  int batch_rows = 500;           // rows per store write, 1..store::kMaxRetentionBatch
  int64_t pause_ms = 20;          // between two batches: other writes get the writer meanwhile
  int max_batches_per_run = 200;  // per run and table (1..100000): 100,000 rows at the default
  int64_t interval_ms = 60'000;   // from the end of one run to the next one (>= 1)
};

// kInvalidArgument naming the bad option.
Status ValidateRetention(const RetentionOptions& options);

struct RetentionRun {
  int64_t transactions = 0;
  int64_t branches = 0;
  int64_t audit = 0;  // key-value rows of the audit log and resolve marks
  int batches = 0;
  bool more = false;  // a table hit max_batches_per_run: more is due
};

class RetentionJob {
 public:
  // `store` and `clock` must outlive the job and every run it started; `metrics` may be null.
  RetentionJob(store::Store& store, Clock& clock, Metrics* metrics, RetentionOptions options);
  ~RetentionJob();
  RetentionJob(const RetentionJob&) = delete;
  RetentionJob& operator=(const RetentionJob&) = delete;

  // Runs at once, then every interval_ms, on `executor`. Nothing to do when both retentions are 0.
  void Start(boost::asio::any_io_executor executor);
  // The loop ends after the batch in progress (if any).
  void Stop();

  // One run: deletes what is older than the horizons at the clock's now.
  boost::asio::awaitable<Result<RetentionRun>> RunOnce();

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace dtx::ops
