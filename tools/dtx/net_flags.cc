#include "tools/dtx/net_flags.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>

#include "api/net_guard.h"

namespace dtx::tools {

void AddNetFlags(CLI::App* cmd, NetFlags& f) {
  cmd->add_option("--tls-cert", f.tls_cert,
                  "PEM certificate (chain) to serve HTTPS with; needs --tls-key")
      ->envname("DTX_TLS_CERT");
  cmd->add_option("--tls-key", f.tls_key, "PEM private key of --tls-cert")->envname("DTX_TLS_KEY");
  cmd->add_option("--ca-file", f.ca_file,
                  "PEM CA certificates trusted for https participants, besides the system store")
      ->envname("DTX_CA_FILE");
  cmd->add_option("--admin-listen", f.admin_listen,
                  "HOST:PORT of a separate listener for the admin API and console; the main "
                  "listener then answers 404 for them")
      ->envname("DTX_ADMIN_LISTEN");
  cmd->add_option("--api-token", f.api_tokens,
                  "NAME=TOKEN required as 'Authorization: Bearer TOKEN' on the DTM routes "
                  "(repeatable; also DTX_API_TOKEN=NAME=TOKEN[,NAME=TOKEN])");
  cmd->add_option("--api-token-file", f.api_token_file,
                  "file of NAME=TOKEN lines for the DTM routes ('#' comments)")
      ->envname("DTX_API_TOKEN_FILE");
  cmd->add_option("--branch-url-allow", f.branch_url_allow,
                  "host, host:port, *.suffix, IP or CIDR that branch/callback URLs may use "
                  "(repeatable); others are refused with 400 (link-local is always refused "
                  "unless a CIDR admits it)");
}

Result<NetSetup> PrepareNet(const NetFlags& f) {
  NetSetup setup;
  if (f.tls_cert.empty() != f.tls_key.empty()) {
    return Status::InvalidArgument("--tls-cert and --tls-key go together: give both or neither");
  }
  if (!f.tls_cert.empty()) {
    auto ctx = http::MakeServerTlsContext(f.tls_cert, f.tls_key);
    if (!ctx.ok()) return ctx.status();
    setup.server_tls = std::move(ctx).value();
  }
  // One client context for every shard's client: the CA file is read once, here.
  auto client_tls = http::MakeClientTlsContext(f.ca_file);
  if (!client_tls.ok()) return client_tls.status();
  setup.client.tls = std::move(client_tls).value();

  auto policy = http::UrlPolicy::Parse(f.branch_url_allow);
  if (!policy.ok()) return policy.status();
  setup.url_policy = *policy;
  setup.client.url_policy = *policy;

  for (const std::string& t : f.api_tokens) {
    if (Status s = setup.api_tokens.Add(t); !s.ok()) {
      return Status::InvalidArgument("--api-token: " + s.message());
    }
  }
  if (const char* env = std::getenv("DTX_API_TOKEN"); env != nullptr && *env != '\0') {
    if (Status s = setup.api_tokens.AddList(env); !s.ok()) {
      return Status::InvalidArgument("DTX_API_TOKEN: " + s.message());
    }
  }
  if (!f.api_token_file.empty()) {
    if (Status s = setup.api_tokens.AddFile(f.api_token_file); !s.ok()) {
      return Status::InvalidArgument("--api-token-file: " + s.message());
    }
  }
  if (!f.admin_listen.empty()) {
    http::ServerOptions admin;
    if (Status s = ParseListen("--admin-listen", f.admin_listen, admin); !s.ok()) return s;
    setup.admin_listen = admin;
  }
  return setup;
}

NetListeners::NetListeners(const NetSetup& setup, http::Handler& api) : setup_(setup), api_(api) {
  const bool split = setup.admin_listen.has_value();
  if (split || !setup.api_tokens.empty()) {
    main_ = std::make_unique<api::GuardedHandler>(
        api, split ? api::ListenerRole::kApi : api::ListenerRole::kAll, &setup.api_tokens);
  }
  if (split) {
    admin_handler_ =
        std::make_unique<api::GuardedHandler>(api, api::ListenerRole::kAdmin, &setup.api_tokens);
  }
}

NetListeners::~NetListeners() { Stop(); }

Status NetListeners::StartAdmin(runtime::IoPool& pool, const http::ServerOptions& base) {
  if (!setup_.admin_listen) return Status::Ok();
  http::ServerOptions options = base;
  options.host = setup_.admin_listen->host;
  options.port = setup_.admin_listen->port;
  admin_server_ = std::make_unique<http::Server>(pool, options, *admin_handler_);
  if (Status s = admin_server_->Start(); !s.ok()) {
    return Status::Unavailable("--admin-listen " + options.host + ":" +
                               std::to_string(options.port) + ": " + s.message());
  }
  std::printf("dtx admin listener ready: %s:%u%s\n", options.host.c_str(),
              static_cast<unsigned>(admin_server_->port()), options.tls ? ", https" : "");
  std::fflush(stdout);
  return Status::Ok();
}

void NetListeners::Stop() {
  if (admin_server_) admin_server_->Stop();
}

Status ParseListen(const std::string& flag, const std::string& value, http::ServerOptions& out) {
  const auto colon = value.rfind(':');
  if (colon == std::string::npos) {
    return Status::InvalidArgument(fmt::format("{} must be HOST:PORT, got '{}'", flag, value));
  }
  std::string host = value.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  int port = -1;
  try {
    size_t used = 0;
    port = std::stoi(value.substr(colon + 1), &used);
    if (used != value.size() - colon - 1) port = -1;
  } catch (...) {
    port = -1;
  }
  if (port < 0 || port > 65535) {
    return Status::InvalidArgument(fmt::format("{}: invalid port in '{}'", flag, value));
  }
  out.host = host;
  out.port = static_cast<uint16_t>(port);
  return Status::Ok();
}

}  // namespace dtx::tools
