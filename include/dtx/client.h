/// @file
/// dtx::Client: a blocking client of the coordinator's HTTP API (PROTOCOL.md §2), for application
/// code that starts global transactions and reads their status. One Client keeps one keep-alive
/// connection to the coordinator and reuses it; a broken or long-idle connection is replaced
/// transparently.
///
/// Thread-safety: every method may be called from any thread; calls on one Client are serialized by
/// an internal mutex (one request in flight per Client). Use several Clients for parallel calls. Do
/// not call it from an Asio I/O thread: it blocks for up to `request_timeout`.
///
/// How it fails: every method returns a Status/Result, never throws. Answers map as in PROTOCOL.md
/// §2.1:
///   200 with the expected body -> ok        409 -> kConflict (the server's message)
///   425 -> kOngoing                         400 -> kInvalidArgument     404 -> kNotFound
///   413 -> kTooLarge                        503 -> kUnavailable         other -> kInternal
///   401 (a coordinator started with --api-token, no or a wrong token) and 403 -> kInvalidArgument
///   (the request as configured is refused; not retryable until the options change) whose message
///   starts with "HTTP 401 (unauthenticated" / "HTTP 403 (forbidden)"; Status::reason() is the
///   server's error code ("UNAUTHENTICATED") and info()->Fact("http_status") the status. Another
///   status's Status (kInternal) carries the same two.
///   connection refused/reset, DNS failure, a TLS handshake or certificate that fails
///   ("certificate verify failed") -> kUnavailable;  the deadline passed -> kTimeout;
///   bad ClientOptions (a reserved or malformed extra header, an unreadable ca_file) ->
///   kInvalidArgument on every call.
/// A 409 to a saga submit with wait_result does not prove the saga failed (§1.5): call Query or
/// WaitFinal after any error.
///
/// Include policy: every header of include/dtx/ includes only the standard library and other
/// dtx/ headers (Status and Result are in dtx/status.h); no Boost, SQLite or libpq header. Link
/// with dtx::dtx (CMake) or `pkg-config --libs dtx`.
///
/// @code
///   dtx::ClientOptions options{.request_timeout = std::chrono::seconds(5)};
///   // A coordinator with --tls-cert and --api-token (docs/security.md):
///   // options.ca_file = "/etc/dtx/ca.pem";
///   // options.extra_headers = {{"Authorization", "Bearer " + token}};
///   dtx::Client client("http://127.0.0.1:36789/api/dtmsvr", options);

///   dtx::Result<dtx::TransactionInfo> t = client.WaitFinal("order-42", std::chrono::seconds(30));
///   if (t.ok() && t->status == "succeed") { /* every branch committed */ }
///   if (!t.ok() && t.status().code() == dtx::Code::kNotFound) { /* no such gid */ }
/// @endcode
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dtx/export.h"
#include "dtx/status.h"

