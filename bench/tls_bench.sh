#!/usr/bin/env bash
# The cost of TLS: the same saga load against one `dtx server` on a fresh SQLite store, first over
# plain HTTP (SDK -> coordinator -> participant), then with HTTPS on both hops (--tls-cert/--tls-key
# on the coordinator, an https participant verified with --ca-file). Certificates: a private CA and
# an ECDSA P-256 server certificate for 127.0.0.1, made here with the openssl command line.
# Usage: bench/tls_bench.sh [BUILD_DIR] [dtx-bench args...]  e.g. bench/tls_bench.sh build --seconds 10
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}; shift || true
DIR=$(mktemp -d /tmp/dtx-tls-bench.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT
EC="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $EC -keyout "$DIR/ca.key" -out "$DIR/ca.pem" -days 2 -subj '/CN=bench CA' 2>/dev/null
openssl req $EC -keyout "$DIR/server.key" -out "$DIR/server.csr" -subj '/CN=127.0.0.1' 2>/dev/null
echo "subjectAltName=IP:127.0.0.1" >"$DIR/ext.cnf"
openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" -CAcreateserial \
  -out "$DIR/server.pem" -days 2 -extfile "$DIR/ext.cnf" 2>/dev/null

run() {  # run NAME SCHEME [server flags...] -- [bench flags...]
  local name=$1 scheme=$2; shift 2
  local sflags=() bflags=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do sflags+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  bflags=("$@")
  rm -f "$DIR"/dtx.db*
  "$BUILD/tools/dtx/dtx" server --listen 127.0.0.1:0 --store "sqlite:$DIR/dtx.db" --log-level warn \
    "${sflags[@]}" >"$DIR/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do grep -qs "ready" "$DIR/server.log" && break; sleep 0.1; done
  local port
  port=$(grep -o 'listening on [0-9.]*:[0-9]*' "$DIR/server.log" | sed 's/.*://')
  [ -n "$port" ] || { cat "$DIR/server.log"; exit 1; }
  echo "== $name"
  "$BUILD/bench/dtx-bench" --server "$scheme://127.0.0.1:$port/api/dtmsvr" --server-pid "$PID" \
    "${bflags[@]}" "${BENCH_ARGS[@]}"
  kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; PID=
}
BENCH_ARGS=("$@")
run "http: SDK -> coordinator -> participant" http --
run "https: both hops" https --tls-cert "$DIR/server.pem" --tls-key "$DIR/server.key" \
  --ca-file "$DIR/ca.pem" -- --ca-file "$DIR/ca.pem" \
  --participant-tls-cert "$DIR/server.pem" --participant-tls-key "$DIR/server.key"
