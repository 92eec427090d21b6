// Engine: drives transactions. It turns API calls into durable state changes, runs processing
// rounds (core::Step decides, the engine persists and calls participants), schedules wake-ups,
// resumes due transactions (recovery) and enforces limits.
//
// Threading: transactions are sharded by gid over the IoPool's contexts; everything touching one
// transaction runs on its shard's single thread, so the state machine never races with itself.
// Public awaitables may be awaited from any executor; they hop to the shard and back.
//
// Durability: every decision's update is committed (Store callback) before the calls it orders are
// made and before an API call that changed state answers success — except an update that only
// records branch successes, which rides with the round's next update (core/write_plan.h).
//
// Refusals: a transition that is not allowed answers a Status with machine-readable facts
// (engine/refusal.h); the API words them (DTM's wording, api/wording.h).
//
// Limits: at most max_active_transactions rounds in memory; a submit beyond it answers kUnavailable
// (503, retryable) before anything is persisted, and recovery claims only as many as there is room
// for.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/machine.h"
#include "core/model.h"
#include "core/notify.h"
#include "engine/branch_caller.h"
#include "engine/timer.h"
#include "ops/metrics.h"
#include "runtime/io_pool.h"
#include "store/store.h"
#include "util/clock.h"

namespace dtx::engine {

// Margin added to a call's deadline in the lease written before the call: the clock skew tolerated
// between coordinators that share a store (they must be NTP-synchronized to well within it).
inline constexpr int64_t kLeaseMarginMs = 2000;

struct EngineOptions {
  core::Settings settings;
  int64_t cron_interval_ms = 1000;          // idle sleep of the recovery loop
  size_t max_active_transactions = 50'000;  // rounds held in memory at once
  int claim_batch = 512;                    // due transactions claimed per store round trip
  std::string alert_webhook;                // POSTed to when a branch keeps failing (§3.6)
  int64_t alert_retry_limit = 3;            // retry count from which alerts fire
  std::string owner;  // lease owner written on claimed rows; empty = host-pid-random
  // Records every branch call in the store's call history (issue 13; --call-history). Off: only
  // the attempt count and the last error are kept, as before.
  bool call_history = true;
};

using CallerFactory =
    std::function<std::unique_ptr<BranchCaller>(boost::asio::any_io_executor executor)>;

// Business keys a round's starter knows already (Engine::StartRound): `spec` parsed from
// custom_data (else the round parses it), `taken` by the create that made the transaction (its
// first gate then skips the store).
struct KnownKeys {
  std::optional<core::KeySpec> spec;
  bool taken = false;
};

class Engine {
 public:
  // `caller_factory` defaults to NewHttpBranchCaller, `timers` (null) to Asio timers on `clock`.
  // Store, pool, clock, metrics and timers must outlive the engine. `metrics` may be null.
  Engine(EngineOptions options, store::Store& store, runtime::IoPool& pool, Clock& clock,
         ops::Metrics* metrics, CallerFactory caller_factory = {}, TimerFactory* timers = nullptr);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Starts the recovery loop (which also resumes everything left unfinished by a previous process).
  void Start();
  // Stops the recovery loop and refuses new work; rounds in progress are abandoned at their next
  // step (their state is durable and is resumed by the next process). Idempotent.
  void Stop();
  // After Stop() and after the IoPool's threads have been joined, but BEFORE the IoPool (its
  // io_contexts) is destroyed: drops every I/O object the engine owns (participant clients, round
  // state, the recovery timer), so that destroying the io_contexts — which destroys suspended
  // coroutines that still point into the engine — happens while the engine is alive, and nothing
  // the engine keeps outlives its io_context.
  void Shutdown();

