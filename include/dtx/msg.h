/// @file
/// dtx::Msg: a transactional message (PROTOCOL.md §1.9). A message is a list of actions (URL +
/// payload) that the coordinator delivers until every one of them answered SUCCESS; once submitted
/// it never rolls back. Two ways to send one:
///
/// Plain: the message does not depend on a local transaction of the sender.
/// @code
///   const std::string user_svc = "http://127.0.0.1:8082/api";
///   dtx::Client client("http://127.0.0.1:36789/api/dtmsvr");
///   dtx::Msg msg(client, "");                              // "": a fresh gid from the server
///   msg.Add(user_svc + "/user/applyTrade", R"({"amount":30})").SetDelay(10);
///   dtx::Status s = msg.Submit();
/// @endcode
///
/// Two-phase, tied to a local transaction (the message is delivered if and only if the local
/// transaction committed, even when this process dies between the commit and the submit), and, in
/// the same service, the check-back endpoint the coordinator calls when the sender went silent
/// (GET \<query_prepared\>?gid=..&trans_type=msg&branch_id=00&op=msg):
/// @code
/// #include <sqlite3.h>
///   const std::string user_svc = "http://127.0.0.1:8082/api";
///   const std::string trade_svc = "http://127.0.0.1:8083/api";   // this service
///   sqlite3* conn = nullptr;                  // the business database, with the barrier table
///   if (sqlite3_open("trade.db", &conn) != SQLITE_OK) return;
///   dtx::ParticipantServer server({.port = 8083});
///   server.Handle("*", "/api/trade/queryPrepared", [&](const dtx::BranchRequest& r) {
///     sqlite3* own = nullptr;                 // one connection per request (or from a pool)
///     sqlite3_open("trade.db", &own);
///     dtx::SqliteDb db(own);
///     dtx::BranchResult answer = dtx::QueryPrepared(r, db);   // 200 SUCCESS / 409 FAILURE / 500
///     sqlite3_close(own);
///     return answer;
///   });
///   if (!server.Start().ok()) return;
///   dtx::Client client("http://127.0.0.1:36789/api/dtmsvr");
///   dtx::Msg msg(client, "");
///   msg.Add(user_svc + "/user/applyTrade", R"({"amount":30})");
///   dtx::Status s = msg.DoAndSubmit(trade_svc + "/trade/queryPrepared", conn,
///                                   [&](dtx::SqliteTx& tx) {
///     int rc = sqlite3_exec(tx.db, "insert into trade(amount) values (30)", nullptr, nullptr,
///                           nullptr);
///     return rc == SQLITE_OK ? dtx::Status::Ok() : dtx::Status::Internal("insert trade");
///   });
///   if (!s.ok() && msg.local_outcome() == dtx::LocalOutcome::kCommitted) {
///     // the message is not lost: the coordinator's check-back finds the commit
///   }
/// @endcode
///
/// DoAndSubmit follows DTM's DoAndSubmit (client/dtmcli/trans_msg.go) exactly:
///   1. prepare: the coordinator stores the message as `prepared`, with the check-back URL;
///   2. one local transaction (BranchBarrier::ForMsg(gid).Call): the barrier row
///      (msg, gid, 00, msg, 01, reason "msg") and the business code commit together or not at all;
///   3. business ok (committed)      -> submit: the coordinator delivers the actions;
///      business kConflict (FAILURE) -> abort: the message is `failed`, nothing is delivered;
///      any other error (the commit outcome is unknown, DUPLICATED because the check-back already
///      decided, a database error) -> the check-back is run here, on the same database
///      (BranchBarrier::QueryPrepared): FAILURE -> abort; SUCCESS -> submit; no answer -> nothing,
///      the coordinator's own check-back decides later.
/// If this process dies anywhere in between, the coordinator checks back after timeout_to_fail:
/// the check-back insert either finds the committed barrier row (SUCCESS: deliver) or plants a
/// "rollback" row that makes a late local transaction fail with DUPLICATED (FAILURE: drop). While
/// the local transaction is still open the check-back insert waits for it, so the answer is exact,
/// never a guess. docs/messages.md explains the flow.
///
/// Thread-safety: a Msg is a plain builder owned by one thread; the Client it refers to must
/// outlive it. DoAndSubmit blocks on the coordinator and the database (never call it on an Asio I/O
/// thread; ParticipantServer handlers run on worker threads and may). The database adapter must not
/// be used by another thread meanwhile.
///
/// How it fails: nothing throws except the business code's own exceptions (the local transaction is
/// rolled back, the message aborted, then the exception is rethrown). Errors are Status values:
///   - invalid message (no step, empty action URL, empty check-back URL, negative option, gid that
///     does not fit the barrier table) -> kInvalidArgument before anything is sent;
///   - coordinator errors as in client.h (409 -> kConflict: e.g. the gid exists in another state);
///   - DoAndSubmit: the business code's own error when it failed (the message is aborted or left to
///     the check-back), kAlreadyExists "DUPLICATED" when the check-back had already rolled the
///     message back (the business code did not run), or the prepare/submit error. Use
///     local_outcome() to learn whether the local transaction committed: after a commit, a submit
///     error does NOT lose the message (the coordinator's check-back finds the commit).
///
/// Include policy: as client.h. The PostgreSQL overloads of DoAndSubmit need dtx/barrier_pg.h and
/// the library dtx::pg.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dtx/barrier.h"
#include "dtx/business_keys.h"
#include "dtx/client.h"
#include "dtx/export.h"
#include "dtx/participant.h"
#include "dtx/status.h"

