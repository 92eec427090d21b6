// The engine's private internals, shared by its files (not for use outside src/engine):
//   shard_runtime.cc  shards, the per-gid lock (GidGuard), store access, round bookkeeping
//   submit.cc         the submit transition
//   transitions.cc    prepare, abort, registerBranch, forceStop, resets, reads
//   round.cc          the processing round (RunRound) and wait_result (WaitRound)
//   round_calls.cc    one branch call: the answer's classification, metrics, alerts
//   recovery.cc       the recovery loop (claims due transactions, resumes them)
//   topics.cc         topics and the KV reads
//
// Everything here runs on one shard's thread unless stated otherwise.
#pragma once

#include <spdlog/spdlog.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <deque>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/business_keys.h"
#include "core/machine.h"
#include "core/model.h"
#include "engine/engine.h"
#include "engine/timer.h"
#include "util/status.h"

// GCC 12 reports a false -Wmismatched-new-delete for Asio's awaitable frames: operator new uses
// aligned_alloc and the matching operator delete uses free, which GCC cannot pair once inlined
// (GCC bug 109224). Off for the engine's files, which all include this header.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace dtx::engine {

namespace asio = boost::asio;

// Slack a wait_result request waits beyond the round's request timeout.
inline constexpr int64_t kWaitResultSlackMs = 2000;

// Completion handler for detached coroutines: a coroutine that throws is a bug; log it loudly.
struct LogException {
  const char* what;
  void operator()(const std::exception_ptr& e) const {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("{}: unexpected exception: {}", what, ex.what());
    } catch (...) {
      spdlog::error("{}: unexpected exception", what);
    }
  }
};

// The completion token for work hopped onto a shard. The empty cancellation slot cuts the link to
// the caller's cancellation: when the HTTP server cancels a request's coroutine (e.g. at shutdown),
// Asio 1.81 would otherwise post a terminal cancellation to the shard coroutine, which may already
// have finished and been freed (seen as a SIGSEGV in cancellation_signal::emit under load at
// SIGTERM). A shard operation, once started, runs to its end; its state change is durable anyway.
inline auto OnShardToken() {
  return asio::bind_cancellation_slot(asio::cancellation_slot(), asio::use_awaitable);
}

// Waits for an event (not for time): a steady timer that never expires by itself and is woken by
// cancel().
inline void ArmForever(asio::steady_timer& timer) {
  timer.expires_at(std::chrono::steady_clock::time_point::max());
}

// One transaction being processed in memory (a round in progress). Lives on its shard's thread.
struct Engine::Active {
  explicit Active(asio::any_io_executor ex) : signal(ex) {}
  core::TransSnapshot snap;
  core::Round round;
  std::deque<core::Event> events;  // finished calls not yet fed to the state machine
  asio::steady_timer signal;       // cancelled to wake the round when an event arrives
  bool done = false;
  Status outcome;  // non-ok if the round was abandoned (store error, lost CAS)
  // The last non-SUCCESS answer of the round, for wait_result answers of tcc/xa/msg (§1.5).
  std::optional<core::CallClass> last_error_class;
  std::string last_error_text;
  size_t outstanding_calls = 0;  // spawned calls whose result has not been received yet
  std::vector<Timer*> waiters;   // wait_result requests
  // The status the store holds (the snapshot runs ahead of it while a write is in flight), and the
  // API calls waiting for it to change (WaitWhilePrepared).
  core::GlobalStatus stored_status = core::GlobalStatus::kSubmitted;
  std::vector<Timer*> status_waiters;
  bool restart = false;  // ended to start over from the store at once (tcc/xa leaving prepared)
  // Business keys (business_keys.cc): parsed from custom_data at the round's start; `keys_parked`:
  // the round ended waiting for them (the store holds it asleep until they are free).
  std::optional<core::KeySpec> keys;
  bool keys_parked = false;
  bool keys_taken = false;  // the create took them (StartRound): the gate needs no store read

  // The round's write state (core/write_plan.h).
  std::optional<core::TransUpdate> held;  // branch successes to write with the next update
  int64_t stored_wakeup_ms = 0;           // the next_cron_time the store holds
  int64_t stored_lease_ms = 0;            // the lease_until the store holds
  int64_t lease_needed_ms = 0;  // the wake-up that covers every call made so far, plus the margin
};

struct Engine::Shard {
  explicit Shard(asio::io_context& c) : ioc(c) {}
  asio::io_context& ioc;
  std::unique_ptr<BranchCaller> caller;
  std::unordered_map<std::string, ActivePtr> active;
  // Gids whose RunRound coroutine has been started and has not returned yet: the check that a
  // round never runs twice at once for one gid, independent of `active`.
  std::unordered_set<std::string> running_rounds;
  // Per-gid serialization of API transitions, registerBranch and round starts (see GidGuard).
  struct GidLock {
    bool held = false;
    std::deque<asio::steady_timer*> waiters;
  };
  std::unordered_map<std::string, std::shared_ptr<GidLock>> locks;
  // wait_result requests of transactions waiting for their business keys: woken when a round of
  // the gid starts here (business_keys.cc).
  std::unordered_map<std::string, std::vector<Timer*>> round_watchers;
  // Gids whose keyed tcc/xa prepare waits on this shard for its keys (keys_prepare.cc), with how
  // many such prepares: registerBranch of one of them reads its keys first
  // (CheckKeysHeldForRegister). Empty unless keyed prepares wait, so it costs a transaction
  // without keys one hash lookup.
  std::unordered_map<std::string, int> key_prepares;
};

// Holds a gid's lock on its shard. Transitions, registerBranch and the start of a round (its load)
// take it, so a round never starts from a snapshot that misses rows registered meanwhile; rounds
// themselves run without it. Used only on the shard's thread.
class Engine::GidGuard {
 public:
  GidGuard(Shard* shard, std::string gid) : shard_(shard), gid_(std::move(gid)) {}
  GidGuard(GidGuard&& o) noexcept
      : shard_(std::exchange(o.shard_, nullptr)), gid_(std::move(o.gid_)) {}
  GidGuard(const GidGuard&) = delete;
  GidGuard& operator=(const GidGuard&) = delete;
  GidGuard& operator=(GidGuard&&) = delete;
  ~GidGuard();

 private:
  Shard* shard_;
  std::string gid_;
};

struct Engine::CronState {
  std::unique_ptr<Timer> timer;
};

}  // namespace dtx::engine
