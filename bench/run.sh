#!/usr/bin/env bash
# Starts `dtx server` on a fresh SQLite store (synchronous=FULL) and runs dtx-bench against it.
# Usage: bench/run.sh [BUILD_DIR] [dtx-bench args...]   e.g. bench/run.sh build --clients 64 --seconds 10
# DTX_SERVER_ARGS: extra `dtx server` flags, split on spaces (e.g. DTX_SERVER_ARGS='--call-history false').
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}; shift || true
DIR=$(mktemp -d /tmp/dtx-bench.XXXXXX)
read -r -a SERVER_ARGS <<<"${DTX_SERVER_ARGS:-}"
"$BUILD/tools/dtx/dtx" server --listen 127.0.0.1:0 --store "sqlite:$DIR/dtx.db" --log-level warn \
  "${SERVER_ARGS[@]}" >"$DIR/server.log" 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 1 100); do grep -qs "ready" "$DIR/server.log" && break; sleep 0.1; done
PORT=$(grep -o 'listening on [0-9.]*:[0-9]*' "$DIR/server.log" | sed 's/.*://')
[ -n "$PORT" ] || { cat "$DIR/server.log"; exit 1; }
"$BUILD/bench/dtx-bench" --server "http://127.0.0.1:$PORT/api/dtmsvr" --server-pid "$PID" "$@"
