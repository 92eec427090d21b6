#!/usr/bin/env bash
# Runs the XA transfer demo end to end: PostgreSQL (DTX_TEST_PG_URL, or a private cluster started
# here with scripts/pg-cluster.sh, which sets max_prepared_transactions), `dtx server` on a free
# port with a temporary SQLite store, then `xa-transfer-example demo` (it starts both banks and
# kills bank B between prepare and commit), then stops the server. The exit code is the demo's.
#
# Binaries default to the build tree (BUILD_DIR, default <repo>/build); override with DTX_BIN and
# EXAMPLE_BIN. KEEP_TMP=1 keeps the temporary directory.
set -uo pipefail
source "$(dirname "$0")/../common/demo_env.sh"

if [[ ${NO_PG:-0} == 1 ]]; then
  echo "run_demo.sh: XA needs PostgreSQL; NO_PG=1 is not supported" >&2
  exit 2
fi
demo_init xa-transfer-example examples/xa_transfer/xa-transfer-example xa-transfer-demo
demo_start_pg "unused"
demo_start_dtx 0.5
"$example_bin" demo --dtx "http://127.0.0.1:$port/api/dtmsvr" --pg-url "$pg_url"
rc=$?
demo_stop_dtx
exit $rc
