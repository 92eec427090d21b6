// `dtx server`: the coordinator process. Options follow DESIGN.md's command-line contract; a
// --config file (TOML/INI, same names) and DTX_* environment variables may supply them too
// (precedence: command line > environment > config file > default).
#pragma once

#include <CLI/CLI.hpp>

#include "util/status.h"

namespace dtx::tools {

// Adds the `server` subcommand to `app`; `run` is set to the function that runs it.
void AddServerCommand(CLI::App& app);

// Applies `--config FILE` (found in argv) as the defaults of the server's options, before parsing,
// so that the environment and the command line override it. Lines are `name = value` with the flag
// names (`retry-interval = 0.5`); '#' comments and [section] lines are ignored; an unknown name or
// a malformed line is an error.
Status LoadConfigFile(CLI::App& app, int argc, char** argv);

}  // namespace dtx::tools