namespace dtx {

/// Which request body BuildBody produces (PROTOCOL.md §2.2).
enum class MsgPhase {
  kPrepare,  ///< steps, payloads, query_prepared, options
  kSubmit,   ///< the same, plus custom_data {"delay":N} when a delay is set
  kAbort,    ///< gid, trans_type and options only
};

/// What DoAndSubmit knows about the local transaction when it returns.
enum class LocalOutcome {
  kNotRun,      ///< DoAndSubmit was not called, or failed before the local transaction (prepare)
  kCommitted,   ///< the business code and the barrier row are committed: the message will be
                /// delivered (now, or after the coordinator's check-back if the submit failed)
  kRolledBack,  ///< nothing was committed, and the check-back row says so: never delivered
  kUnknown,     ///< the database could not tell (connection lost after COMMIT was sent, check-back
                /// failed): the coordinator's check-back decides once the database answers again
};
/// The outcome's name ("committed", ...), for logs.
DTX_EXPORT std::string_view LocalOutcomeName(LocalOutcome outcome);

/// Fault-injection points for crash tests (tests/msg_crash_test.cc kills the producer in each).
/// Production code leaves them empty.
struct DTX_EXPORT MsgHooks {
  std::function<void()> after_prepare;  ///< prepared; the local transaction has not begun
  std::function<void()> before_commit;  ///< business ok; the local transaction is still open
  std::function<void()> after_commit;   ///< committed; submit not sent yet
};

/// A transactional message builder; see the file description.
class DTX_EXPORT Msg {
 public:
  /// An empty gid is replaced by client.NewGid() when the message is first sent.
  Msg(Client& client, std::string gid);

  /// The gid (after the first send: the generated one when the constructor was given "").
  const std::string& gid() const { return gid_; }

  /// Appends an action: the coordinator POSTs `payload` to `action_url` (GET when the payload is
  /// empty) with ?gid=&trans_type=msg&branch_id=<01, 02, ...>&op=action until it answers 200.
  /// Every other answer, FAILURE included, is retried: an action must eventually succeed, so make
  /// it idempotent (a barrier, or a message_applied table).
  Msg& Add(std::string action_url, std::string payload);

  /// Options (PROTOCOL.md §1.3). Unset options are not sent and take the server's defaults.
  /// concurrent: deliver all actions at once instead of one after the other.
  Msg& SetConcurrent(bool concurrent = true);
  /// No action is called until `seconds` after the message became `submitted`. Sent at submit as
  /// custom_data {"delay":N} (a two-phase message gets it at its submit, as DTM's SDK sends it).
  Msg& SetDelay(int64_t seconds);
  /// submit runs one delivery round inside the request: ok means every action succeeded.
  Msg& SetWaitResult(bool wait_result);
  /// A message still `prepared` this long after creation is checked back (server default 35 s).
  Msg& SetTimeoutToFail(int64_t seconds);
  Msg& SetRetryInterval(int64_t seconds);   ///< base of the retry backoff of actions
  Msg& SetRequestTimeout(int64_t seconds);  ///< deadline of each action call and of the check-back
  Msg& SetBranchHeaders(std::map<std::string, std::string> headers);  ///< added to every call
  /// Business keys (dtx/business_keys.h), sent with prepare and submit: a two-phase message holds
  /// its place in each key's queue from its prepare; its actions run only once it holds the keys
  /// after the submit (OnBusy::kReject: it fails instead, nothing delivered). Empty: no keys. Keys
  /// outside the limits: kInvalidArgument before anything is sent.
  Msg& SetBusinessKeys(std::vector<std::string> keys, OnBusy on_busy = OnBusy::kWait);
  /// Fault injection (see MsgHooks).
  Msg& SetHooks(MsgHooks hooks);