  // submit (PROTOCOL.md §1.12, §1.5). An absent gid is created from `proposed` (saga, plain msg);
  // a prepared tcc/xa/msg moves to submitted with `patch` applied to its stored options (and, for
  // msg, a non-empty `custom_data` replacing the stored one); a submitted one is resumed.
  struct SubmitRequest {
    core::TransSnapshot proposed;  // validated; global.gid and trans_type always set
    bool wait_result = false;
    core::OptionsPatch patch;
    std::string custom_data;
  };
  boost::asio::awaitable<Status> Submit(SubmitRequest request);
  // prepare of tcc/xa/msg: creates the transaction as prepared (msg: with its action rows).
  // saga -> kInvalidArgument; an existing prepared transaction of the same type -> ok, unchanged.
  boost::asio::awaitable<Status> Prepare(core::TransSnapshot proposed);
  // abort: tcc/xa prepared -> aborting (cancels run), aborting -> resumed; msg prepared -> failed;
  // everything else -> kConflict; unknown gid -> kNotFound. `wait_result` nullopt = the stored one.
  boost::asio::awaitable<Status> Abort(std::string gid, std::optional<bool> wait_result,
                                       std::string rollback_reason, core::OptionsPatch patch);
  // registerBranch of tcc/xa: inserts `rows` while the transaction is prepared. An identical repeat
  // -> ok; different rows with the same ids -> kConflict (refusal::kBranchMismatch); not prepared
  // or unknown -> kConflict (refusal::kNotPrepared).
  boost::asio::awaitable<Status> RegisterBranch(std::string gid, core::TransType type,
                                                std::vector<core::BranchRow> rows);
  boost::asio::awaitable<Status> ForceStop(std::string gid);
  boost::asio::awaitable<Status> ResetNextCronTime(std::string gid);
  boost::asio::awaitable<Result<int64_t>> ResetCronTime(int64_t timeout_ms, int limit);
  boost::asio::awaitable<Result<std::optional<core::TransSnapshot>>> Query(std::string gid);
  boost::asio::awaitable<Result<store::ListPage>> List(store::ListQuery query);

  // Topics (PROTOCOL.md §2.3): the KV row (cat "topics", k = name) whose v is the JSON array
  // [{"url","remark"}]. Changes are read-modify-compare-and-set on the row's version, retried a few
  // times, so coordinators sharing a store agree; every read goes to the store (no cache), so a
  // change applies to the next transaction created on every instance (§5 #17).
  struct Subscriber {
    std::string url;
    std::string remark;
  };
  // The current subscribers in subscription order; empty for an unknown topic.
  boost::asio::awaitable<Result<std::vector<Subscriber>>> TopicSubscribers(std::string topic);
  // Creates the topic if missing. kInvalidArgument (refusal::kTopicEmptyName / kTopicEmptyUrl);
  // kAlreadyExists (refusal::kTopicUrlExists).
  boost::asio::awaitable<Status> Subscribe(std::string topic, std::string url, std::string remark);
  // kNotFound (refusal::kTopicNotFound / kTopicUrlNotFound). The topic row stays, with an empty
  // list, when its last subscriber leaves (as in DTM).
  boost::asio::awaitable<Status> Unsubscribe(std::string topic, std::string url);
  // kNotFound (refusal::kTopicNotFound) for an unknown topic.
  boost::asio::awaitable<Status> DeleteTopic(std::string topic);
  boost::asio::awaitable<Result<store::KvPage>> ScanKv(std::string cat, int64_t before_id,
                                                       int limit);
  boost::asio::awaitable<Result<std::vector<store::KvRow>>> QueryKv(std::string cat,
                                                                    std::string key);
  // Store::KvPut (durable): insert when expected_version is 0, else compare-and-set on the row's
  // version; kConflict when the row changed (or exists, for an insert).
  boost::asio::awaitable<Status> PutKv(std::string cat, std::string key, std::string value,
                                       int64_t expected_version);

  // Notifications (docs/notifications.md, engine/notify.cc). `proposed` is a validated notify
  // transaction (status prepared for a two-phase one, else submitted) and `state` its
  // core::NotifyState (encoded into custom_data here, once). The same id with the same request_hash
  // -> ok, unchanged; a different one (or another transaction with that gid) -> kConflict. A first
  // attempt due at once is made by a round started here; a later one by recovery when it is due.
  boost::asio::awaitable<Status> CreateNotify(core::TransSnapshot proposed,
                                              core::NotifyState state);
  // prepared -> pending (submitted; ok if it was submitted already, even if it finished since).
  // kNotFound; kConflict when aborted.
  boost::asio::awaitable<Status> SubmitNotify(std::string id);
  // prepared -> aborted (failed, rollback_reason "aborted"; ok if already). kNotFound; kConflict.
  boost::asio::awaitable<Status> AbortNotify(std::string id);
  // delivered or failed -> pending, its schedule from the start, its log kept. kNotFound;
  // kConflict for a pending, prepared or aborted one.
  boost::asio::awaitable<Status> ResendNotify(std::string id);

