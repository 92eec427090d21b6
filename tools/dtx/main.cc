// The one dtx binary: `dtx server` (the coordinator). More subcommands (tx list/show/retry, demo)
// come with later issues.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "tools/dtx/relay_command.h"
#include "tools/dtx/saga_command.h"
#include "tools/dtx/server_command.h"

int main(int argc, char** argv) {
  CLI::App app{"dtx: distributed transaction coordinator (DTM-compatible)"};
  app.require_subcommand(1);
  dtx::tools::AddServerCommand(app);
  dtx::tools::AddRelayCommand(app);
  dtx::tools::AddSagaCommand(app);
  if (dtx::Status s = dtx::tools::LoadConfigFile(app, argc, argv); !s.ok()) {
    std::fprintf(stderr, "dtx: %s\n", s.message().c_str());
    return 2;
  }
  CLI11_PARSE(app, argc, argv);
  return 0;
}
