# Shared start/stop logic of the examples' run_demo.sh scripts; source it, do not run it.
#
#   source "$(dirname "$0")/../common/demo_env.sh"
#   demo_init order-saga-example examples/order_saga/order-saga-example order-saga-demo
#   demo_start_pg "the user service on SQLite"   # optional: sets pg_url (empty when NO_PG=1)
#   demo_start_dtx 1                             # cron interval in seconds; sets port
#   "$example_bin" demo --dtx "http://127.0.0.1:$port/api/dtmsvr" ...
#   rc=$?
#   demo_stop_dtx
#   exit $rc
#
# Binaries default to the build tree (BUILD_DIR, default <repo>/build); override with DTX_BIN and
# EXAMPLE_BIN. KEEP_TMP=1 keeps the temporary directory. At exit (trap) the server is killed if it
# still runs, a private PostgreSQL started here is stopped and the temporary directory removed.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${BUILD_DIR:-$repo/build}
server_pid=
pg_started=0
pg_url=
tmp=
port=

# demo_init TARGET BUILD_RELATIVE_PATH TMP_PREFIX: checks the binaries, makes $tmp, installs the trap.
demo_init() {
  local target=$1 rel=$2 prefix=$3
  dtx_bin=${DTX_BIN:-$build/tools/dtx/dtx}
  example_bin=${EXAMPLE_BIN:-$build/$rel}
  local bin
  for bin in "$dtx_bin" "$example_bin"; do
    if [[ ! -x $bin ]]; then
      echo "run_demo.sh: $bin not found; build it first: ninja -C $build dtx $target" >&2
      exit 2
    fi
  done
  tmp=$(mktemp -d "/tmp/$prefix-XXXXXX")
  trap demo_cleanup EXIT
}

demo_cleanup() {
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

# demo_start_pg NO_PG_WHAT: sets pg_url to DTX_TEST_PG_URL or a private cluster started in $tmp/pg
# (stopped at exit); with NO_PG=1 leaves it empty and says "NO_PG=1, NO_PG_WHAT".
demo_start_pg() {
  # PostgreSQL runs as the `postgres` user when we are root: it must be able to reach its data dir.
  chmod 755 "$tmp"
  if [[ ${NO_PG:-0} == 1 ]]; then
    echo "run_demo.sh: NO_PG=1, $1"
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
}

# demo_start_dtx CRON_INTERVAL: `dtx server` on a free port with a temporary SQLite store and short
# retry and cron intervals (so that retries and redeliveries happen within the demo); sets port.
demo_start_dtx() {
  "$dtx_bin" server --listen 127.0.0.1:0 --store "sqlite:$tmp/dtx.db" --retry-interval 1 \
    --cron-interval "$1" --log-level warn >"$tmp/dtx.out" 2>"$tmp/dtx.log" &
  server_pid=$!
  port=
  local _
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
}

# demo_stop_dtx: SIGTERM to the server; prints its log if it did not exit cleanly.
demo_stop_dtx() {
  kill -TERM "$server_pid"
  if ! wait "$server_pid"; then
    echo "run_demo.sh: dtx server did not exit cleanly; its log:" >&2
    cat "$tmp/dtx.log" >&2
  fi
  server_pid=
}