  // Operator actions (admin_actions.cc; the admin API: src/ops/admin.h). One compare-and-set on
  // the status read (or on `expect_status`, the status the operator saw): retry (due now, backoff
  // started over), stop (-> failed, no compensation), abort (saga submitted / tcc, xa prepared
  // -> aborting: compensations run), skip (branch (branch_id, op) -> succeed, then continue).
  // kNotFound: unknown gid or branch; kConflict: final, not allowed in this state, or not the
  // expected status. None cuts the lease of a round in flight short (they move next_cron_time,
  // never lease_until).
  enum class OperatorAction : unsigned char { kRetry, kStop, kAbort, kSkip };
  struct OperatorRequest {
    std::string gid;
    OperatorAction action = OperatorAction::kRetry;
    std::optional<core::GlobalStatus> expect_status;
    std::string branch_id;  // skip
    std::string op;         // skip
    std::string reason;     // recorded in rollback_reason (stop, abort) or last_error (skip)
  };
  struct OperatorOutcome {
    core::GlobalStatus before = core::GlobalStatus::kSubmitted;
    core::GlobalStatus after = core::GlobalStatus::kSubmitted;
  };
  boost::asio::awaitable<Result<OperatorOutcome>> Operate(OperatorRequest request);

  // Business keys (business_keys.cc, docs/saga.md "Business keys"): the lock state of `gid`'s keys
  // (held, or the gid it waits for). A read; a transaction without keys reads as held.
  boost::asio::awaitable<Result<core::KeyState>> KeysOf(std::string gid);
  // What readers show (GET query, the admin detail and list): nullopt when `g` is final or lists no
  // business keys (no store read then), else KeysOf(g.gid). `g` must outlive the await.
  boost::asio::awaitable<Result<std::optional<core::KeyState>>> KeyStateOf(
      const core::GlobalTrans& g);

  size_t active_transactions() const { return active_count_.load(std::memory_order_relaxed); }

  // monitoring.cc: refreshes the dtx_due_backlog gauge (transactions due now and not leased,
  // counted up to kDueBacklogCap) with one bounded store read, at most once per second; called
  // before the metrics are rendered. The gauge reads -1 until the first count.
  boost::asio::awaitable<void> RefreshMonitoring();
  static constexpr int64_t kDueBacklogCap = 100'000;
  const EngineOptions& options() const { return options_; }

 private:
  // Private internals (engine_internal.h); each group below lives in the file named above it.
  struct Active;
  struct Shard;
  struct CronState;
  class GidGuard;
  enum class WaitFor : unsigned char { kSubmit, kAbort };
  using ActivePtr = std::shared_ptr<Active>;
  using Loaded = Result<std::optional<core::TransSnapshot>>;

