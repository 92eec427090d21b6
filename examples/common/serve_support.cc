#include "examples/common/serve_support.h"

#include <CLI/CLI.hpp>
#include <cstdio>

namespace dtx_examples {

sigset_t BlockStopSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

int ServeUntilStopped(dtx::ParticipantServer& server, const sigset_t& signals,
                      const char* ready_prefix, const std::string& service, const std::string& host,
                      int port, const std::function<void()>& on_started) {
  if (dtx::Status s = server.Start(); !s.ok()) {
    std::fprintf(stderr, "serve: cannot listen on %s:%d: %s\n", host.c_str(), port,
                 s.ToString().c_str());
    return 1;
  }
  if (on_started) on_started();
  std::printf("%sservice %s listening on %s:%u\n", ready_prefix, service.c_str(), host.c_str(),
              static_cast<unsigned>(server.port()));
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  server.Stop();
  return 0;
}

void AddListenFlags(CLI::App* cmd, std::string& host, int& port, size_t& workers) {
  cmd->add_option("--host", host, "address to listen on")->capture_default_str();
  cmd->add_option("--port", port, "port (0 = any free port)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--workers", workers, "handler threads")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
}

void AddDemoFlags(CLI::App* cmd, std::string& dtx, std::string& data_dir, int& wait_s,
                  const char* wait_help) {
  cmd->add_option("--dtx", dtx, "coordinator API URL, e.g. http://127.0.0.1:36789/api/dtmsvr")
      ->required();
  cmd->add_option("--data-dir", data_dir,
                  "directory of the services' databases (default: a new /tmp directory)");
  cmd->add_option("--wait", wait_s, wait_help)->check(CLI::Range(1, 3600))->capture_default_str();
}

}  // namespace dtx_examples
