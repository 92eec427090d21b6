// `dtx tx list|show|retry|stop|abort|skip|resolve` and `dtx audit`: the operator's command line
// over the admin API (docs/operations.md). --server URL (DTX_SERVER, default
// http://127.0.0.1:36789) and --token TOKEN (DTX_TOKEN) on every verb; human tables by default,
// --json for scripts. Exit status: 0 done, 1 refused by the server (the reason is printed),
// 2 bad usage or the server unreachable.
#pragma once

#include <CLI/CLI.hpp>

namespace dtx::tools {

void AddTxCommands(CLI::App& app);

}  // namespace dtx::tools
