#!/usr/bin/env bash
# Best-effort notifications (docs/notifications.md, numbers in docs/benchmarks.md):
#   1. first-attempt delivery: N notifications created by 64 clients (POST /api/dtx/notify, schedule
#      [0], success body "success"), counted when the receiver got each one: notifications/s and
#      coordinator CPU per notification; and the same count of 2-step sagas without wait_result on
#      the same fresh store for comparison;
#   2. parked: P notifications whose first attempt is due in 1 h; after creation, the coordinator's
#      RSS and its CPU over IDLE seconds (the recovery loop runs every --cron-interval, 1 s).
# Usage: bench/notify_bench.sh [BUILD_DIR] [N=20000] [P=100000] [IDLE=30]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
N=${2:-20000}
P=${3:-100000}
IDLE=${4:-30}

echo "== first attempt: $N notifications"
bench/run.sh "$BUILD" --mode notify --count "$N" --clients 64
echo "== the same machine: $N sagas (wait_result false)"
bench/run.sh "$BUILD" --mode saga --wait-result false --count "$N" --clients 64

echo "== parked: $P notifications due in 1 h"
DIR=$(mktemp -d /tmp/dtx-notify-bench.XXXXXX)
"$BUILD/tools/dtx/dtx" server --listen 127.0.0.1:0 --store "sqlite:$DIR/dtx.db" --log-level warn \
  >"$DIR/server.log" 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 1 100); do grep -qs "ready" "$DIR/server.log" && break; sleep 0.1; done
PORT=$(grep -o 'listening on [0-9.]*:[0-9]*' "$DIR/server.log" | sed 's/.*://')
[ -n "$PORT" ] || { cat "$DIR/server.log"; exit 1; }
"$BUILD/bench/dtx-bench" --server "http://127.0.0.1:$PORT/api/dtmsvr" --server-pid "$PID" \
  --mode notify-parked --count "$P" --clients 64 | grep -E "completed|throughput|RSS"
cpu() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }
sleep 2
echo "rss after creating $P parked: $(rss) KiB"
before=$(cpu)
sleep "$IDLE"
after=$(cpu)
ticks=$(getconf CLK_TCK)
echo "idle CPU over ${IDLE} s: $(awk -v a="$after" -v b="$before" -v t="$ticks" -v s="$IDLE" \
  'BEGIN {printf "%.3f CPU-s (%.2f %% of one core)", (a - b) / t, 100 * (a - b) / t / s}')"
echo "rss after idle: $(rss) KiB"
pending=$(curl -s "http://127.0.0.1:$PORT/api/dtx/notify?status=pending&limit=1" | grep -c '"status":"pending"' || true)
echo "pending listed: $pending (expect 1 with limit=1)"
