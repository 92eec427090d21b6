/// @file
/// Helpers to write participant services: the HTTP endpoints that the coordinator calls for each
/// branch (PROTOCOL.md §3.2) and that answer with the result classes of §3.3.
///
/// @code
///   dtx::ParticipantServer server({.port = 8081});
///   server.Handle("POST", "/api/pay", [&](const dtx::BranchRequest& r) {
///     // r.gid, r.op, r.body ... do the local transaction (may block on the database)
///     if (r.body.empty()) return dtx::BranchResult::Failure("no payload");   // -> roll back
///     return dtx::BranchResult::Success();
///   });
///   dtx::Status s = server.Start();   // then server.port(), server.base_url()
/// @endcode
///
/// Threading: the HTTP I/O runs on a few I/O threads that never block; every handler runs on a
/// bounded pool of worker threads, so handlers may block on their local database. Handlers run
/// concurrently and must be thread-safe. Handle() is called before Start(); Start/Stop from one
/// controlling thread.
///
/// How it fails: Start returns kUnavailable/kInvalidArgument when the address cannot be bound. At
/// run time nothing throws out of the server: when the worker queue is full the request is answered
/// 503 (the coordinator retries it later with backoff); a handler that throws gets a 500 with the
/// exception text; an unknown path gets 404, a known path with another method 405. Include policy:
/// see client.h.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dtx/export.h"
#include "dtx/status.h"

namespace dtx {

/// One call of the coordinator to a branch, as the handler sees it.
struct DTX_EXPORT BranchRequest {
  std::string method;  ///< "POST" when the payload is non-empty, else "GET" (PROTOCOL.md §3.2)
  std::string path;    ///< without the query
  std::string query;   ///< raw query string, without '?'
  /// Identity from the query parameters dtx adds; empty when absent (a call not made by a
  /// coordinator).
  std::string gid;
  std::string trans_type;  ///< "saga", "tcc", "msg", ...
  std::string branch_id;   ///< "01", ...
  std::string op;          ///< "action", "compensate", "try", "confirm", "cancel", ...
  std::vector<std::pair<std::string, std::string>>
      headers;       ///< incl. the transaction's branch_headers
  std::string body;  ///< the step's payload, verbatim

  /// Case-insensitive header lookup; empty if absent.
  std::string_view Header(std::string_view name) const;
  /// Percent-decoded value of the first query parameter `name`; nullopt if absent.
  std::optional<std::string> QueryParam(std::string_view name) const;
};

/// A handler's answer. Use the factories; they produce exactly what the coordinator classifies.
struct DTX_EXPORT BranchResult {
  int status = 200;                               ///< the HTTP status
  std::string body;                               ///< the response body
  std::string content_type = "application/json";  ///< the Content-Type header

  /// 200 {"dtm_result":"SUCCESS"}: the branch took effect (or had already: answer it again on
  /// retries).
  static BranchResult Success();
  /// 409 {"dtm_result":"FAILURE","message":...}: a business failure; the saga rolls back. Never
  /// retried. Do not answer this from a compensation (compensations are retried until they
  /// succeed).
  static BranchResult Failure(std::string_view message);
  /// 425 {"dtm_result":"ONGOING"}: not done yet; the coordinator asks again at the retry interval.
  static BranchResult Ongoing();
  /// 500 {"message":...}: a temporary error (database down, ...); retried with backoff.
  static BranchResult Error(std::string_view message);
  /// Any other answer, e.g. a query endpoint for an application: status, body and content type as
  /// given.
  static BranchResult Custom(int status, std::string body,
                             std::string content_type = "application/json");
};

/// A branch endpoint: called on a worker thread for each request of its method and path.
using BranchHandler = std::function<BranchResult(const BranchRequest&)>;

/// Settings of a ParticipantServer.
struct DTX_EXPORT ParticipantOptions {
  std::string host = "127.0.0.1";  ///< the address to listen on
  uint16_t port = 0;               ///< 0 = a free port, see ParticipantServer::port()
  size_t io_threads = 1;           ///< HTTP I/O; handlers do not run there
  size_t worker_threads = 8;       ///< handlers run here, so this many can block at once
  /// Requests waiting for a worker; one more gets 503 at once (back-pressure, never a silent drop).
  size_t max_queued = 1024;
  size_t max_body_bytes = 4 * 1024 * 1024;  ///< larger bodies get 413
  std::chrono::milliseconds read_timeout{
      10'000};  ///< a client must send a whole request within this
};

/// An HTTP server for branch handlers; see the file description.
class DTX_EXPORT ParticipantServer {
 public:
  /// Nothing is bound until Start.
  explicit ParticipantServer(ParticipantOptions options = {});
  ~ParticipantServer();  ///< calls Stop()
  ParticipantServer(const ParticipantServer&) = delete;
  ParticipantServer& operator=(const ParticipantServer&) = delete;

  /// Registers `handler` for `method` ("GET", "POST", ... or "*" for any) and the exact `path`. The
  /// coordinator uses GET for a branch whose payload is empty, so register "*" for such branches. A
  /// later registration of the same method and path replaces the earlier one. Before Start only.
  void Handle(std::string method, std::string path, BranchHandler handler);

  /// Binds, starts the I/O and worker threads. Fails if already started or the address is unusable.
  Status Start();
  /// The bound port (after a successful Start), else 0.
  uint16_t port() const;
  /// "http://host:port" (after Start).
  std::string base_url() const;
  /// Stops accepting, answers 503 to queued requests, waits for running handlers, joins all
  /// threads. Idempotent.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dtx
