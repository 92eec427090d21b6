/// @file
/// dtx::Saga: builds and submits a saga (PROTOCOL.md §1.6, §2.2). Steps are (action URL, compensate
/// URL, payload); the coordinator runs the actions in order (or as a DAG when concurrent) and, if
/// one answers FAILURE, compensates the steps that may have run, in reverse order.
///
/// @code
///   const std::string svc = "http://127.0.0.1:8081/api";   // the participants' base URL
///   dtx::Client client("http://127.0.0.1:36789/api/dtmsvr");
///   dtx::Saga saga(client, "order-42");                      // "" = a fresh gid from the server
///   saga.Add(svc + "/pay", svc + "/pay/compensate", R"({"amount":30})")
///       .Add(svc + "/reserve", svc + "/reserve/compensate", R"({"qty":2})");
///   dtx::Status s = saga.Submit();                           // ok: the coordinator owns it now
///   if (s.ok()) s = client.WaitFinal(saga.gid(), std::chrono::seconds(30)).status();
/// @endcode
///
/// Thread-safety: a Saga is a plain builder owned by one thread. The Client it refers to must
/// outlive it (the Client itself is thread-safe).
///
/// How it fails: Submit returns the Client's Status (see client.h); a saga whose DAG refers to a
/// step that does not exist, or without any step, fails with kInvalidArgument before anything is
/// sent. Include policy: see client.h.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dtx/business_keys.h"
#include "dtx/client.h"
#include "dtx/export.h"
#include "dtx/status.h"

namespace dtx {

/// A saga builder; see the file description.
class DTX_EXPORT Saga {
 public:
  /// An empty gid is replaced by Client::NewGid() at Submit.
  Saga(Client& client, std::string gid);

  /// The gid (after Submit: the generated one when the constructor was given "").
  const std::string& gid() const { return gid_; }

  /// Appends a step. `payload` is the request body of both the action and the compensation
  /// (normally JSON). An empty compensate URL means "nothing to undo" (the coordinator treats it as
  /// succeeded).
  Saga& Add(std::string action_url, std::string compensate_url, std::string payload);

  /// Concurrent mode: actions run in parallel, constrained by AddBranchOrder. Without any order,
  /// all actions start at once.
  Saga& EnableConcurrent();
  /// Step `step` (0-based, in Add order) starts only after every step in `prerequisite_steps`
  /// succeeded; compensations run in the reverse order. Implies EnableConcurrent(). Sent as
  /// custom_data
  /// {"concurrent":true,"orders":{"\<step\>":[...]}}.
  Saga& AddBranchOrder(int step, std::vector<int> prerequisite_steps);

  /// Options (PROTOCOL.md §1.3). Unset options are not sent and take the server defaults.
  /// wait_result: Submit returns only after one processing round: ok means the saga succeeded; a
  /// kConflict means it failed or is still running (query to know which).
  Saga& SetWaitResult(bool wait_result);
  Saga& SetTimeoutToFail(int64_t seconds);   ///< give up (roll back) this long after creation
  Saga& SetRetryInterval(int64_t seconds);   ///< base of the retry backoff
  Saga& SetRequestTimeout(int64_t seconds);  ///< deadline of each branch call
  Saga& SetRetryLimit(int64_t limit);  ///< immediate re-invocations of failing actions, then abort
  Saga& SetBranchHeaders(
      std::map<std::string, std::string> headers);  ///< added to every branch call
  /// Business keys (dtx/business_keys.h): while an earlier unfinished transaction holds one of
  /// `keys`, this saga waits on the coordinator after its submit (no branch is called), or with
  /// OnBusy::kReject fails at once (a submit with wait_result then answers kConflict). Empty: no
  /// keys. Keys outside the limits make Submit fail with kInvalidArgument before sending.
  Saga& SetBusinessKeys(std::vector<std::string> keys, OnBusy on_busy = OnBusy::kWait);

  /// The exact JSON body that Submit sends (gid as currently set).
  std::string BuildBody() const;

  /// Checks the saga, fetches a gid if none was given, and POSTs /submit.
  Status Submit();

 private:
  struct Step {
    std::string action;
    std::string compensate;
    std::string payload;
  };
  Status Validate() const;

  Client& client_;
  std::string gid_;
  std::vector<Step> steps_;
  bool concurrent_ = false;
  std::map<int, std::vector<int>> orders_;
  bool wait_result_ = false;
  std::optional<int64_t> timeout_to_fail_s_;
  std::optional<int64_t> retry_interval_s_;
  std::optional<int64_t> request_timeout_s_;
  std::optional<int64_t> retry_limit_;
  std::map<std::string, std::string> branch_headers_;
  std::vector<std::string> business_keys_;
  OnBusy on_busy_ = OnBusy::kWait;
};

}  // namespace dtx
