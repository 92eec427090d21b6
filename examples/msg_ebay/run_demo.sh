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

repo=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$repo/build}
dtx_bin=${DTX_BIN:-$build/tools/dtx/dtx}
example_bin=${EXAMPLE_BIN:-$build/examples/msg_ebay/msg-ebay-example}
for bin in "$dtx_bin" "$example_bin"; do
  if [[ ! -x $bin ]]; then
    echo "run_demo.sh: $bin not found; build it first: ninja -C $build dtx msg-ebay-example" >&2
    exit 2
  fi
done

tmp=$(mktemp -d /tmp/msg-ebay-demo-XXXXXX)
# PostgreSQL runs as the `postgres` user when we are root: it must be able to reach its data dir.
chmod 755 "$tmp"
server_pid=
pg_started=0
cleanup() {
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
  fi
  if [[ $pg_started == 1 ]]; then
    "$repo/scripts/pg-cluster.sh" stop "$tmp/pg" || true
  fi
  if [[ ${KEEP_TMP:-0} == 1 ]]; then
    echo "run_demo.sh: kept $tmp"
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

pg_url=
if [[ ${NO_PG:-0} == 1 ]]; then
  echo "run_demo.sh: NO_PG=1, the user service on SQLite"
elif [[ -n ${DTX_TEST_PG_URL:-} ]]; then
  pg_url=$DTX_TEST_PG_URL
  echo "run_demo.sh: PostgreSQL from DTX_TEST_PG_URL"
else
  if ! pg_url=$("$repo/scripts/pg-cluster.sh" start "$tmp/pg"); then
    echo "run_demo.sh: could not start a private PostgreSQL (scripts/pg-cluster.sh)" >&2
    exit 1
  fi
  pg_started=1
  echo "run_demo.sh: private PostgreSQL at $pg_url"
fi

# Short retry and cron intervals so that redeliveries and check-backs happen within the demo.
"$dtx_bin" server --listen 127.0.0.1:0 --store "sqlite:$tmp/dtx.db" --retry-interval 1 \
  --cron-interval 0.5 --log-level warn >"$tmp/dtx.out" 2>"$tmp/dtx.log" &
server_pid=$!

port=
for _ in $(seq 1 200); do  # up to 20 s for the ready line
  port=$(sed -n 's/^dtx server ready: listening on [^ ]*:\([0-9][0-9]*\),.*/\1/p' "$tmp/dtx.out")
  [[ -n $port ]] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "run_demo.sh: dtx server exited early:" >&2
    cat "$tmp/dtx.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [[ -z $port ]]; then
  echo "run_demo.sh: dtx server printed no ready line within 20 s" >&2
  cat "$tmp/dtx.log" >&2
  exit 1
fi
echo "run_demo.sh: $(cat "$tmp/dtx.out")"

args=(demo --dtx "http://127.0.0.1:$port/api/dtmsvr" --data-dir "$tmp/services")
if [[ -n $pg_url ]]; then
  args+=(--pg-url "$pg_url")
fi
"$example_bin" "${args[@]}"
rc=$?

kill -TERM "$server_pid"
if ! wait "$server_pid"; then
  echo "run_demo.sh: dtx server did not exit cleanly; its log:" >&2
  cat "$tmp/dtx.log" >&2
fi
server_pid=
exit $rc
