#!/usr/bin/env bash
# Runs the TCC payment demo end to end: a PostgreSQL for the member service (DTX_TEST_PG_URL, or a
# private cluster started here with scripts/pg-cluster.sh and stopped at exit), `dtx server` on a
# free port with a temporary SQLite store, then `tcc-payment-example demo` against both (it starts
# the three services), then stops the server with SIGTERM. The exit code is the demo's (0 = the
# expected outcome).
#
# Binaries default to the build tree (BUILD_DIR, default <repo>/build); override with DTX_BIN and
# EXAMPLE_BIN. KEEP_TMP=1 keeps the temporary directory (store, logs, SQLite databases).
# NO_PG=1 runs every service on SQLite (no PostgreSQL needed).
set -uo pipefail
source "$(dirname "$0")/../common/demo_env.sh"

demo_init tcc-payment-example examples/tcc_payment/tcc-payment-example tcc-payment-demo
demo_start_pg "every service on SQLite"
demo_start_dtx 1

args=(demo --dtx "http://127.0.0.1:$port/api/dtmsvr" --data-dir "$tmp/services")
if [[ -n $pg_url ]]; then
  args+=(--pg-url "$pg_url")
fi
# An empty DTX_TEST_PG_URL keeps the demo from picking one up by itself when NO_PG=1.
DTX_TEST_PG_URL= "$example_bin" "${args[@]}"
rc=$?

demo_stop_dtx
exit $rc
