// `dtx relay`: see relay_command.h.
#include "tools/dtx/relay_command.h"

#include <pthread.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <memory>
#include <thread>

#include "relay/relay.h"
#include "relay/source.h"

namespace dtx::tools {
namespace {

struct RelayFlags {
  relay::RelayOptions options;
  double poll_interval_s = 1;
  double publish_timeout_s = 10;
  double retain_s = 0;
  std::string log_level = "info";
  std::vector<int64_t> requeue_ids;
};

int Fail(const Status& s) {
  std::fprintf(stderr, "dtx relay: %s\n", s.message().c_str());
  return s.code() == Code::kInvalidArgument || s.code() == Code::kNotFound ? 2 : 1;
}

int RunRelayCommand(RelayFlags& f) {
  auto logger = spdlog::stderr_color_mt("dtx-relay");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(f.log_level));
  f.options.poll_interval =
      std::chrono::milliseconds(static_cast<int64_t>(f.poll_interval_s * 1000));
  f.options.publish_timeout =
      std::chrono::milliseconds(static_cast<int64_t>(f.publish_timeout_s * 1000));
  f.options.retain = std::chrono::seconds(static_cast<int64_t>(f.retain_s));

  // A broker that dies mid-write must show as an error on the socket, not kill the relay.
  std::signal(SIGPIPE, SIG_IGN);
  // SIGTERM / SIGINT: this thread waits for them; the workers finish their batch and return.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<bool> done{false};
  relay::RelayStats stats;
  Status result;
  std::thread runner([&] {
    result = relay::RunRelay(f.options, stop, stats, [&] {
      std::printf("dtx relay ready: outbox %s, sink %s, %d worker(s)\n", f.options.table.c_str(),
                  f.options.sink.c_str(), relay::WorkerCount(f.options));
      std::fflush(stdout);
    });
    done = true;
    ::kill(::getpid(), SIGTERM);  // wake the sigwait below
  });
  int sig = 0;
  sigwait(&signals, &sig);
  stop = true;
  runner.join();
  if (!result.ok()) return Fail(result);
  spdlog::info("relay stopped: {} published, {} refused, {} transport failures, {} deleted",
               stats.published.load(), stats.refused.load(), stats.transport_failures.load(),
               stats.deleted.load());
  spdlog::info("relay time: {} batches, claim {} ms, publish {} ms, mark {} ms",
               stats.batches.load(), stats.claim_us.load() / 1000, stats.publish_us.load() / 1000,
               stats.mark_us.load() / 1000);
  return 0;
}

int RunRequeue(const RelayFlags& f) {
  auto source = relay::OpenSource(f.options.source, f.options.table, /*exclusive=*/false);
  if (!source.ok()) return Fail(source.status());
  if (Status s = source.value()->Prepare(false); !s.ok()) return Fail(s);
  Result<int64_t> n = source.value()->Requeue(f.requeue_ids);
  if (!n.ok()) return Fail(n.status());
  std::printf("requeued %lld parked row(s)\n", static_cast<long long>(n.value()));
  return 0;
}

int RunStatus(const RelayFlags& f) {
  auto source = relay::OpenSource(f.options.source, f.options.table, /*exclusive=*/false);
  if (!source.ok()) return Fail(source.status());
  if (Status s = source.value()->Prepare(false); !s.ok()) return Fail(s);
  Result<std::vector<int64_t>> c = source.value()->CountByState();
  if (!c.ok()) return Fail(c.status());
  std::printf("pending %lld published %lld parked %lld\n", static_cast<long long>(c.value()[0]),
              static_cast<long long>(c.value()[1]), static_cast<long long>(c.value()[2]));
  return 0;
}

void AddSourceFlags(CLI::App* cmd, RelayFlags* f, bool required) {
  cmd->add_option("--source", f->options.source, "postgres://... or sqlite:PATH (the outbox's DB)")
      ->required(required);
  cmd->add_option("--table", f->options.table, "outbox table ([schema.]name)")
      ->capture_default_str();
}

}  // namespace

void AddRelayCommand(CLI::App& app) {
  auto flags = std::make_shared<RelayFlags>();
  CLI::App* cmd =
      app.add_subcommand("relay", "publish committed outbox rows to a broker (docs/outbox.md)");
  AddSourceFlags(cmd, flags.get(), false);
  cmd->add_option("--sink", flags->options.sink,
                  "redis://host:port, nats://host:port, kafka://host:port[,host:port], "
                  "amqp://[user:pass@]host:port[/vhost][?exchange=NAME], dtx://host:port or "
                  "dtxs://host:port (a dtx coordinator's topics, over HTTP or HTTPS)");
  cmd->add_option("--sink-token", flags->options.sink_token,
                  "dtx(s):// sink: the API token of a coordinator started with --api-token (sent "
                  "as 'Authorization: Bearer'; prefer the variable: arguments are visible in ps)")
      ->envname("DTX_SINK_TOKEN");
  cmd->add_option("--sink-ca-file", flags->options.sink_ca_file,
                  "dtxs:// sink: PEM file of CA certificates to trust besides the system's store")
      ->envname("DTX_SINK_CA_FILE");
  cmd->add_option("--batch", flags->options.batch, "rows per claim (1..10000)")
      ->capture_default_str();
  cmd->add_option("--workers", flags->options.workers,
                  "worker threads, each its share of the keys (default: 2 on PostgreSQL, 1 on "
                  "SQLite)");
  cmd->add_option("--max-attempts", flags->options.max_attempts,
                  "broker refusals before a row is parked")
      ->capture_default_str();
  cmd->add_option("--poll-interval", flags->poll_interval_s,
                  "seconds between polls when no NOTIFY wakes the relay")
      ->capture_default_str();
  cmd->add_option("--publish-timeout", flags->publish_timeout_s, "seconds per published batch")
      ->capture_default_str();
  cmd->add_option("--retain", flags->retain_s,
                  "delete published rows older than this many seconds (0 = keep)")
      ->capture_default_str();
  cmd->add_flag("--delete-published", flags->options.delete_published,
                "delete each row once the broker acknowledged it, instead of marking it "
                "published (no --retain)");
  cmd->add_flag("--init", flags->options.init, "create the outbox table if missing");
  cmd->add_option("--log-level", flags->log_level, "trace, debug, info, warn, error, off")
      ->capture_default_str();

  CLI::App* requeue = cmd->add_subcommand("requeue", "parked rows back to pending");
  AddSourceFlags(requeue, flags.get(), true);
  requeue->add_option("--id", flags->requeue_ids, "row ids (default: every parked row)");
  requeue->callback([flags] {
    if (int rc = RunRequeue(*flags); rc != 0) throw CLI::RuntimeError(rc);
  });
  CLI::App* status = cmd->add_subcommand("status", "row counts: pending, published, parked");
  AddSourceFlags(status, flags.get(), true);
  status->callback([flags] {
    if (int rc = RunStatus(*flags); rc != 0) throw CLI::RuntimeError(rc);
  });

  cmd->callback([cmd, flags] {
    if (cmd->got_subcommand("requeue") || cmd->got_subcommand("status")) return;
    if (flags->options.sink.empty() || flags->options.source.empty()) {
      std::fprintf(stderr, "dtx relay: --source and --sink are required\n");
      throw CLI::RuntimeError(2);
    }
    if (int rc = RunRelayCommand(*flags); rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace dtx::tools
