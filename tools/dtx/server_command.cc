#include "tools/dtx/server_command.h"

#include <fmt/format.h>
#include <malloc.h>
#include <pthread.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "api/routes.h"
#include "engine/engine.h"
#include "http/server.h"
#include "ops/admin.h"
#include "ops/auth.h"
#include "ops/metrics.h"
#include "ops/retention.h"
#include "runtime/io_pool.h"
#include "store/store.h"
#include "tools/dtx/net_flags.h"

namespace dtx::tools {
namespace {

struct ServerFlags {
  std::string listen = "127.0.0.1:36789";
  std::string store = "sqlite:dtx-data/dtx.db";
  double retry_interval_s = 10;
  double timeout_to_fail_s = 35;
  double request_timeout_s = 3;
  double cron_interval_s = 1;
  double max_retry_interval_s = 1800;
  std::string log_level = "info";
  size_t max_body_bytes = 4 * 1024 * 1024;
  size_t max_connections = 10'000;
  size_t max_active = 50'000;
  double read_timeout_s = 10;
  size_t io_threads = 0;  // 0 = one per core
  std::string alert_webhook;
  int64_t alert_retry_limit = 3;
  std::string check_back_policy = "guarded";
  int64_t max_retry_limit = 1000;
  std::vector<std::string> admin_tokens;  // NAME=TOKEN
  std::string admin_token_file;
  std::vector<std::string> allow_origins;  // web pages allowed to call (browser_guard.h)
  NetFlags net;                            // TLS, --admin-listen, --api-token, ... (net_flags.h)
  std::string retain_finished = "0";       // DURATION; 0 = keep
  std::string retain_audit = "90d";
  int retention_batch = 500;
  std::string retention_interval = "60s";
  bool call_history = true;
};

// A duration like "30d", "12h", "15m", "90s", "250ms" or plain seconds ("3600", "0.5") -> ms.
Result<int64_t> ParseDurationMs(const std::string& flag, const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (...) {
    used = 0;
  }
  const std::string unit = text.substr(used);
  double scale = 0;
  if (unit.empty() || unit == "s") scale = 1000;
  if (unit == "ms") scale = 1;
  if (unit == "m") scale = 60'000;
  if (unit == "h") scale = 3'600'000;
  if (unit == "d") scale = 86'400'000;
  constexpr double kMaxMs = 100.0 * 365 * 86'400'000;
  if (used == 0 || scale == 0 || !(v >= 0) || v * scale > kMaxMs) {
    return Status::InvalidArgument(flag + ": '" + text +
                                   "' is not a duration (e.g. 30d, 12h, 15m, 90s, 250ms, 0)");
  }
  return static_cast<int64_t>(v * scale + 0.5);
}

Result<ops::RetentionOptions> RetentionOf(const ServerFlags& f) {
  ops::RetentionOptions o;
  auto finished = ParseDurationMs("--retain-finished", f.retain_finished);
  if (!finished.ok()) return finished.status();
  auto audit = ParseDurationMs("--retain-audit", f.retain_audit);
  if (!audit.ok()) return audit.status();
  auto interval = ParseDurationMs("--retention-interval", f.retention_interval);
  if (!interval.ok()) return interval.status();
  o.retain_finished_ms = *finished;
  o.retain_audit_ms = *audit;
  o.batch_rows = f.retention_batch;
  o.interval_ms = *interval;
  if (Status s = ops::ValidateRetention(o); !s.ok()) return s;
  return o;
}

// The admin tokens of --admin-token, DTX_ADMIN_TOKEN and --admin-token-file. Tokens never appear
// in a message, only their names.
Result<ops::TokenSet> LoadAdminTokens(const ServerFlags& f) {
  ops::TokenSet tokens;
  for (const std::string& t : f.admin_tokens) {
    if (Status s = tokens.Add(t); !s.ok())
      return Status::InvalidArgument("--admin-token: " + s.message());
  }
  if (const char* env = std::getenv("DTX_ADMIN_TOKEN"); env != nullptr && *env != '\0') {
    if (Status s = tokens.AddList(env); !s.ok()) {
      return Status::InvalidArgument("DTX_ADMIN_TOKEN: " + s.message());
    }
  }
  if (!f.admin_token_file.empty()) {
    if (Status s = tokens.AddFile(f.admin_token_file); !s.ok()) return s;
  }
  return tokens;
}

// The store spec for logs: a postgres:// password is replaced by "***".
std::string RedactStore(const std::string& spec) {
  auto scheme = spec.find("://");
  auto at = spec.find('@');
  if (scheme == std::string::npos || at == std::string::npos || at < scheme) return spec;
  auto colon = spec.find(':', scheme + 3);
  if (colon == std::string::npos || colon > at) return spec;
  return spec.substr(0, colon + 1) + "***" + spec.substr(at);
}

// Clamped to +-100 years: converting a double beyond int64 (1e300, inf) is undefined behaviour.
int64_t ToMs(double seconds) {
  constexpr double kMaxS = 100.0 * 365 * 24 * 3600;
  if (std::isnan(seconds)) return 0;
  return static_cast<int64_t>(std::clamp(seconds, -kMaxS, kMaxS) * 1000.0 + 0.5);
}

// --log-level → the default logger; false (with the reason on stderr) for an unknown level.
bool SetUpLogging(const std::string& log_level) {
  auto level = spdlog::level::from_str(log_level);
  if (level == spdlog::level::off && log_level != "off") {
    std::fprintf(stderr, "dtx: unknown --log-level '%s' (trace, debug, info, warn, error, off)\n",
                 log_level.c_str());
    return false;
  }
  auto logger = spdlog::stderr_color_mt("dtx");
  spdlog::set_default_logger(logger);
  spdlog::set_level(level);
  return true;
}

// --listen and the HTTP limits; TLS is added from the net flags.
Result<http::ServerOptions> ServerOptionsOf(const ServerFlags& f) {
  auto colon = f.listen.rfind(':');
  if (colon == std::string::npos) {
    return Status::InvalidArgument("--listen must be HOST:PORT, got '" + f.listen + "'");
  }
  http::ServerOptions o;
  o.host = f.listen.substr(0, colon);
  try {
    int port = std::stoi(f.listen.substr(colon + 1));
    if (port < 0 || port > 65535) throw std::out_of_range("port");
    o.port = static_cast<uint16_t>(port);
  } catch (...) {
    return Status::InvalidArgument("--listen: invalid port in '" + f.listen + "'");
  }
  o.max_body_bytes = f.max_body_bytes;
  o.max_connections = f.max_connections;
  o.read_timeout = std::chrono::milliseconds(ToMs(f.read_timeout_s));
  return o;
}

// The engine's settings from the flags (the branch caller factory is added by the caller).
Result<engine::EngineOptions> EngineOptionsOf(const ServerFlags& f) {
  for (double v : {f.retry_interval_s, f.timeout_to_fail_s, f.request_timeout_s, f.cron_interval_s,
                   f.max_retry_interval_s}) {
    if (!(v > 0)) return Status::InvalidArgument("durations must be positive seconds");
  }
  if (f.max_retry_limit < 0) return Status::InvalidArgument("--max-retry-limit must be >= 0");
  if (f.check_back_policy != "guarded" && f.check_back_policy != "legacy") {
    return Status::InvalidArgument("--check-back-policy must be guarded or legacy");
  }
  engine::EngineOptions o;
  o.settings.retry_interval_ms = ToMs(f.retry_interval_s);
  o.settings.timeout_to_fail_ms = ToMs(f.timeout_to_fail_s);
  o.settings.request_timeout_ms = ToMs(f.request_timeout_s);
  o.settings.max_retry_interval_ms = ToMs(f.max_retry_interval_s);
  o.settings.max_retry_limit = f.max_retry_limit;
  o.settings.legacy_check_back = f.check_back_policy == "legacy";
  o.cron_interval_ms = ToMs(f.cron_interval_s);
  o.max_active_transactions = f.max_active;
  o.alert_webhook = f.alert_webhook;
  o.alert_retry_limit = f.alert_retry_limit;
  o.call_history = f.call_history;
  return o;
}

// Keeps freed memory for reuse when built without jemalloc (-DDTX_JEMALLOC=OFF, sanitizers):
// glibc's allocator by default returns freed heap top to the kernel and re-faults it moments
// later; under load that costs ~20 % of the coordinator's CPU (measured with dtx-bench: 265-280 ->
// 208-215 us/saga).
void TuneAllocator() {
#ifndef DTX_WITH_JEMALLOC
  mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);
  mallopt(M_TOP_PAD, 16 * 1024 * 1024);
  mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
#endif
}

// The admin tokens, with a log line saying whether the admin API is enabled.
Result<ops::TokenSet> AdminTokensLogged(const ServerFlags& f) {
  auto tokens = LoadAdminTokens(f);
  if (!tokens.ok()) return tokens;
  if (tokens->empty()) {
    spdlog::warn(
        "admin API disabled (it answers 403): start with --admin-token NAME=TOKEN, "
        "DTX_ADMIN_TOKEN=NAME=TOKEN or --admin-token-file PATH to enable it");
  } else {
    spdlog::info("admin API enabled for {} token(s)", tokens->size());
  }
  return tokens;
}

// Everything the flags decide, checked before the store is opened.
struct ServerSetup {
  http::ServerOptions server;
  engine::EngineOptions engine;
  NetSetup net;
  ops::TokenSet admin_tokens;
  ops::RetentionOptions retention;
};

Result<ServerSetup> PrepareServer(const ServerFlags& f) {
  ServerSetup setup;
  auto server_opts = ServerOptionsOf(f);
  if (!server_opts.ok()) return server_opts.status();
  auto engine_opts = EngineOptionsOf(f);
  if (!engine_opts.ok()) return engine_opts.status();
  auto net = PrepareNet(f.net);
  if (!net.ok()) return net.status();
  auto admin_tokens = AdminTokensLogged(f);
  if (!admin_tokens.ok()) return admin_tokens.status();
  auto retention = RetentionOf(f);
  if (!retention.ok()) return retention.status();
  setup.server = std::move(*server_opts);
  setup.server.tls = net->server_tls;
  setup.engine = std::move(*engine_opts);
  setup.net = std::move(*net);
  setup.admin_tokens = std::move(*admin_tokens);
  setup.retention = *retention;
  return setup;
}

int RunServer(const ServerFlags& f) {
  if (!SetUpLogging(f.log_level)) return 2;
  TuneAllocator();
  // Signals are handled by this thread only (sigwait below); block them before threads start.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto setup = PrepareServer(f);
  if (!setup.ok()) {
    spdlog::error("{}", setup.status().message());
    return 2;
  }
  const http::ServerOptions& server_options = setup->server;

  auto store = store::OpenStore(f.store);
  if (!store.ok()) {
    spdlog::error("cannot open store '{}': {}", RedactStore(f.store), store.status().ToString());
    return 1;
  }
  size_t threads = f.io_threads ? f.io_threads : std::max(1u, std::thread::hardware_concurrency());
  // Destruction order matters (see Engine::Shutdown): the pool's io_contexts must be destroyed
  // after everything that owns I/O objects on them and before the engine.
  auto pool_owner = std::make_unique<runtime::IoPool>(threads);
  runtime::IoPool& pool = *pool_owner;
  ops::Metrics metrics;
  if (const store::StoreHistograms* h = (*store)->Histograms()) {
    metrics.AddHistogram("dtx_store_batch_ops", "Write operations per committed store batch",
                         &h->batch_ops);
    metrics.AddHistogram("dtx_store_commit_seconds",
                         "Time of one store batch from BEGIN to COMMIT done (fsync included)",
                         &h->commit_seconds);
  }
  ops::RetentionJob retention(**store, SystemClock::Instance(), &metrics, setup->retention);
  engine::CallerFactory callers = [client = setup->net.client](boost::asio::any_io_executor ex) {
    return engine::NewHttpBranchCallerWith(std::move(ex), client);
  };
  auto engine_owner = std::make_unique<engine::Engine>(setup->engine, **store, pool,
                                                       SystemClock::Instance(), &metrics, callers);
  engine::Engine& engine = *engine_owner;
  api::ApiHandler handler(engine, metrics);
  ops::AdminOptions admin_options;
  admin_options.alert_retry_limit = f.alert_retry_limit;
  ops::AdminService admin_service(engine, **store, SystemClock::Instance(), &metrics,
                                  admin_options);
  api::AdminRoutes admin_routes(admin_service, setup->admin_tokens);
  handler.SetAdmin(&admin_routes);
  handler.SetAllowedOrigins(f.allow_origins);
  handler.SetUrlPolicy(setup->net.url_policy);
  auto listeners = std::make_unique<NetListeners>(setup->net, handler);  // net_flags.h
  auto server_owner =
      std::make_unique<http::Server>(pool, server_options, listeners->main_handler());
  http::Server& server = *server_owner;
  pool.Start();
  Status admin_started = listeners->StartAdmin(pool, server_options);
  if (!admin_started.ok()) spdlog::error("{}", admin_started.message());
  if (Status s = admin_started.ok() ? server.Start() : admin_started; !s.ok()) {
    if (admin_started.ok()) spdlog::error("cannot listen on {}: {}", f.listen, s.ToString());
    listeners.reset();
    pool.Stop();
    pool.Join();
    (*store)->Close();
    server_owner.reset();
    engine.Shutdown();
    pool_owner.reset();
    return 1;
  }
  engine.Start();
  retention.Start(pool.Get(0).get_executor());
  // The one ready line (tests wait for it and read the port from it).
  std::printf("dtx server ready: listening on %s:%u, store %s%s\n", server_options.host.c_str(),
              static_cast<unsigned>(server.port()), RedactStore(f.store).c_str(),
              server_options.tls ? ", https" : "");
  std::fflush(stdout);

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("signal {} received, shutting down", sig);
  listeners->Stop();
  server.Stop();
  engine.Stop();
  retention.Stop();
  pool.Stop();
  pool.Join();
  (*store)->Close();  // drains queued writes; their callbacks post to the stopped contexts
  server_owner.reset();
  listeners.reset();
  engine.Shutdown();
  pool_owner.reset();  // destroys suspended coroutines while the engine is still alive
  engine_owner.reset();
  spdlog::info("stopped");
  return 0;
}

}  // namespace

