#!/usr/bin/env bash
# Runs the eBay transactional-message demo end to end: a PostgreSQL for the user service
# (DTX_TEST_PG_URL, or a private cluster started here with scripts/pg-cluster.sh and stopped at
# exit), `dtx server` on a free port with a temporary SQLite store, then `msg-ebay-example demo`
# against both (it starts the trade and user services), then stops the server with SIGTERM. The exit
# code is the demo's (0 = the expected outcome).
#
# Binaries default to the build tree (BUILD_DIR, default <repo>/build); override with DTX_BIN and
# EXAMPLE_BIN. KEEP_TMP=1 keeps the temporary directory (store, logs, SQLite databases).
# NO_PG=1 runs the user service on SQLite (no PostgreSQL needed).
set -uo pipefail
source "$(dirname "$0")/../common/demo_env.sh"

demo_init msg-ebay-example examples/msg_ebay/msg-ebay-example msg-ebay-demo
demo_start_pg "the user service on SQLite"
demo_start_dtx 0.5

args=(demo --dtx "http://127.0.0.1:$port/api/dtmsvr" --data-dir "$tmp/services")
if [[ -n $pg_url ]]; then
  args+=(--pg-url "$pg_url")
fi
"$example_bin" "${args[@]}"
rc=$?

demo_stop_dtx
exit $rc
