/// @file
/// dtx XA: the application side of an XA global transaction (PROTOCOL.md §1.8, the X/Open DTP model
/// of seed 002). The application opens a scope with XaGlobalTransaction; inside it, every
/// CallBranch calls one resource manager (a participant service) with op=action. The participant
/// runs its SQL in a local transaction, registers the branch with the coordinator and leaves the
/// transaction PREPAREd (dtx::PgXaBranch in dtx/xa_pg.h does all of that on PostgreSQL). When the
/// body returns ok the scope submits and the coordinator commits every branch (COMMIT PREPARED);
/// when the body fails or throws, the scope aborts and the coordinator rolls every branch back.
///
/// @code
///   const std::string bank_a = "http://127.0.0.1:8081/api", bank_b = "http://127.0.0.1:8082/api";
///   dtx::Client client("http://127.0.0.1:36789/api/dtmsvr");
///   dtx::XaOptions options;
///   options.wait_result = true;
///   dtx::Status s = dtx::XaGlobalTransaction(client, "", options, [&](dtx::Xa& xa) {
///     auto r = xa.CallBranch(R"({"amount":30})", bank_a + "/xa/debit");
///     if (!r.ok()) return r.status();                     // -> abort: every branch rolls back
///     return xa.CallBranch(R"({"amount":30})", bank_b + "/xa/credit").status();   // ok -> commit
///   });
/// @endcode
///
/// XA versus TCC: between its action and the coordinator's commit, an XA branch is a prepared
/// database transaction that holds its row locks (other writers of those rows wait), and it needs
/// `max_prepared_transactions` > 0 on the PostgreSQL server. It needs no business compensation code
/// and reads are isolated; TCC holds no database locks across the phases but needs try/confirm/
/// cancel logic per resource. docs/xa.md compares them.
///
/// Thread-safety: XaGlobalTransaction blocks the calling thread (never an Asio I/O thread). An Xa
/// may be used from several threads; branch ids are taken one at a time. The Client must outlive
/// the scope. How it fails: as dtx/tcc.h — an action answering 409 or FAILURE -> kConflict, 425 ->
/// kOngoing, another status -> kInternal, no answer in time -> kTimeout, network -> kUnavailable;
/// the scope then aborts and returns that error. Include policy: as dtx/client.h.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dtx/business_keys.h"
#include "dtx/client.h"
#include "dtx/export.h"
#include "dtx/status.h"

namespace dtx {

/// Options of one XA transaction (PROTOCOL.md §1.3); unset options take the server's defaults.
struct DTX_EXPORT XaOptions {
  /// submit and abort wait for the commit/rollback round: ok only once every branch committed.
  bool wait_result = false;
  /// Seconds after creation at which a transaction still `prepared` is rolled back (server: 35).
  std::optional<int64_t> timeout_to_fail_s;
  /// Base of the coordinator's retry backoff for commits and rollbacks (server: 10).
  std::optional<int64_t> retry_interval_s;
  /// Deadline of each commit/rollback call the coordinator makes (server: 3).
  std::optional<int64_t> request_timeout_s;
  /// Headers added to every action call (by this SDK) and every phase-2 call (by the coordinator).
  std::map<std::string, std::string> branch_headers;
  /// Deadline of each action call. 0 = request_timeout_s when set, else 3 s.
  std::chrono::milliseconds action_timeout{0};
  /// Business keys (dtx/business_keys.h): the prepare waits on the coordinator until this
  /// transaction holds every one of them (FIFO per key), so two xas sharing a key never overlap
  /// from their first branch call to their final confirm/commit or cancel/rollback. The prepare's
  /// deadline is then PrepareKeyWaitDeadline(timeout_to_fail_s, the client's request_timeout).
  /// Refused (on_busy kReject) or still busy when the wait ends: XaGlobalTransaction returns
  /// kConflict with reason kReasonBusinessKeysBusy / kReasonBusinessKeysTimeout and the body never
  /// runs. Empty: no keys. Outside the limits: kInvalidArgument before anything is sent.
  std::vector<std::string> business_keys{};
  /// What a busy key does: wait (default) or reject at once.
  OnBusy on_busy = OnBusy::kWait;
};

/// The scope of one XA global transaction, handed to the body of XaGlobalTransaction.
class DTX_EXPORT Xa {
 public:
  /// Movable, not copyable.
  /// @{
  Xa(Xa&&) noexcept;
  Xa& operator=(Xa&&) noexcept;
  /// @}
  ~Xa();

  /// The global transaction id.
  const std::string& gid() const;
  /// The coordinator API prefix (the `dtm` query parameter sent with every action).
  const std::string& server_url() const;

  /// Takes the next branch id ("01", "02", ...) and POSTs `payload` to `url` with
  /// ?branch_id=&dtm=&gid=&op=action&phase2_url=\<url\>&trans_type=xa. The participant registers
  /// the branch itself (with phase2_url, where the coordinator later sends op=commit or
  /// op=rollback). Returns the action's answer body on 200.
  Result<std::string> CallBranch(std::string_view payload, std::string_view url);

  /// The first CallBranch error, if any.
  std::optional<Status> first_error() const;

 private:
  friend Status XaGlobalTransaction(Client&, std::string, XaOptions,
                                    const std::function<Status(Xa&)>&);
  Xa(std::string server_url, std::string gid, XaOptions options);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Runs one XA global transaction: prepare, body, then submit (body ok and every CallBranch ok) or
/// abort (rollback_reason = the error text). An empty gid is replaced by client.NewGid().
DTX_EXPORT Status XaGlobalTransaction(Client& client, std::string gid, XaOptions options,
                                      const std::function<Status(Xa&)>& body);

/// The wire pieces, exposed for tests: which §2.2 body BuildXaTransBody produces.
enum class XaPhase { kPrepare, kSubmit, kAbort };
/// The §2.2 body of prepare / submit / abort (abort: with the rollback reason when non-empty).
DTX_EXPORT std::string BuildXaTransBody(XaPhase phase, const std::string& gid,
                                        const XaOptions& options,
                                        const std::string& rollback_reason = {});
/// url + the identity parameters of §1.8 (sorted by name, as DTM's SDK sends them).
DTX_EXPORT std::string BuildXaActionUrl(std::string_view url, const std::string& server_url,
                                        const std::string& gid, const std::string& branch_id);

}  // namespace dtx
