#!/usr/bin/env bash
# Runs the local message table demo end to end: starts `dtx server` on a free port with a temporary
# SQLite store, runs `local-message-example demo` against it (which starts systems A and B), then
# stops the server with SIGTERM. The exit code is the demo's (0 = the expected outcome).
#
# Binaries default to the build tree (BUILD_DIR, default <repo>/build); override with DTX_BIN and
# EXAMPLE_BIN. KEEP_TMP=1 keeps the temporary directory (store, logs, databases).
set -uo pipefail
source "$(dirname "$0")/../common/demo_env.sh"

demo_init local-message-example examples/local_message/local-message-example local-message-demo
demo_start_dtx 0.5

"$example_bin" demo --dtx "http://127.0.0.1:$port/api/dtmsvr" --data-dir "$tmp/services"
rc=$?

demo_stop_dtx
exit $rc