  // shard_runtime.cc: shards, the per-gid lock, store access, round bookkeeping.
  Shard& ShardFor(const std::string& gid);
  boost::asio::awaitable<GidGuard> LockGid(Shard& shard, std::string gid);
  boost::asio::awaitable<Loaded> LoadOnShard(std::string gid);
  boost::asio::awaitable<Status> Create(const core::TransSnapshot& snap);
  // Create, answering whether it took its business keys (Store::CreateTakingKeys).
  boost::asio::awaitable<Result<bool>> CreateTakingKeys(const core::TransSnapshot& snap);
  // Updates the stored transaction (compare-and-set on update.expected_status, never a final one).
  boost::asio::awaitable<Status> Transition(core::TransUpdate update);
  // keys (if given): the business keys parsed from custom_data (empty spec without any).
  void InitNew(core::TransSnapshot& snap, core::GlobalStatus status, int64_t now,
               core::KeySpec* keys = nullptr);
  // Starts a round for a loaded snapshot unless one is running; returns the round's entry.
  ActivePtr StartRound(Shard& shard, core::TransSnapshot snap, KnownKeys keys = {});
  // A place under max_active_transactions for the round of a transaction about to be created,
  // taken before the create's store write so that concurrent creates cannot pass the limit
  // together; released when it goes out of scope (after StartRound counted the round).
  // Takes up to `want` places (0 at the limit); the caller gives them back with reserved_.
  size_t ReservePlaces(size_t want);
  class RoundSlot {
   public:
    explicit RoundSlot(Engine& e);
    RoundSlot(const RoundSlot&) = delete;
    RoundSlot& operator=(const RoundSlot&) = delete;
    ~RoundSlot();
    bool held() const { return held_; }

   private:
    Engine& e_;
    bool held_ = false;
  };
  // Called by the round when it ends: it leaves the shard's bookkeeping.
  void EndRound(Shard& shard, const ActivePtr& active);
  // now + the request timeout + kLeaseMarginMs: how far the stored wake-up must lie for a call made
  // now.
  int64_t LeaseUntil(const core::TransSnapshot& snap) const;
  // Whether a call started now ends (deadline plus half the skew margin) before `stored_wakeup_ms`.
  bool LeaseCovers(const core::TransSnapshot& snap, int64_t stored_wakeup_ms) const;
  // Takes over a stored transaction for a round started by an API call (a re-submit, an abort of
  // an aborting one) when no round of it runs here: ours -> at once; another coordinator's -> only
  // if nobody holds a lease on it (it is due). Writes this coordinator's owner and lease into the
  // store and into `snap`; false if it is not ours to drive now.
  boost::asio::awaitable<bool> ClaimForResume(core::TransSnapshot& snap);
  // Replaces snap's branch rows by the stored ones (tcc/xa, once the store holds it out of
  // prepared: rows registered on another coordinator since `snap` was loaded).
  boost::asio::awaitable<void> ReloadBranches(core::TransSnapshot& snap);
  // How long a wait_result request waits for `active`'s round.
  int64_t WaitDeadline(const Active& active) const;

  // submit.cc: the submit transition.
  boost::asio::awaitable<Status> SubmitOnShard(SubmitRequest request);
  // Under the gid's lock: the round the submit started or joined (null: none to wait for).
  // `elsewhere`: set when another coordinator drives the transaction (wait_result follows the
  // store).
  boost::asio::awaitable<Result<ActivePtr>> SubmitLocked(Shard& shard, SubmitRequest& req,
                                                         bool& elsewhere);
  boost::asio::awaitable<Result<ActivePtr>> SubmitStored(Shard& shard, SubmitRequest& req,
                                                         core::TransSnapshot stored,
                                                         bool& elsewhere);
  boost::asio::awaitable<Result<ActivePtr>> SubmitPrepared(Shard& shard, SubmitRequest& req,
                                                           core::TransSnapshot stored);
  boost::asio::awaitable<Result<ActivePtr>> SubmitNew(Shard& shard, SubmitRequest& req);
  // Waits until no round of `gid` runs from the prepared state (caller holds the gid's lock).
  boost::asio::awaitable<void> WaitWhilePrepared(Shard& shard, const std::string& gid);

  // transitions.cc: prepare, abort, registerBranch, forceStop.
  boost::asio::awaitable<Status> PrepareOnShard(core::TransSnapshot proposed);
  boost::asio::awaitable<Status> AbortOnShard(std::string gid, std::optional<bool> wait_result,
                                              std::string rollback_reason,
                                              core::OptionsPatch patch);
  boost::asio::awaitable<Result<ActivePtr>> AbortTccXa(Shard& shard, core::TransSnapshot stored,
                                                       const std::string& rollback_reason,
                                                       const core::OptionsPatch& patch);
  boost::asio::awaitable<Status> RegisterBranchOnShard(std::string gid, core::TransType type,
                                                       std::vector<core::BranchRow> rows);
  // registerBranch of rows whose ids exist: ok for an identical repeat.
  boost::asio::awaitable<Status> CheckRegisteredRepeat(const std::string& gid, core::TransType type,
                                                       const std::vector<core::BranchRow>& rows);
  boost::asio::awaitable<Status> ForceStopOnShard(std::string gid);

