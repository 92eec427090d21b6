// `dtx notify list|show|resend`: notifications through the admin API (docs/notifications.md,
// "Operators"). Same options and exit codes as `dtx tx` (tools/dtx/admin_client.h): human tables
// by default, --json for scripts, 1 when the server refuses (the reason is printed).
#pragma once

#include <CLI/CLI.hpp>

namespace dtx::tools {

void AddNotifyCommands(CLI::App& app);

}  // namespace dtx::tools
