// The outbox relay behind `dtx relay`: worker threads that each claim pending outbox rows, publish
// them to the sink broker and mark them published only after the broker's acknowledgement
// (docs/outbox.md). A row whose publish failed in transport stays pending untouched (published
// again later: at least once); a row the broker refuses counts an attempt and is parked after
// max_attempts; a row that is not a valid message is parked at once with the reason.
//
// Thread-safety: RunRelay owns its threads; `stop` may be set from any thread (a signal handler's
// thread) and the workers finish their current batch and return.
//
// How it fails: RunRelay returns kInvalidArgument for bad options or an unknown sink scheme,
// kNotFound for a missing outbox table (without init) — before any row is touched. An unreachable
// database or broker never ends it: it logs and retries with capped, jittered backoff.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <string>

#include "util/backoff.h"
#include "util/status.h"

namespace dtx::relay {

struct RelayOptions {
  std::string source;  // postgres://... or sqlite:PATH
  std::string table = "dtx_outbox";
  std::string sink;          // redis://, nats://, kafka://, amqp:// or dtx(s)://host:port
  std::string sink_token;    // dtx(s):// only: the coordinator's API token
  std::string sink_ca_file;  // dtxs:// only: PEM CA certificates besides the system's store
  size_t batch = 500;        // rows per claim, 1..10000
  // Threads, each its own connections and share of the keys. 0: the default, 2 on PostgreSQL
  // (PostgreSQL's work for the two runs on two cores: docs/benchmarks.md round 6), 1 on SQLite
  // (one writer: more cannot help).
  int workers = 0;
  int max_attempts = 10;                              // broker refusals before a row is parked
  std::chrono::milliseconds poll_interval{1000};      // fallback when no NOTIFY arrives
  std::chrono::milliseconds publish_timeout{10'000};  // per batch
  std::chrono::seconds retain{0};  // delete published rows older than this; 0 = keep
  bool init = false;               // create the table if missing
  // Delete a row at its mark instead of marking it published (a third of the mark's cost: no new
  // row version, no index entries); no published rows are kept. Excludes `retain`.
  bool delete_published = false;
};

struct RelayStats {
  std::atomic<int64_t> published{0};
  std::atomic<int64_t> refused{0};
  std::atomic<int64_t> transport_failures{0};
  std::atomic<int64_t> deleted{0};
  // Where the workers' wall time went (summed over workers), for `relay stopped` and benchmarks:
  // claiming rows, publishing them (until the last ack), marking them and committing.
  std::atomic<int64_t> batches{0};
  std::atomic<int64_t> claim_us{0};
  std::atomic<int64_t> publish_us{0};
  std::atomic<int64_t> mark_us{0};
};

// The worker count `options.workers` stands for (0: the default for its source).
int WorkerCount(const RelayOptions& options);

// Checks options, prepares the table, calls `ready` once, then runs until `stop`.
Status RunRelay(const RelayOptions& options, const std::atomic<bool>& stop, RelayStats& stats,
                const std::function<void()>& ready);

// The relay's one backoff policy for an unreachable database or broker: 100 ms doubling to 5 s,
// with +-25 % jitter (util/backoff.h, shared with the inbox).
using Backoff = RetryBackoff;

}  // namespace dtx::relay
