// The network-hardening flags of `dtx server` (issue 13 item 6): TLS of the listeners, the CA file
// of the participant client, the separate admin listener, API tokens and the branch URL allow-list.
// Kept apart from server_command.cc so that the flags and their checks live in one place.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "http/client.h"
#include "http/server.h"
#include "http/tls.h"
#include "ops/auth.h"
#include "runtime/io_pool.h"
#include "util/status.h"

namespace dtx::tools {

struct NetFlags {
  std::string tls_cert;                 // PEM certificate chain of the API (and admin) listener
  std::string tls_key;                  // its PEM private key
  std::string ca_file;                  // extra trusted CAs for https participants
  std::string admin_listen;             // HOST:PORT of a separate admin listener
  std::vector<std::string> api_tokens;  // NAME=TOKEN for the DTM routes
  std::string api_token_file;           // NAME=TOKEN lines
  std::vector<std::string> branch_url_allow;  // the SSRF guard's patterns (http/url_policy.h)
};

// Declares the flags on `cmd`; values land in `flags` (which must outlive parsing).
void AddNetFlags(CLI::App* cmd, NetFlags& flags);

// What the flags make: checked at startup, before anything listens.
struct NetSetup {
  std::shared_ptr<http::TlsContext> server_tls;  // null: plain HTTP
  http::ClientOptions client;  // for branch calls, notifications, alerts (TLS, URL policy)
  std::shared_ptr<const http::UrlPolicy> url_policy;  // always set: link-local is always refused
  ops::TokenSet api_tokens;                           // empty: the DTM routes are open
  std::optional<http::ServerOptions> admin_listen;    // host and port only
};

// Builds the TLS contexts from the files, loads the API tokens (--api-token, DTX_API_TOKEN,
// --api-token-file), parses --branch-url-allow and --admin-listen. A missing or unusable file is
// kInvalidArgument naming the flag, the file and the cause (the server refuses to start with it).
Result<NetSetup> PrepareNet(const NetFlags& flags);

// The listeners' handlers and the admin listener of a NetSetup. Without --admin-listen and
// --api-token the main listener gets `api` itself (no extra hop per request).
class NetListeners {
 public:
  NetListeners(const NetSetup& setup, http::Handler& api);
  ~NetListeners();
  http::Handler& main_handler() { return main_ ? *main_ : api_; }
  // Starts the admin listener (with `base`'s limits and TLS) when --admin-listen is set and prints
  // "dtx admin listener ready: HOST:PORT". Call after the pool started.
  Status StartAdmin(runtime::IoPool& pool, const http::ServerOptions& base);
  void Stop();

 private:
  const NetSetup& setup_;
  http::Handler& api_;
  std::unique_ptr<http::Handler> main_;
  std::unique_ptr<http::Handler> admin_handler_;
  std::unique_ptr<http::Server> admin_server_;
};

// "HOST:PORT" into server options; kInvalidArgument with `flag` in the message.
Status ParseListen(const std::string& flag, const std::string& value, http::ServerOptions& out);

}  // namespace dtx::tools
