/// @file
/// Business keys (docs/saga.md "Business keys", docs/tcc.md): a durable semantic lock on the
/// coordinator. A transaction lists the business objects it changes ("account:42"); while an
/// earlier unfinished transaction holds one of them, a later one waits on the coordinator (or, with
/// OnBusy::kReject, is refused at once), and the keys are released by the write that makes the
/// holder final. Two transactions sharing a key therefore never run their branches at the same
/// time. dtx::Saga, dtx::Msg, dtx::SagaByName (SetBusinessKeys), dtx::TccOptions and
/// dtx::XaOptions (business_keys, on_busy) send them.
///
/// Where the wait happens:
///   - saga and msg: after the submit (it is acknowledged at once; the saga stays `submitted`
///     without any branch call until it holds its keys). wait_result answers once it has run.
///   - tcc and xa: in `prepare`, because their try phase runs in the application. The prepare
///     answers once the transaction holds its keys, or 409 when they stay busy until
///     create_time + min(timeout_to_fail, kMaxPrepareKeyWait). TccGlobalTransaction and
///     XaGlobalTransaction give such a prepare a deadline of that wait + kPrepareKeyWaitSlack
///     (at least ClientOptions::request_timeout), so a client does not give up before the
///     coordinator answers.
///
/// @code
/// #include <dtx/tcc.h>
///   dtx::Client client("http://127.0.0.1:36789/api/dtmsvr");
///   dtx::TccOptions options;
///   options.business_keys = {"account:42", "account:7"};
///   options.on_busy = dtx::OnBusy::kReject;   // default kWait
///   dtx::Status s = dtx::TccGlobalTransaction(client, "", options, [](dtx::Tcc&) {
///     return dtx::Status::Ok();               // the branches (Tcc::CallBranch) go here
///   });
///   if (s.reason() == dtx::kReasonBusinessKeysBusy) { /* another transaction holds a key */ }
/// @endcode
///
/// How it fails: keys outside the coordinator's limits are refused before anything is sent
/// (kInvalidArgument naming the problem, see CheckBusinessKeys). A tcc/xa prepare whose keys are
/// refused (kReject) or stay busy past the wait answers 409: kConflict whose message starts with
/// "business keys busy" or "business keys not acquired" and names the key and its holder;
/// Status::reason() is kReasonBusinessKeysBusy or kReasonBusinessKeysTimeout. The transaction is
/// then `failed` on the coordinator (no branch ran); use a new gid to try again.
///
/// Thread-safety: free functions and constants only. Include policy: as dtx/client.h.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dtx/export.h"
#include "dtx/status.h"

namespace dtx {

/// What a transaction does when one of its keys is busy.
enum class OnBusy : unsigned char {
  kWait,    ///< wait on the coordinator (FIFO per key, all keys or none); the default
  kReject,  ///< fail at once without any branch call (a tcc/xa prepare answers 409)
};

/// The coordinator's limits (src/core/business_keys.h): keys per transaction ...
inline constexpr size_t kMaxBusinessKeys = 16;
/// ... and bytes per key.
inline constexpr size_t kMaxBusinessKeyBytes = 128;
/// The keys are stored in the transaction's custom_data, which stays within this many bytes.
inline constexpr size_t kMaxCustomDataBytes = 1024;
/// A tcc/xa prepare waits for its keys at most this long after the transaction was created (less
/// when its timeout_to_fail is shorter).
inline constexpr std::chrono::milliseconds kMaxPrepareKeyWait{30'000};
/// What the SDK adds to that wait for the prepare's own deadline (network, the coordinator's
/// final write, a cron interval).
inline constexpr std::chrono::milliseconds kPrepareKeyWaitSlack{10'000};

/// Status::reason() of a tcc/xa prepare refused because a key was busy (OnBusy::kReject).
inline constexpr std::string_view kReasonBusinessKeysBusy = "BUSINESS_KEYS_BUSY";
/// Status::reason() of a tcc/xa prepare whose keys stayed busy until its wait ended.
inline constexpr std::string_view kReasonBusinessKeysTimeout = "BUSINESS_KEYS_TIMEOUT";

/// Checks a key list as the coordinator will: empty = no keys (ok); else 1..kMaxBusinessKeys keys
/// of 1..kMaxBusinessKeyBytes bytes of valid UTF-8 without control characters, and
/// {"business_keys":[...],"on_busy":...} (sorted, without duplicates, as the coordinator stores
/// it) within kMaxCustomDataBytes. kInvalidArgument naming the problem.
DTX_EXPORT Status CheckBusinessKeys(const std::vector<std::string>& keys,
                                    OnBusy on_busy = OnBusy::kWait);

/// The deadline TccGlobalTransaction/XaGlobalTransaction give a prepare with keys:
/// min(timeout_to_fail, kMaxPrepareKeyWait) + kPrepareKeyWaitSlack, never below `request_timeout`.
/// `timeout_to_fail_s` <= 0 (unset, or never) counts as kMaxPrepareKeyWait.
DTX_EXPORT std::chrono::milliseconds PrepareKeyWaitDeadline(
    int64_t timeout_to_fail_s, std::chrono::milliseconds request_timeout);

}  // namespace dtx
