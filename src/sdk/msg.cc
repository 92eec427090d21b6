// The transactional message (include/dtx/msg.h, PROTOCOL.md §1.9 and §4.5).
#include "dtx/msg.h"

#include <boost/json.hpp>
#include <chrono>
#include <exception>
#include <thread>
#include <utility>

#include "sdk/business_keys_internal.h"

namespace dtx {

namespace json = boost::json;

namespace {
// Submits after the local commit, while the coordinator's check-back round may hold the message
// (100 ms, then doubling: about 3 s in all).
constexpr int kSubmitAttempts = 5;
}  // namespace

std::string_view LocalOutcomeName(LocalOutcome outcome) {
  switch (outcome) {
    case LocalOutcome::kNotRun:
      return "not run";
    case LocalOutcome::kCommitted:
      return "committed";
    case LocalOutcome::kRolledBack:
      return "rolled back";
    case LocalOutcome::kUnknown:
      return "unknown";
  }
  return "?";
}

Msg::Msg(Client& client, std::string gid) : client_(client), gid_(std::move(gid)) {}

Msg& Msg::Add(std::string action_url, std::string payload) {
  steps_.push_back({std::move(action_url), std::move(payload)});
  return *this;
}
Msg& Msg::SetConcurrent(bool concurrent) {
  concurrent_ = concurrent;
  return *this;
}
Msg& Msg::SetDelay(int64_t seconds) {
  delay_s_ = seconds;
  return *this;
}
Msg& Msg::SetWaitResult(bool wait_result) {
  wait_result_ = wait_result;
  return *this;
}
Msg& Msg::SetTimeoutToFail(int64_t seconds) {
  timeout_to_fail_s_ = seconds;
  return *this;
}
Msg& Msg::SetRetryInterval(int64_t seconds) {
  retry_interval_s_ = seconds;
  return *this;
}
Msg& Msg::SetRequestTimeout(int64_t seconds) {
  request_timeout_s_ = seconds;
  return *this;
}
Msg& Msg::SetBranchHeaders(std::map<std::string, std::string> headers) {
  branch_headers_ = std::move(headers);
  return *this;
}
Msg& Msg::SetBusinessKeys(std::vector<std::string> keys, OnBusy on_busy) {
  business_keys_ = std::move(keys);
  on_busy_ = on_busy;
  return *this;
}
Msg& Msg::SetHooks(MsgHooks hooks) {
  hooks_ = std::move(hooks);
  return *this;
}

std::string Msg::BuildBody(MsgPhase phase) const {
  // The keys dtmcli's Msg sends (PROTOCOL.md §2.2); the server does not depend on their order.
  json::object body;
  body["gid"] = gid_;
  body["trans_type"] = "msg";
  if (phase != MsgPhase::kAbort) {
    json::array steps;
    json::array payloads;
    for (const Step& s : steps_) {
      steps.push_back(json::object{{"action", s.action}});
      payloads.push_back(json::string(s.payload));
    }
    body["steps"] = std::move(steps);
    body["payloads"] = std::move(payloads);
    if (!query_prepared_.empty()) body["query_prepared"] = query_prepared_;
    // custom_data is a JSON *string* (§1.3). DTM's SDK fills it only at submit, and the server
    // lets a two-phase submit replace the stored one (§1.9).
    if (phase == MsgPhase::kSubmit && delay_s_) {
      body["custom_data"] = json::serialize(json::object{{"delay", *delay_s_}});
    }
    // A dtx extension. The submit of a prepared msg may repeat them (the same keys are accepted;
    // the coordinator keeps the ones stored at prepare).
    sdk_internal::AddBusinessKeys(body, business_keys_, on_busy_);
  }
  if (concurrent_) body["concurrent"] = true;
  if (wait_result_) body["wait_result"] = true;
  if (timeout_to_fail_s_) body["timeout_to_fail"] = *timeout_to_fail_s_;
  if (request_timeout_s_) body["request_timeout"] = *request_timeout_s_;
  if (retry_interval_s_) body["retry_interval"] = *retry_interval_s_;
  if (!branch_headers_.empty()) {
    json::object headers;
    for (const auto& [k, v] : branch_headers_) headers[k] = v;
    body["branch_headers"] = std::move(headers);
  }
  return json::serialize(body);
}

Status Msg::Validate(bool need_query_prepared) const {
  if (steps_.empty()) return Status::InvalidArgument("msg: no action added");
  for (const Step& s : steps_) {
    if (s.action.empty()) return Status::InvalidArgument("msg: an action has an empty URL");
  }
  if (need_query_prepared && query_prepared_.empty()) {
    return Status::InvalidArgument("msg: empty check-back (query_prepared) URL");
  }
  for (const auto& [name, v] :
       {std::pair{"delay", delay_s_}, std::pair{"timeout_to_fail", timeout_to_fail_s_},
        std::pair{"request_timeout", request_timeout_s_},
        std::pair{"retry_interval", retry_interval_s_}}) {
    if (v && *v < 0) return Status::InvalidArgument(std::string("msg: negative ") + name);
  }
  const json::object custom_data = delay_s_ ? json::object{{"delay", *delay_s_}} : json::object();
  if (Status s = sdk_internal::CheckBusinessKeysWith(business_keys_, on_busy_, custom_data);
      !s.ok()) {
    return Status::InvalidArgument("msg: " + s.message());
  }
  return Status::Ok();
}

Status Msg::EnsureGid() {
  if (!gid_.empty()) return Status::Ok();
  auto gid = client_.NewGid();
  if (!gid.ok()) return gid.status();
  gid_ = std::move(*gid);
  return Status::Ok();
}

Status Msg::Submit() {
  if (Status s = Validate(false); !s.ok()) return s;
  if (Status s = EnsureGid(); !s.ok()) return s;
  return sdk_internal::SubmitMaybeWaiting(client_, BuildBody(MsgPhase::kSubmit),
                                          wait_result_ && !business_keys_.empty());
}

Status Msg::Prepare(std::string query_prepared_url) {
  query_prepared_ = std::move(query_prepared_url);
  if (Status s = Validate(true); !s.ok()) return s;
  if (Status s = EnsureGid(); !s.ok()) return s;
  return client_.Prepare(BuildBody(MsgPhase::kPrepare));
}

Status Msg::Abort() {
  if (gid_.empty()) return Status::InvalidArgument("msg: abort without a gid");
  return client_.Abort(BuildBody(MsgPhase::kAbort));
}

Status Msg::SubmitAfterCommit() {
  // The local transaction is committed, so the message can only end up delivered. A 409 comes from
  // a race with the coordinator's own check-back (the local transaction outlasted timeout_to_fail):
  //   - the check-back already submitted it (the message is `submitted` or `succeed`): done;
  //   - the check-back round is still running (the message is still `prepared`; it waited for our
  //     commit and is about to answer SUCCESS): ask again shortly.
  // With wait_result a 409 also means "an action did not succeed in this round", which is kept.
  Status s;
  std::chrono::milliseconds pause{100};
  for (int attempt = 0; attempt < kSubmitAttempts; ++attempt) {
    s = Submit();
    if (s.code() != Code::kConflict) return s;
    auto info = client_.Query(gid_);
    if (!info.ok()) return s;
    if (info->status == "succeed" || (info->status == "submitted" && !wait_result_)) {
      return Status::Ok();
    }
    if (info->status != "prepared") return s;
    std::this_thread::sleep_for(pause);
    pause *= 2;
  }
  return s;
}

Status Msg::AbortAfterRollback() {
  Status a = Abort();
  if (a.code() != Code::kConflict) return a;
  // The coordinator's check-back may have dropped the message already: that is what we wanted.
  auto info = client_.Query(gid_);
  if (info.ok() && info->status == "failed") return Status::Ok();
  return a;
}

Status Msg::DoAndSubmit(const std::string& query_prepared_url, BarrierDb& db,
                        const std::function<Status()>& business) {
  DTX_ASSERT(business != nullptr);
  local_outcome_ = LocalOutcome::kNotRun;
  query_prepared_ = query_prepared_url;
  if (Status s = Validate(true); !s.ok()) return s;
  if (Status s = EnsureGid(); !s.ok()) return s;
  // The barrier validates the gid against its column before anything is sent.
  auto barrier = BranchBarrier::ForMsg(gid_);
  if (!barrier.ok()) return Status::InvalidArgument("msg: " + barrier.status().message());
  if (Status s = Prepare(query_prepared_url); !s.ok()) return s;
  if (hooks_.after_prepare) hooks_.after_prepare();

  // The local transaction: barrier row (msg, gid, 00, msg, 01, reason msg) + business code.
  auto run_business = [&]() -> Status {
    Status s = business();
    if (s.ok() && hooks_.before_commit) hooks_.before_commit();
    return s;
  };
  // The decision for an error that is not a business FAILURE: ask the database itself, exactly as
  // the coordinator's check-back would (and with the same effect: a "rollback" row fences any
  // later local transaction of this gid).
  auto resolve = [&](const Status& errb) -> Status {
    Status checked = barrier->QueryPrepared(db);
    if (checked.ok()) {
      // Committed after all (e.g. the COMMIT went through but its answer was lost), or a retry of
      // a gid whose local transaction had committed before: deliver.
      local_outcome_ = LocalOutcome::kCommitted;
      if (hooks_.after_commit) hooks_.after_commit();
      return SubmitAfterCommit();
    }
    if (checked.code() == Code::kConflict) {
      local_outcome_ = LocalOutcome::kRolledBack;
      if (Status a = AbortAfterRollback(); !a.ok()) {
        return Status(errb.code(), errb.message() + " (abort failed: " + a.ToString() +
                                       "; the coordinator's check-back drops the message)");
      }
      return errb;
    }
    local_outcome_ = LocalOutcome::kUnknown;
    return Status(errb.code(), errb.message() +
                                   " (the check-back could not tell whether the local "
                                   "transaction committed: " +
                                   checked.ToString() + "; the coordinator decides later)");
  };

  Status errb;
  try {
    errb = barrier->Call(db, run_business);
  } catch (...) {
    // Call rolled the local transaction back; settle the message before the exception leaves.
    std::exception_ptr e = std::current_exception();
    (void)resolve(Status::Internal("msg: the business code threw"));
    std::rethrow_exception(e);
  }
  if (errb.ok()) {
    local_outcome_ = LocalOutcome::kCommitted;
    if (hooks_.after_commit) hooks_.after_commit();
    return SubmitAfterCommit();
  }
  if (errb.code() == Code::kConflict) {
    // A business FAILURE: the transaction rolled back, so the message must not be delivered.
    local_outcome_ = LocalOutcome::kRolledBack;
    if (Status a = AbortAfterRollback(); !a.ok()) {
      return Status(errb.code(), errb.message() + " (abort failed: " + a.ToString() +
                                     "; the coordinator's check-back drops the message)");
    }
    return errb;
  }
  // Commit outcome unknown, DUPLICATED, a database error: check back ourselves (§1.9).
  return resolve(errb);
}

Status Msg::DoAndSubmit(const std::string& query_prepared_url, SqliteDb& db,
                        const std::function<Status(SqliteTx&)>& business) {
  DTX_ASSERT(business != nullptr);
  SqliteTx tx{db.handle()};
  return DoAndSubmit(query_prepared_url, static_cast<BarrierDb&>(db),
                     [&]() { return business(tx); });
}

Status Msg::DoAndSubmit(const std::string& query_prepared_url, sqlite3* db,
                        const std::function<Status(SqliteTx&)>& business) {
  SqliteDb adapter(db);
  return DoAndSubmit(query_prepared_url, adapter, business);
}

BranchResult QueryPrepared(const BranchRequest& request, BarrierDb& db) {
  auto barrier = BranchBarrier::FromRequest(request);
  if (!barrier.ok()) {
    return BranchResult::Error(
        "check-back without a msg identity (gid, trans_type, branch_id, op "
        "in the query): " +
        barrier.status().message());
  }
  return BarrierBranchResult(barrier->QueryPrepared(db));
}

}  // namespace dtx
