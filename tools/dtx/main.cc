// The one dtx binary: `dtx server` (the coordinator). More subcommands (tx list/show/retry, demo)
// come with later issues.
#include <CLI/CLI.hpp>

#include "tools/dtx/server_command.h"

int main(int argc, char** argv) {
  CLI::App app{"dtx: distributed transaction coordinator (DTM-compatible)"};
  app.require_subcommand(1);
  dtx::tools::AddServerCommand(app);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