Status LoadConfigFile(CLI::App& app, int argc, char** argv) {
  CLI::App* cmd = app.get_subcommand("server");
  std::string path;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--config" && i + 1 < argc) path = argv[i + 1];
    if (a.rfind("--config=", 0) == 0) path = a.substr(9);
  }
  if (path.empty()) return Status::Ok();
  std::ifstream in(path);
  if (!in) return Status::InvalidArgument("cannot read config file '" + path + "'");
  std::string line;
  int line_no = 0;
  auto trim = [](std::string s) {
    size_t b = s.find_first_not_of(" \t\r");
    size_t e = s.find_last_not_of(" \t\r");
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
  };
  while (std::getline(in, line)) {
    ++line_no;
    line = trim(line);
    if (line.empty() || line[0] == '#' || line[0] == ';' || line[0] == '[') continue;
    auto eq = line.find('=');
    if (eq == std::string::npos) {
      return Status::InvalidArgument(fmt::format("{}:{}: expected `name = value`", path, line_no));
    }
    std::string key = trim(line.substr(0, eq));
    std::string value = trim(line.substr(eq + 1));
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') &&
        value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    }
    if (key == "config") continue;
    CLI::Option* opt = nullptr;
    try {
      opt = cmd->get_option("--" + key);
    } catch (const CLI::OptionNotFound&) {
      return Status::InvalidArgument(
          fmt::format("{}:{}: unknown setting '{}' (use the flag names, e.g. retry-interval)", path,
                      line_no, key));
    }
    // A file value acts as the default: environment variables and the command line override it.
    opt->default_str(value);
    opt->default_val(value);
  }
  return Status::Ok();
}