namespace dtx {

struct ClientInternals;  // the SDK's own access to a Client's connection (not a public API)

/// Settings of a Client (the defaults suit a coordinator on the same network).
struct DTX_EXPORT ClientOptions {
  /// Deadline of one HTTP exchange (connect, write, read). A submit with wait_result runs one saga
  /// round inside the request (up to the transaction's request_timeout + 2 s), so keep this above
  /// that.
  std::chrono::milliseconds request_timeout{10'000};
  /// Larger answers fail with kTooLarge (a query of a transaction with many big payloads).
  size_t max_response_bytes = 16 * 1024 * 1024;
  /// A kept-alive connection idle longer than this is closed and reopened before the next request,
  /// so that it is not reused just as the server times it out (dtx server: 60 s idle timeout).
  std::chrono::milliseconds max_idle{30'000};
  // Every member has a default initializer (`{}` below too), so a designated initializer that
  // leaves members out compiles cleanly under -Wextra (-Wmissing-field-initializers).
  /// Headers sent with every request to the coordinator (and only to it: never to participants),
  /// e.g. `{{"Authorization", "Bearer " + token}}` for a coordinator started with `--api-token`.
  /// A name must be an HTTP token and may not be Host or a hop-by-hop/framing header (Connection,
  /// Keep-Alive, Proxy-Connection, Transfer-Encoding, TE, Trailer, Upgrade, Content-Length,
  /// Expect, Proxy-Authorization, Proxy-Authenticate); a value may not contain CR, LF or another
  /// control character except tab. A header that breaks these rules makes every call fail with
  /// kInvalidArgument naming it (the request is never sent). At most 64 headers of 8 KiB each.
  std::vector<std::pair<std::string, std::string>> extra_headers{};
  /// For an `https://` coordinator: a PEM file of CA certificates trusted in addition to the
  /// system's trust store (a coordinator whose certificate a private CA signed). Empty: the
  /// system's store only. The coordinator's certificate and host name are always verified; there
  /// is no switch to skip that. The file is read when the Client is constructed; an unreadable or
  /// non-PEM file makes every call fail with kInvalidArgument naming it.
  std::string ca_file{};
};

/// One branch row of a transaction as returned by query (PROTOCOL.md §2.4).
struct DTX_EXPORT BranchInfo {
  std::string branch_id;  ///< "01", "02", ...
  std::string op;         ///< "action", "compensate", "try", "confirm", "cancel", ...
  std::string status;     ///< "prepared", "succeed", "failed"
  std::string url;        ///< the URL the coordinator calls for this op
};

/// A global transaction as returned by query (PROTOCOL.md §2.4). Fields absent in the answer are
/// empty.
struct DTX_EXPORT TransactionInfo {
  std::string gid;              ///< the global transaction id
  std::string trans_type;       ///< "saga", "tcc", "msg", ...
  std::string status;           ///< "prepared", "submitted", "aborting", "succeed", "failed"
  std::string rollback_reason;  ///< why it rolled back (a participant's answer, a timeout, ...)
  std::string custom_data;      ///< the custom_data of the submit, verbatim
  std::vector<BranchInfo>
      branches;  ///< in the server's order: [c01, a01, c02, a02, ...] for a saga

  /// True for "succeed" and "failed": the transaction never changes again.
  bool is_final() const { return status == "succeed" || status == "failed"; }
};

/// A blocking client of the coordinator's API; see the file description for threading and errors.
class DTX_EXPORT Client {
 public:
  /// `server_url` is the API prefix, e.g. "http://127.0.0.1:36789/api/dtmsvr" or
  /// "https://dtx.internal:36789/api/dtmsvr" (a trailing '/' is ignored). Nothing is connected
  /// until the first call; an invalid URL or invalid `options` make every call fail with
  /// kInvalidArgument.
  explicit Client(std::string server_url, ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /// The API prefix given to the constructor.
  const std::string& server_url() const { return server_url_; }

  /// GET /newGid: a fresh unique gid.
  Result<std::string> NewGid();

  /// POST /submit with a prepared §2.2 body (low level; sagas are easier to submit with dtx::Saga).
  /// Ok only for 200 {"dtm_result":"SUCCESS"}.
  Status Submit(const std::string& json_body);
  /// POST /prepare with a §2.2 body, for the modes that use it (tcc, msg, xa).
  Status Prepare(const std::string& json_body);
  /// POST /abort with a §2.2 body: a prepared tcc/xa rolls back, a prepared msg is dropped.
  Status Abort(const std::string& json_body);

  /// POST /registerBranch with a flat body of strings (§2.3): tcc branches (Tcc::CallBranch) and xa
  /// branches (PgXaBranch, from inside the participant's local transaction).
  Status RegisterBranch(const std::string& json_body);

  /// GET /query?gid=: the transaction and its branches. Unknown gid -> kNotFound.
  Result<TransactionInfo> Query(const std::string& gid);

  /// Polls Query every `poll_interval` until the transaction is succeed or failed; kTimeout when
  /// `timeout` passes first, kNotFound for an unknown gid. Transient errors (kUnavailable, kTimeout
  /// of one query) are retried until the overall timeout.
  Result<TransactionInfo> WaitFinal(
      const std::string& gid, std::chrono::milliseconds timeout,
      std::chrono::milliseconds poll_interval = std::chrono::milliseconds(100));

 private:
  friend class Notification;      // posts to the coordinator's /api/dtx/notify through impl_
  friend struct ClientInternals;  // saga definitions, prepares with their own deadline
  struct Impl;
  std::string server_url_;
  std::unique_ptr<Impl> impl_;
};

/// Parses a query answer (PROTOCOL.md §2.4). `{"transaction":null,...}` -> kNotFound; malformed
/// JSON or wrong types -> kInternal. Exposed for tests and tools.
DTX_EXPORT Result<TransactionInfo> ParseQueryAnswer(const std::string& body);

}  // namespace dtx
