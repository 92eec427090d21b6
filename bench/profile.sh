#!/usr/bin/env bash
# Profiles `dtx server` (fresh SQLite store) under dtx-bench load: perf record with DWARF call
# graphs on the server only, then bench/perf_breakdown.py prints where its CPU goes (markdown).
#
# Usage: bench/profile.sh BUILD_DIR [SECONDS=8] [CLIENTS=64] [dtx-bench args...]
# Needs perf (linux-perf) and python3; run as root or with kernel.perf_event_paranoid <= 1.
# The recording (perf.data) is kept in $OUT (default /tmp/dtx-profile) for `perf report -i`.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:?usage: bench/profile.sh BUILD_DIR [SECONDS] [CLIENTS]}
SECS=${2:-8}
CLIENTS=${3:-64}
shift $(($# < 3 ? $# : 3))
OUT=${OUT:-/tmp/dtx-profile}
rm -rf "$OUT"
mkdir -p "$OUT"
"$BUILD/tools/dtx/dtx" server --listen 127.0.0.1:0 --store "sqlite:$OUT/db/dtx.db" --log-level warn \
  >"$OUT/server.log" 2>&1 &
SP=$!
trap 'kill -TERM $SP 2>/dev/null; wait $SP 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -qs ready "$OUT/server.log" && break; sleep 0.1; done
PORT=$(grep -o 'listening on [0-9.]*:[0-9]*' "$OUT/server.log" | sed 's/.*://')
[ -n "$PORT" ] || { cat "$OUT/server.log" >&2; exit 1; }
"$BUILD/bench/dtx-bench" --server "http://127.0.0.1:$PORT/api/dtmsvr" --server-pid "$SP" \
  --clients "$CLIENTS" --seconds $((SECS + 4)) "$@" >"$OUT/bench.txt" 2>&1 &
BP=$!
sleep 2  # connections set up, steady state
perf record -q -F 1999 --call-graph dwarf,16384 -p "$SP" -o "$OUT/perf.data" -- sleep "$SECS" \
  2>"$OUT/perf-record.log"
wait $BP || true
cat "$OUT/bench.txt" >&2
echo "(the CPU/saga above is inflated by perf's own sampling overhead)" >&2
perf script -i "$OUT/perf.data" -F tid,ip,sym,dso 2>/dev/null | python3 bench/perf_breakdown.py