void AddServerCommand(CLI::App& app) {
  auto flags = std::make_shared<ServerFlags>();
  CLI::App* cmd = app.add_subcommand("server", "run the coordinator");
  // --config is read before parsing (see LoadConfigFile); declared here so it shows in --help.
  cmd->add_option("--config", "read settings from a file of `name = value` lines (flag names)");
  cmd->add_option("--listen", flags->listen, "HOST:PORT to serve the HTTP API on")
      ->envname("DTX_LISTEN")
      ->capture_default_str();
  cmd->add_option("--store", flags->store, "sqlite:PATH or memory:")
      ->envname("DTX_STORE")
      ->capture_default_str();
  cmd->add_option("--retry-interval", flags->retry_interval_s,
                  "base of the retry backoff, seconds (fractions allowed)")
      ->envname("DTX_RETRY_INTERVAL")
      ->capture_default_str();
  cmd->add_option("--timeout-to-fail", flags->timeout_to_fail_s,
                  "default timeout of tcc/xa and msg check-back, seconds")
      ->envname("DTX_TIMEOUT_TO_FAIL")
      ->capture_default_str();
  cmd->add_option("--request-timeout", flags->request_timeout_s,
                  "deadline of one branch call, seconds")
      ->envname("DTX_REQUEST_TIMEOUT")
      ->capture_default_str();
  cmd->add_option("--cron-interval", flags->cron_interval_s,
                  "how often due transactions are looked for, seconds")
      ->envname("DTX_CRON_INTERVAL")
      ->capture_default_str();
  cmd->add_option("--max-retry-interval", flags->max_retry_interval_s,
                  "cap of the exponential backoff, seconds")
      ->envname("DTX_MAX_RETRY_INTERVAL")
      ->capture_default_str();
  cmd->add_option("--log-level", flags->log_level, "trace, debug, info, warn, error, off")
      ->envname("DTX_LOG_LEVEL")
      ->capture_default_str();
  cmd->add_option("--max-body-bytes", flags->max_body_bytes, "largest accepted request body")
      ->envname("DTX_MAX_BODY_BYTES")
      ->capture_default_str();
  cmd->add_option("--max-connections", flags->max_connections, "open client connections at most")
      ->envname("DTX_MAX_CONNECTIONS")
      ->capture_default_str();
  cmd->add_option("--max-active", flags->max_active,
                  "transactions processed in memory at once; submits beyond get 503")
      ->envname("DTX_MAX_ACTIVE")
      ->capture_default_str();
  cmd->add_option("--read-timeout", flags->read_timeout_s,
                  "a client must send a whole request within this many seconds")
      ->envname("DTX_READ_TIMEOUT")
      ->capture_default_str();
  cmd->add_option("--io-threads", flags->io_threads, "I/O threads (0 = one per core)")
      ->envname("DTX_IO_THREADS")
      ->capture_default_str();
  cmd->add_option("--alert-webhook", flags->alert_webhook,
                  "URL POSTed {gid,status,branch,error,retry_count,kind} when a call keeps failing")
      ->envname("DTX_ALERT_WEBHOOK");
  cmd->add_option("--alert-retry-limit", flags->alert_retry_limit,
                  "retry count from which the alert webhook fires")
      ->envname("DTX_ALERT_RETRY_LIMIT")
      ->capture_default_str();
  cmd->add_option("--check-back-policy", flags->check_back_policy,
                  "guarded (an error page never commits a msg) or legacy (DTM: any 200 commits)")
      ->envname("DTX_CHECK_BACK_POLICY")
      ->capture_default_str();
  cmd->add_option("--max-retry-limit", flags->max_retry_limit,
                  "largest saga retry_limit a request may set (above: 400)")
      ->envname("DTX_MAX_RETRY_LIMIT")
      ->capture_default_str();
  cmd->add_option("--admin-token", flags->admin_tokens,
                  "NAME=TOKEN allowed on the admin API /api/dtx/admin/ (repeatable; also "
                  "DTX_ADMIN_TOKEN=NAME=TOKEN[,NAME=TOKEN]); NAME is recorded in the audit log");
  cmd->add_option("--admin-token-file", flags->admin_token_file,
                  "file of NAME=TOKEN lines for the admin API ('#' comments)")
      ->envname("DTX_ADMIN_TOKEN_FILE");
  cmd->add_option("--allow-origin", flags->allow_origins,
                  "ORIGIN (scheme://host:port) whose web pages may call this server (repeatable); "
                  "other browser cross-site requests are refused with 403");
  AddNetFlags(cmd, flags->net);
  cmd->add_option("--retain-finished", flags->retain_finished,
                  "delete finished transactions (and their branch rows) this long after they "
                  "finished, e.g. 30d; 0 keeps them")
      ->envname("DTX_RETAIN_FINISHED")
      ->capture_default_str();
  cmd->add_option("--retain-audit", flags->retain_audit,
                  "delete audit records and resolve marks this long after they were written; 0 "
                  "keeps them")
      ->envname("DTX_RETAIN_AUDIT")
      ->capture_default_str();
  cmd->add_option("--retention-batch", flags->retention_batch,
                  "rows deleted per store write by the retention job (1..5000)")
      ->envname("DTX_RETENTION_BATCH")
      ->capture_default_str();
  cmd->add_option("--retention-interval", flags->retention_interval,
                  "time between two runs of the retention job")
      ->envname("DTX_RETENTION_INTERVAL")
      ->capture_default_str();
  cmd->add_option("--call-history", flags->call_history,
                  "keep every branch call (time, answer, latency, error; the newest 20 per branch) "
                  "for the admin API; false keeps only the count and the last error")
      ->envname("DTX_CALL_HISTORY")
      ->capture_default_str();
  cmd->callback([flags] {
    int rc = RunServer(*flags);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace dtx::tools