  /// The exact JSON body sent for `phase` (gid and check-back URL as currently set).
  std::string BuildBody(MsgPhase phase) const;

  /// POST /submit. A plain message is created `submitted`; after Prepare, the prepared message is
  /// submitted (the stored steps are delivered; the steps in the body are ignored by the server).
  Status Submit();
  /// POST /prepare with the steps and the check-back URL: the message is stored `prepared`.
  Status Prepare(std::string query_prepared_url);
  /// POST /abort: a prepared message becomes `failed`; nothing is delivered.
  Status Abort();

  /// The two-phase flow of the header comment. `business` runs inside the local transaction that
  /// also inserts the barrier row; return kConflict for a business refusal (-> abort), another
  /// error for a temporary problem. The database must be the one the check-back endpoint reads,
  /// with the barrier table created (EnsureBarrierTable), and the connection outside any
  /// transaction. The PgDb overload is in dtx::pg (include dtx/barrier_pg.h).
  /// @{
  Status DoAndSubmit(const std::string& query_prepared_url, SqliteDb& db,
                     const std::function<Status(SqliteTx&)>& business);
  Status DoAndSubmit(const std::string& query_prepared_url, PgDb& db,
                     const std::function<Status(PgTx&)>& business);
  /// @}
  /// The same on any adapter (the business code reaches its connection through its captures).
  Status DoAndSubmit(const std::string& query_prepared_url, BarrierDb& db,
                     const std::function<Status()>& business);
  /// Convenience: a default adapter (SqliteBarrierOptions{} / PgBarrierOptions{}) on the caller's
  /// connection (the PGconn overload is in dtx::pg).
  /// @{
  Status DoAndSubmit(const std::string& query_prepared_url, sqlite3* db,
                     const std::function<Status(SqliteTx&)>& business);
  Status DoAndSubmit(const std::string& query_prepared_url, PGconn* conn,
                     const std::function<Status(PgTx&)>& business);
  /// @}

  /// After DoAndSubmit: whether the local transaction committed (see LocalOutcome).
  LocalOutcome local_outcome() const { return local_outcome_; }

 private:
  struct Step {
    std::string action;
    std::string payload;
  };
  Status Validate(bool need_query_prepared) const;
  Status EnsureGid();
  /// Submit after the local commit, tolerating the race with the coordinator's check-back: a 409
  /// while the check-back round holds the message is retried briefly, a 409 because it already
  /// submitted the message is ok (see msg.cc).
  Status SubmitAfterCommit();
  /// Abort after a rollback; a 409 because the check-back already dropped the message is ok.
  Status AbortAfterRollback();

  Client& client_;
  std::string gid_;
  std::vector<Step> steps_;
  std::string query_prepared_;
  bool concurrent_ = false;
  bool wait_result_ = false;
  std::optional<int64_t> delay_s_;
  std::optional<int64_t> timeout_to_fail_s_;
  std::optional<int64_t> retry_interval_s_;
  std::optional<int64_t> request_timeout_s_;
  std::map<std::string, std::string> branch_headers_;
  std::vector<std::string> business_keys_;
  OnBusy on_busy_ = OnBusy::kWait;
  MsgHooks hooks_;
  LocalOutcome local_outcome_ = LocalOutcome::kNotRun;
};

/// The check-back endpoint of a two-phase message's producer (PROTOCOL.md §4.5, DTM's
/// BranchBarrier.QueryPrepared handler): reads gid and trans_type from the request's query string
/// and runs BranchBarrier::QueryPrepared on `db` (outside any transaction). Answers
///   200 {"dtm_result":"SUCCESS"}  the local transaction committed: deliver;
///   409 {"dtm_result":"FAILURE"}  it did not and now never will: drop the message;
///   500 {"message":...}           the database did not answer, or the request carries no msg
///                                 identity: the coordinator asks again later (never commits).
DTX_EXPORT BranchResult QueryPrepared(const BranchRequest& request, BarrierDb& db);

}  // namespace dtx
