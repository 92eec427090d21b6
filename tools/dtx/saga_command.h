// `dtx saga put FILE` / `dtx saga list` (issue 15 item 1): register a saga definition
// (api/saga_defs.h) with a running coordinator and list the registered ones, over its HTTP API.
#pragma once

#include <CLI/CLI.hpp>

namespace dtx::tools {

// Adds the `saga` subcommand (with `put` and `list` under it) to `app`.
void AddSagaCommand(CLI::App& app);

}  // namespace dtx::tools
