// What the examples' `serve` and `demo` subcommands share: a participant service that runs until
// SIGTERM/SIGINT with a ready line the demo waits for (see Children::Spawn), and the command-line
// flags every example spells the same way.
//
// Thread-safety: call BlockStopSignals on the main thread before any other thread starts (the
// mask is inherited, so sigwait alone receives the signals). How it fails: ServeUntilStopped
// prints why the server could not start and returns 1.
#pragma once

#include <signal.h>

#include <cstddef>
#include <functional>
#include <string>

#include "dtx/participant.h"

namespace CLI {
class App;
}

namespace dtx_examples {

// Blocks SIGTERM and SIGINT in the calling thread; the set for ServeUntilStopped.
sigset_t BlockStopSignals();

// Starts `server` (which listens on HOST:PORT), runs `on_started` if given (e.g. to learn the
// server's own URL), prints "<ready_prefix>service SERVICE listening on HOST:PORT", waits for a
// signal of `signals`, stops the server and returns 0; 1 (with the reason on stderr) if it could
// not listen.
int ServeUntilStopped(dtx::ParticipantServer& server, const sigset_t& signals,
                      const char* ready_prefix, const std::string& service, const std::string& host,
                      int port, const std::function<void()>& on_started = {});

// `serve`: --host, --port (0 = any free port), --workers (1-256).
void AddListenFlags(CLI::App* cmd, std::string& host, int& port, size_t& workers);
// `demo`: --dtx (required), --data-dir, --wait (1-3600 s; `wait_help` says what is waited for).
void AddDemoFlags(CLI::App* cmd, std::string& dtx, std::string& data_dir, int& wait_s,
                  const char* wait_help);

}  // namespace dtx_examples
