#!/usr/bin/env bash
# Business keys on ONE hot key (docs/saga.md "Business keys", docs/benchmarks.md): starts `dtx
# server` on a fresh SQLite store, runs dtx-bench with every saga on the same business key, then
# reads the call history (trans_branch_attempt) to check that the sagas ran strictly one at a time
# and to measure the idle gap between one saga's last call and the next saga's first call.
# Usage: bench/keys_gaps.sh [BUILD_DIR] [dtx-bench args...]
#   e.g. bench/keys_gaps.sh build --clients 16 --seconds 5
# Prints: sagas, overlaps (must be 0), gap p50/p99/max in ms, and the server's --cron-interval.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}; shift || true
CRON_S=${CRON_S:-1}
DIR=$(mktemp -d /tmp/dtx-keys-bench.XXXXXX)
"$BUILD/tools/dtx/dtx" server --listen 127.0.0.1:0 --store "sqlite:$DIR/dtx.db" --log-level warn \
  --cron-interval "$CRON_S" >"$DIR/server.log" 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 1 100); do grep -qs "ready" "$DIR/server.log" && break; sleep 0.1; done
PORT=$(grep -o 'listening on [0-9.]*:[0-9]*' "$DIR/server.log" | sed 's/.*://')
[ -n "$PORT" ] || { cat "$DIR/server.log"; exit 1; }
"$BUILD/bench/dtx-bench" --server "http://127.0.0.1:$PORT/api/dtmsvr" --server-pid "$PID" \
  --business-keys 1 "$@"
kill -TERM $PID; wait $PID 2>/dev/null || true
# One row per saga: its first call's start and its last call's end (ms), in the order they ran.
# call_time is when the answer came (core::CallAttempt::time_ms): the call started latency_ms
# before it.
sqlite3 -readonly "$DIR/dtx.db" \
  "SELECT gid, min(call_time - latency_ms), max(call_time) FROM trans_branch_attempt
   GROUP BY gid ORDER BY min(call_time - latency_ms)" | python3 -c '
import sys
rows = [l.strip().split("|") for l in sys.stdin if l.strip()]
spans = [(g, int(a), int(b)) for g, a, b in rows]
overlaps = sum(1 for p, n in zip(spans, spans[1:]) if n[1] < p[2])
gaps = sorted(n[1] - p[2] for p, n in zip(spans, spans[1:]))
def q(f):
    return gaps[min(len(gaps) - 1, int(f * len(gaps)))] if gaps else 0
print(f"hot key: {len(spans)} sagas, {overlaps} overlaps, idle gap between sagas "
      f"p50 {q(0.5)} ms, p99 {q(0.99)} ms, max {gaps[-1] if gaps else 0} ms "
      f"(cron interval '"$CRON_S"' s)")
'
