/// @file
/// dtx TCC: the application side of a TCC global transaction (PROTOCOL.md §1.7). The application
/// opens a scope with TccGlobalTransaction; inside it, every CallBranch registers one branch (its
/// confirm and cancel URLs) with the coordinator and then calls that branch's Try itself. When the
/// body returns ok, the scope submits and the coordinator confirms every branch (in reverse
/// registration order); when the body returns an error or throws, the scope aborts and the
/// coordinator cancels every registered branch, including the one whose Try failed.
///
/// @code
///   const std::string member = "http://127.0.0.1:8081/api/member";
///   const std::string merchant = "http://127.0.0.1:8082/api/merchant";
///   const std::string payload = R"({"order":"42","amount":30})";
///   dtx::Client client("http://127.0.0.1:36789/api/dtmsvr");
///   dtx::TccOptions options;
///   options.wait_result = true;
///   dtx::Status s = dtx::TccGlobalTransaction(client, "", options, [&](dtx::Tcc& tcc) {
///     auto r = tcc.CallBranch(payload, member + "/try", member + "/confirm", member + "/cancel");
///     if (!r.ok()) return r.status();                      // -> abort, the reason is r's message
///     r = tcc.CallBranch(payload, merchant + "/try", merchant + "/confirm", merchant + "/cancel");
///     return r.status();                                   // ok -> submit
///   });
/// @endcode
///
/// Participants write the three handlers with dtx::ParticipantServer and protect each with
/// dtx::BranchBarrier (include/dtx/barrier.h); docs/tcc.md walks through a complete example. A
/// participant whose Try starts a nested TCC uses Tcc::FromRequest: its branches get ids prefixed
/// with its own branch id ("02" -> "0201", "0202", ...).
///
/// Thread-safety: TccGlobalTransaction blocks the calling thread (never call it from an Asio I/O
/// thread; ParticipantServer handlers run on worker threads and may). A Tcc may be used from
/// several threads: branch ids are taken and branches registered one at a time (in the order the
/// ids were taken), Tries of different branches may run in parallel. The Client must outlive the
/// scope.
///
/// How it fails: nothing throws except the body's own exceptions, which are rethrown after the
/// abort. Errors are Status values (dtx/status.h):
///   - prepare fails -> that status (the coordinator's 409 means the gid exists in another state);
///   - CallBranch: registration refused -> kConflict (the global is no longer `prepared`, e.g. it
///     timed out); a Try answering 409 or a body with "FAILURE" -> kConflict; 425 or "ONGOING" ->
///     kOngoing; 503 -> kUnavailable; another status -> kInternal; no answer within the deadline ->
///     kTimeout; connection failures -> kUnavailable. A Try that failed may still have taken effect
///     (a timeout, a 500 after commit): its branch is registered, so the abort cancels it;
///   - body returns an error -> abort, and the body's error is returned (an abort that fails is
///     appended to the message; the coordinator then cancels after timeout_to_fail anyway);
///   - body returns ok although one of its CallBranch calls failed -> abort as well, returning that
///     CallBranch error: confirming a branch whose Try failed would break the resource accounting;
///   - submit fails (with wait_result: a confirm that did not succeed yet -> kOngoing / kConflict /
///     kInternal) -> that status. Confirms are retried by the coordinator until they succeed, so
///     query the transaction after any error.
///
/// Include policy: as client.h.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dtx/business_keys.h"
#include "dtx/client.h"
#include "dtx/export.h"
#include "dtx/participant.h"
#include "dtx/status.h"

namespace dtx {

/// Options of one TCC transaction (PROTOCOL.md §1.3). The coordinator stores them at prepare; they
/// govern the confirm/cancel rounds. Unset options are not sent and take the server's defaults.
struct DTX_EXPORT TccOptions {
  /// submit and abort run one processing round inside the request: TccGlobalTransaction returns ok
  /// only after every confirm succeeded (without it: once the coordinator stored `submitted`).
  bool wait_result = false;
  /// Seconds after creation at which a transaction still `prepared` (the application died or hangs
  /// inside the body) is aborted by the coordinator. Server default: 35 s.
  std::optional<int64_t> timeout_to_fail_s;
  /// Base of the coordinator's retry backoff for confirms and cancels. Server default: 10 s.
  std::optional<int64_t> retry_interval_s;
  /// Deadline of each confirm/cancel call the coordinator makes. Server default: 3 s.
  std::optional<int64_t> request_timeout_s;
  /// Headers added to every Try call (by this SDK) and every confirm/cancel call (by the
  /// coordinator), typically an auth token.
  std::map<std::string, std::string> branch_headers;
  /// Deadline of each Try call made by CallBranch. 0 = request_timeout_s when set, else 3 s. A Try
  /// that does not answer in time is an error (kTimeout); the abort then cancels it.
  std::chrono::milliseconds try_timeout{0};
  /// Deadline of each registerBranch call to the coordinator.
  std::chrono::milliseconds register_timeout{10'000};
  /// Business keys (dtx/business_keys.h): the prepare waits on the coordinator until this
  /// transaction holds every one of them (FIFO per key), so two tccs sharing a key never overlap
  /// from their first branch call to their final confirm/commit or cancel/rollback. The prepare's
  /// deadline is then PrepareKeyWaitDeadline(timeout_to_fail_s, the client's request_timeout).
  /// Refused (on_busy kReject) or still busy when the wait ends: TccGlobalTransaction returns
  /// kConflict with reason kReasonBusinessKeysBusy / kReasonBusinessKeysTimeout and the body never
  /// runs. Empty: no keys. Outside the limits: kInvalidArgument before anything is sent.
  std::vector<std::string> business_keys{};
  /// What a busy key does: wait (default) or reject at once.
  OnBusy on_busy = OnBusy::kWait;
};

/// Branch ids of a TCC (PROTOCOL.md §1.7 item 6, DTM's BranchIDGen): two digits per level, "01" ...
/// "99", appended to the parent's id for nested TCC ("02" -> "0201"). Not thread-safe.
class DTX_EXPORT BranchIdGenerator {
 public:
  /// Ids below `parent_branch_id` ("" for a top-level TCC).
  explicit BranchIdGenerator(std::string parent_branch_id = {})
      : parent_(std::move(parent_branch_id)) {}
  /// The next id. kInvalidArgument after 99 ids, or when the parent id is 20 characters or longer
  /// (DTM's limits).
  Result<std::string> Next();
  /// The parent id given to the constructor.
  const std::string& parent() const { return parent_; }
  /// How many ids Next has issued.
  int issued() const { return issued_; }

