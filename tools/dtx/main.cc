// The one dtx binary: `dtx server` (the coordinator), `dtx relay` (the outbox relay), and the
// operator's `dtx tx ...` / `dtx audit` over the admin API (docs/operations.md).
#include <CLI/CLI.hpp>
#include <cstdio>

#include "api/routes.h"
#include "tools/dtx/notify_command.h"
#include "tools/dtx/relay_command.h"
#include "tools/dtx/saga_command.h"
#include "tools/dtx/server_command.h"
#include "tools/dtx/tx_command.h"

int main(int argc, char** argv) {
  CLI::App app{"dtx: distributed transaction coordinator (DTM-compatible)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(dtx::api::kVersion) + " (DTM API " +
                                        dtx::api::kDtmCompatVersion + ")");
  dtx::tools::AddServerCommand(app);
  dtx::tools::AddRelayCommand(app);
  dtx::tools::AddSagaCommand(app);
  dtx::tools::AddTxCommands(app);
  dtx::tools::AddNotifyCommands(app);
  if (dtx::Status s = dtx::tools::LoadConfigFile(app, argc, argv); !s.ok()) {
    std::fprintf(stderr, "dtx: %s\n", s.message().c_str());
    return 2;
  }
  CLI11_PARSE(app, argc, argv);
  return 0;
}
