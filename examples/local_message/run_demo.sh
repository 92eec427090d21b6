#!/usr/bin/env bash
# Runs the local message table demo end to end: starts `dtx server` on a free port with a temporary
# SQLite store, runs `local-message-example demo` against it (which starts systems A and B), then
# stops the server with SIGTERM. The exit code is the demo's (0 = the expected outcome).
#
# Binaries default to the build tree (BUILD_DIR, default <repo>/build); override with DTX_BIN and
# EXAMPLE_BIN. KEEP_TMP=1 keeps the temporary directory (store, logs, databases).
set -uo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$repo/build}
dtx_bin=${DTX_BIN:-$build/tools/dtx/dtx}
example_bin=${EXAMPLE_BIN:-$build/examples/local_message/local-message-example}
for bin in "$dtx_bin" "$example_bin"; do
  if [[ ! -x $bin ]]; then
    echo "run_demo.sh: $bin not found; build it first: ninja -C $build dtx local-message-example" >&2
    exit 2
  fi
done

tmp=$(mktemp -d /tmp/local-message-demo-XXXXXX)
server_pid=
cleanup() {
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
  fi
  if [[ ${KEEP_TMP:-0} == 1 ]]; then
    echo "run_demo.sh: kept $tmp"
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

# Short retry and cron intervals so that redeliveries (if any) happen within the demo.
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

"$example_bin" demo --dtx "http://127.0.0.1:$port/api/dtmsvr" --data-dir "$tmp/services"
rc=$?

kill -TERM "$server_pid"
if ! wait "$server_pid"; then
  echo "run_demo.sh: dtx server did not exit cleanly; its log:" >&2
  cat "$tmp/dtx.log" >&2
fi
server_pid=
exit $rc