 private:
  std::string parent_;
  int issued_ = 0;
};

/// The scope of one TCC global transaction, handed to the body of TccGlobalTransaction.
class DTX_EXPORT Tcc {
 public:
  /// A nested TCC for a participant's Try handler (DTM's TccFromQuery): coordinator from the `dtm`
  /// query parameter, gid and parent branch id from the request. kInvalidArgument when `dtm` or the
  /// gid is missing, or the request is not a tcc call. The coordinator URL comes from the request,
  /// so only accept such calls from applications you trust.
  static Result<Tcc> FromRequest(const BranchRequest& request, TccOptions options = {});

  /// Movable, not copyable.
  /// @{
  Tcc(Tcc&&) noexcept;
  Tcc& operator=(Tcc&&) noexcept;
  /// @}
  ~Tcc();

  /// The global transaction id.
  const std::string& gid() const;
  /// The coordinator API prefix (the `dtm` query parameter sent with every Try).
  const std::string& server_url() const;
  /// The options the scope was opened with.
  const TccOptions& options() const;

  /// Takes the next branch id, registers the branch (POST registerBranch {"gid","trans_type":"tcc",
  /// "branch_id","data":payload,"confirm","cancel"}), then POSTs `payload` to `try_url` with
  /// ?branch_id=&dtm=&gid=&op=try&trans_type=tcc (merged into any query try_url has) and the
  /// branch headers. Returns the Try's answer body on 200 (see the header comment for errors).
  /// The coordinator later sends the same payload to confirm_url or cancel_url (an empty URL means
  /// "nothing to do").
  Result<std::string> CallBranch(std::string_view payload, std::string_view try_url,
                                 std::string_view confirm_url, std::string_view cancel_url);

  /// Ids registered so far, in registration order.
  std::vector<std::string> branch_ids() const;
  /// The first CallBranch error (after a successful registration), if any.
  std::optional<Status> first_try_error() const;

 private:
  friend Status TccGlobalTransaction(Client&, std::string, TccOptions,
                                     const std::function<Status(Tcc&)>&);
  Tcc(std::string server_url, std::string gid, std::string parent_branch_id, TccOptions options);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Runs one TCC global transaction: prepare, body, then submit (body ok) or abort (body error or
/// exception, rollback_reason = the error text, at most 1000 bytes). An empty gid is replaced by
/// client.NewGid(). Returns the outcome as described in the header comment.
DTX_EXPORT Status TccGlobalTransaction(Client& client, std::string gid, TccOptions options,
                                       const std::function<Status(Tcc&)>& body);

// ---------------------------------------------------------------------------------------------------
// The wire pieces, exposed for tests and tools.

/// Which §2.2 body BuildTccTransBody produces.
enum class TccPhase { kPrepare, kSubmit, kAbort };
/// The §2.2 body of prepare / submit / abort: gid, trans_type "tcc", the set options, and for abort
/// the rollback reason (when non-empty).
DTX_EXPORT std::string BuildTccTransBody(TccPhase phase, const std::string& gid,
                                         const TccOptions& options,
                                         const std::string& rollback_reason = {});
/// The strings-only registerBranch body of §2.3.
DTX_EXPORT std::string BuildTccRegisterBody(const std::string& gid, const std::string& branch_id,
                                            std::string_view payload, std::string_view confirm_url,
                                            std::string_view cancel_url);
/// try_url with the identity parameters of §3.2 appended (sorted by name, as DTM's SDK sends them).
DTX_EXPORT std::string BuildTccTryUrl(std::string_view try_url, const std::string& server_url,
                                      const std::string& gid, const std::string& branch_id);
/// A Try answer classified as PROTOCOL.md §3.3 does: ok for a plain 200, else the error above.
DTX_EXPORT Status ClassifyTryAnswer(int http_status, const std::string& body,
                                    std::string_view what);
/// `reason` cut to at most `max_bytes` on a UTF-8 character boundary (the coordinator refuses a
/// rollback_reason longer than 1024 bytes).
DTX_EXPORT std::string TruncateUtf8(std::string_view reason, size_t max_bytes);

}  // namespace dtx