  // admin_actions.cc: operator actions (optional: co_spawn needs a default-constructible result;
  // always set).
  boost::asio::awaitable<std::optional<Result<OperatorOutcome>>> OperateOnShard(
      OperatorRequest request);

  // round.cc: the processing round.
  boost::asio::awaitable<void> RunRound(Shard* shard, ActivePtr active);
  // Plans the write of a decision's update (core/write_plan.h) and commits it.
  boost::asio::awaitable<Status> WriteStep(Active& active, core::Decision& decision);
  void StartCalls(Shard* shard, const ActivePtr& active, const std::vector<size_t>& calls);
  boost::asio::awaitable<core::Event> NextEvent(Active& active);
  void FinishRound(Shard* shard, const ActivePtr& active);
  boost::asio::awaitable<Status> WaitRound(ActivePtr active, int64_t deadline_ms, WaitFor what);
  // wait_result for a transaction another coordinator drives: follows the store (bounded).
  boost::asio::awaitable<Status> WaitStored(std::string gid, WaitFor what);
  // wait_result's answer for a transaction the store holds as final (WaitStored, WaitKeyed).
  static Status FinalWaitAnswer(const core::GlobalTrans& g, WaitFor what);
  // After a committed write: extends the lease again if time passed while it was in flight and
  // the decision's calls would outlive it.
  boost::asio::awaitable<Status> RecheckLease(Active& active, const core::Decision& decision);

  // round_calls.cc: one branch call, its answer, metrics and alerts.
  boost::asio::awaitable<void> CallBranch(Shard* shard, ActivePtr active, size_t index,
                                          BranchCallSpec spec);
  void RecordCallMetric(const Active& active, const core::Event& event);
  // Every participant call goes through here: counted in flight, its latency by host in metrics.
  boost::asio::awaitable<BranchAnswer> MeteredCall(Shard* shard, BranchCallSpec spec);
  void MaybeAlert(Shard* shard, const Active& active, const core::Event& event, bool indeterminate);
  boost::asio::awaitable<void> SendAlert(Shard* shard, BranchCallSpec alert);

  // notify.cc: notifications.
  boost::asio::awaitable<Status> CreateNotifyOnShard(core::TransSnapshot proposed,
                                                     core::NotifyState state);
  boost::asio::awaitable<Status> AbortNotifyOnShard(std::string id);
  boost::asio::awaitable<Status> ResendNotifyOnShard(std::string id);
  // Starts one attempt of the round's notification (counted in outstanding_calls).
  void StartNotifyCall(Shard* shard, const ActivePtr& active);
  // One attempt: the call, its latency, its class by the notification's success rule.
  boost::asio::awaitable<void> CallNotify(Shard* shard, ActivePtr active, BranchCallSpec spec);
  // After a committed status change of a notification: the notify_failed alert.
  void NotifyStatusCommitted(const Active& active, core::GlobalStatus status);

