// `dtx server`: the coordinator process. Options follow DESIGN.md's command-line contract; a
// --config file (TOML/INI, same names) and DTX_* environment variables may supply them too
// (precedence: command line > environment > config file > default).
#pragma once

#include <CLI/CLI.hpp>

namespace dtx::tools {

// Adds the `server` subcommand to `app`; `run` is set to the function that runs it.
void AddServerCommand(CLI::App& app);

}  // namespace dtx::tools
