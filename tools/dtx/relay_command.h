// `dtx relay`: the outbox relay (src/relay, docs/outbox.md), and `dtx relay requeue|status` for
// parked rows.
#pragma once

#include <CLI/CLI.hpp>

namespace dtx::tools {

// Adds the `relay` subcommand (with `requeue` and `status` under it) to `app`.
void AddRelayCommand(CLI::App& app);

}  // namespace dtx::tools