  // business_keys.cc: serialization on business keys. KeysGate runs before a round's first
  // decision: false = the round must end now (it waits for its keys, was refused or failed).
  bool HasKeys(Active& active) const;
  boost::asio::awaitable<bool> KeysGate(Active& active);
  boost::asio::awaitable<Result<core::KeyState>> AcquireKeysRetrying(std::string gid, bool acquire,
                                                                     int64_t park_until_ms);
  // After a transaction with keys became final here: the recovery loop wakes their waiters now.
  // Only while some transaction may wait for keys: see NoteKeyWaiters.
  void WakeKeyWaitersSoon();
  // This coordinator saw a transaction that may wait for its keys (queued at its create, or an
  // acquire that did not take them). Until the recovery loop has seen the store with no waiter
  // since, every release wakes waiters at once; after that a release costs no wake-up (waiters
  // queued by another coordinator are woken by its own release or the once-per-cron-interval
  // check).
  void NoteKeyWaiters() { key_epoch_.fetch_add(1); }
  // In the recovery loop: when woken, or once per cron interval (another coordinator may have
  // released keys), makes every waiter that can run now due.
  boost::asio::awaitable<void> MaybeWakeKeyWaiters();
  // wait_result of a transaction whose round ended waiting for its keys.
  boost::asio::awaitable<Status> WaitKeyed(Shard& shard, std::string gid, WaitFor what,
                                           int64_t deadline_ms);
  int64_t KeyWaitDeadline(const Active& active) const;
  // keys_prepare.cc: a tcc/xa's prepare waits for its keys (docs/tcc.md "Business keys"). OK once
  // they are held; kConflict when refused or timed out (the transaction is then failed).
  boost::asio::awaitable<Status> PrepareKeyWait(Shard& shard, std::string gid);
  // One look under the gid's lock: 0 = held (or no keys), else the time to look again at the
  // latest; an error ends the wait.
  boost::asio::awaitable<Result<int64_t>> PrepareKeyStep(std::string gid);
  // keys_prepare.cc: a prepared tcc/xa whose key wait failed but which has branch rows is written
  // aborting (its cancels run) instead of failed. True when that path was taken (a.outcome says
  // whether the write succeeded).
  boost::asio::awaitable<bool> KeyFailAborts(Active& active, std::string reason);
  // A submit of a prepared tcc/xa whose keys are not held (its prepare did not answer 200) ->
  // kConflict.
  boost::asio::awaitable<Status> CheckKeysHeldForSubmit(const core::TransSnapshot& stored);
  // registerBranch of a tcc/xa whose keyed prepare waits on this coordinator: kConflict naming the
  // key and its holder unless it holds its keys (a client that did not wait for the prepare's 200).
  boost::asio::awaitable<Status> CheckKeysHeldForRegister(std::string gid);

  // recovery.cc: the recovery loop.
  boost::asio::awaitable<void> CronLoop();
  // Claims up to `limit` due transactions and resumes them; returns how many it claimed.
  boost::asio::awaitable<size_t> ClaimAndResume(int limit, int64_t lease_ms);
  boost::asio::awaitable<void> ResumeOnShard(std::string gid);

  // topics.cc: reads the topic, applies `change` to its subscriber list and writes it back with a
  // compare-and-set on the version, retrying on a lost race. `change` returns an error to stop.
  boost::asio::awaitable<Status> ChangeTopic(
      const std::string& topic, bool create,
      const std::function<Status(std::vector<Subscriber>&)>& change);

  EngineOptions options_;
  store::Store& store_;
  runtime::IoPool& pool_;
  Clock& clock_;
  ops::Metrics* metrics_;
  std::unique_ptr<TimerFactory> own_timers_;
  TimerFactory* timers_ = nullptr;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::atomic<size_t> active_count_{0};
  std::atomic<size_t> resuming_{0};  // claimed by recovery, round not started yet
  std::atomic<size_t> reserved_{0};  // RoundSlots held: creates whose round has not started yet
  std::atomic<size_t> calls_in_flight_{0};  // participant calls awaiting an answer
  std::atomic<int64_t> due_backlog_{-1};    // monitoring.cc
  std::atomic<int64_t> due_backlog_at_ms_{0};
  std::atomic<bool> stopped_{false};
  std::atomic<bool> started_{false};
  std::shared_ptr<CronState> cron_;
  std::atomic<bool> keys_wake_{false};  // WakeKeyWaitersSoon was called
  // NoteKeyWaiters counts in key_epoch_; key_quiet_epoch_ is the count at which the recovery loop
  // last found no waiter in the store (none found yet: never equal).
  std::atomic<uint64_t> key_epoch_{1};
  std::atomic<uint64_t> key_quiet_epoch_{0};
  int64_t next_key_check_ms_ = 0;  // the recovery loop's (its thread only)
};

// "retry", "stop", "abort", "skip".
std::string_view ToString(Engine::OperatorAction action);

}  // namespace dtx::engine
