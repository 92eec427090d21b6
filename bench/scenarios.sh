#!/usr/bin/env bash
# Runs every benchmark scenario of issue 6 and prints one markdown table (plus the bars) to stdout;
# progress goes to stderr. Each measurement is repeated REPS times (fresh server, fresh store) and
# the best run is kept (highest throughput; lowest p99 for paced runs; shortest time for recovery).
#
# Usage: bench/scenarios.sh BUILD_DIR
# Environment (defaults in brackets):
#   REPS [3]  SECS [8] seconds per saga run   PG [1] 0 skips PostgreSQL
#   PREFILL [1000000] finished sagas stored   UNFINISHED [100000] sagas left at kill -9
#   PREFILL_REPS [5] interleaved empty/full pairs; the two are compared by their medians
#   RSS_N [20000] sagas before the first RSS reading (then 9 × RSS_N more)
#   QUIET_WAIT [60] seconds to wait, before each run, for other processes to leave the CPUs
#   ONLY [all] a comma list of: baseline,sqlite,paced,prefill,recovery,rss,pg
#   DTX_COMMIT  the commit BUILD_DIR was built from, for the header (default: this checkout's HEAD)
#
# Needs: the dtx, dtx-bench, dtx-echo-bench and dtx-store-bench binaries of BUILD_DIR, sqlite3, jq,
# and for PostgreSQL scripts/pg-cluster.sh (a private cluster, stopped at exit).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=$(cd "${1:?usage: bench/scenarios.sh BUILD_DIR}" && pwd)
REPS=${REPS:-3}
SECS=${SECS:-8}
PG=${PG:-1}
PREFILL=${PREFILL:-1000000}
PREFILL_REPS=${PREFILL_REPS:-5}
UNFINISHED=${UNFINISHED:-100000}
RSS_N=${RSS_N:-20000}
QUIET_WAIT=${QUIET_WAIT:-60}
ONLY=${ONLY:-all}
DTX=$BUILD/tools/dtx/dtx
BENCH=$BUILD/bench/dtx-bench
for b in "$DTX" "$BENCH" "$BUILD/bench/dtx-echo-bench" "$BUILD/bench/dtx-store-bench"; do
  [ -x "$b" ] || { echo "scenarios: $b missing (ninja -C $BUILD dtx dtx-bench ...)" >&2; exit 1; }
done
command -v jq >/dev/null && command -v sqlite3 >/dev/null || { echo "scenarios: needs jq and sqlite3" >&2; exit 1; }

WORK=$(mktemp -d /tmp/dtx-scenarios.XXXXXX)
chmod 755 "$WORK"  # the PostgreSQL cluster's user must reach its data directory
PIDS=()
PG_DIR=""
LOG_DIR=${LOG_DIR:-/tmp/dtx-scenarios-logs}
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  # Keep the logs (servers, load generator, PostgreSQL) for a look at any failed run.
  rm -rf "$LOG_DIR" && mkdir -p "$LOG_DIR" && cp "$WORK"/*.log "$LOG_DIR"/ 2>/dev/null || true
  [ -n "$PG_DIR" ] && cp "$PG_DIR/server.log" "$LOG_DIR/postgres.log" 2>/dev/null || true
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "$PG_DIR" ] && "$ROOT/scripts/pg-cluster.sh" stop "$PG_DIR" || true
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { echo "[$(date +%T)] $*" >&2; }
elapsed_since() { awk -v t0="$1" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.2f", t1 - t0 }'; }
want() { [ "$ONLY" = all ] || [[ ",$ONLY," == *",$1,"* ]]; }
forget_pid() {
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" != "$1" ] && keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# Waits (at most QUIET_WAIT s) until the machine is idle: under 0.3 cores busy over one second.
busy_cores() {
  local a b
  a=($(head -1 /proc/stat))
  sleep 1
  b=($(head -1 /proc/stat))
  local busy=$(((b[1] + b[2] + b[3] + b[6] + b[7] + b[8]) - (a[1] + a[2] + a[3] + a[6] + a[7] + a[8])))
  echo $((busy * 100 / $(getconf CLK_TCK)))  # hundredths of a core
}
wait_quiet() {
  local deadline=$((SECONDS + QUIET_WAIT)) b
  while :; do
    b=$(busy_cores)
    [ "$b" -lt 30 ] && return 0
    [ $SECONDS -ge $deadline ] && { log "  (machine still busy: $b% of a core; measuring anyway)"; return 0; }
  done
}

# start_server STORE_SPEC [extra dtx server flags...] -> sets SRV_PID, SRV_URL
SRV_N=0
start_server() {
  local spec=$1; shift
  SRV_N=$((SRV_N + 1))
  local lg=$WORK/server-$SRV_N.log
  "$DTX" server --listen 127.0.0.1:0 --store "$spec" --log-level warn "$@" >"$lg" 2>&1 &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  for _ in $(seq 1 300); do grep -qs "ready" "$lg" && break; sleep 0.1; done
  local port
  port=$(grep -o 'listening on [0-9.]*:[0-9]*' "$lg" | sed 's/.*://')
  [ -n "$port" ] || { cat "$lg" >&2; exit 1; }
  SRV_URL="http://127.0.0.1:$port/api/dtmsvr"
}
stop_server() {
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  forget_pid "$1"
}

# bench ARGS... -> one JSON line (dtx-bench --json), the report to the log
bench() { "$BENCH" --json "$@" 2>>"$WORK/bench.log"; }

# Results: one JSON object per table row, in $WORK/rows.jsonl.
row() { echo "$1" >>"$WORK/rows.jsonl"; }
best_by() {  # best_by KEY max|min < JSON lines -> the best line
  if [ "$2" = max ]; then jq -cs "max_by(.$1)"; else jq -cs "min_by(.$1)"; fi
}

PG_URL=""
STORE_PIDS=""
pg_start() {
  PG_DIR=$WORK/pg
  PG_URL=$("$ROOT/scripts/pg-cluster.sh" start "$PG_DIR")  # picks a free port
  log "PostgreSQL cluster at $PG_URL"
}
pg_store_pids() {  # the postmaster and its children (backends, WAL writer, ...), comma-separated
  local pm
  pm=$(head -1 "$PG_DIR/postmaster.pid")
  echo "$pm,$(pgrep -d, -P "$pm")"
}
pg_drop() { psql -q "$PG_URL" -c "SET client_min_messages TO warning; DROP SCHEMA IF EXISTS $1 CASCADE" >/dev/null; }

SCHEMA_N=0
# saga_run STORE CLIENTS FAIL COORDINATORS [dtx-bench args...] -> the best-of-REPS JSON in RESULT
# STORE: sqlite (fresh file per run) | postgres (fresh schema per run). Not run in $(...): it
# starts servers, which the EXIT trap of this shell must know about.
RESULT=""
saga_run() {
  local store=$1 clients=$2 fail=$3 coords=$4
  shift 4
  local out=$WORK/runs.jsonl r i
  : >"$out"
  for r in $(seq 1 "$REPS"); do
    local spec pids=() urls=()
    if [ "$store" = sqlite ]; then
      spec="sqlite:$WORK/s-$r-$RANDOM/dtx.db"
    else
      SCHEMA_N=$((SCHEMA_N + 1))
      spec="$PG_URL?schema=bench_$SCHEMA_N"
    fi
    for i in $(seq 1 "$coords"); do
      start_server "$spec"
      pids+=("$SRV_PID")
      urls+=("$SRV_URL")
    done
    local extra=()
    [ "$store" = postgres ] && extra=(--store-pid "$(pg_store_pids)")
    wait_quiet
    bench --servers "$(IFS=,; echo "${urls[*]}")" --server-pid "$(IFS=,; echo "${pids[*]}")" \
      --clients "$clients" --fail-ratio "$fail" --seconds "$SECS" "${extra[@]}" "$@" >>"$out" ||
      log "  run $r: errors (logs kept in $LOG_DIR at exit: bench.log, server-N.log)"
    for i in "${pids[@]}"; do
      kill -0 "$i" 2>/dev/null || log "  run $r: server $i exited during the run (server logs kept in $LOG_DIR)"
      stop_server "$i"
    done
    if [ "$store" = sqlite ]; then rm -rf "${spec#sqlite:}" "$(dirname "${spec#sqlite:}")"; else pg_drop "bench_$SCHEMA_N"; fi
    log "  $store c=$clients fail=$fail coords=$coords run $r: $(tail -1 "$out" | jq -r '"\(.sagas_per_s|floor)/s p99 \(.p99_ms)ms cpu \(.server_cpu_us_per_saga)us"')"
  done
  # The best run, plus how many of the REPS runs had errors (shown next to its error count).
  RESULT=$(best_by "${BEST_KEY:-sagas_per_s}" "${BEST_DIR:-max}" <"$out" |
    jq -c --argjson bad "$(jq -s '[.[] | select(.errors > 0)] | length' <"$out")" --argjson reps "$REPS" \
      '. + {runs_with_errors: $bad, reps: $reps}')
}

saga_row() {  # saga_row SCENARIO STORE JSON
  row "$(jq -c --arg s "$1" --arg st "$2" '. + {scenario:$s, store:$st, kind:"saga"}' <<<"$3")"
}

# ---------------------------------------------------------------------------------------- baselines
if want baseline; then
  log "baselines: HTTP echo (1 server thread), fsync, store commit rate"
  for mode in raw client; do
    : >"$WORK/e.jsonl"
    for r in $(seq 1 "$REPS"); do
      wait_quiet
      "$BUILD/bench/dtx-echo-bench" --mode "$mode" --connections 32 --seconds 3 --json >>"$WORK/e.jsonl"
    done
    row "$(best_by requests_per_s max <"$WORK/e.jsonl" | jq -c '. + {kind:"echo"}')"
  done
  : >"$WORK/f.jsonl"
  for r in $(seq 1 "$REPS"); do
    wait_quiet
    "$BUILD/bench/dtx-store-bench" --fsync "$WORK/fsync.bin" --seconds 2 --json >>"$WORK/f.jsonl"
  done
  row "$(best_by fsync_p50_us min <"$WORK/f.jsonl" | jq -c '. + {kind:"fsync"}')"
  for workload in create saga; do
    : >"$WORK/st.jsonl"
    for r in $(seq 1 "$REPS"); do
      wait_quiet
      "$BUILD/bench/dtx-store-bench" --store "sqlite:$WORK/sb-$r/dtx.db" --workload $workload \
        --writers 64 --seconds 3 --json 2>>"$WORK/bench.log" >>"$WORK/st.jsonl"
      rm -rf "$WORK/sb-$r"
    done
    row "$(best_by items_per_s max <"$WORK/st.jsonl" | jq -c '. + {kind:"store"}')"
  done
fi

# ------------------------------------------------------------------------------------------- SQLite
MAX64=0
if want sqlite; then
  for clients in 1 8 64; do
    for fail in 0 0.1; do
      log "sqlite: $clients clients, rollback $fail"
      saga_run sqlite "$clients" "$fail" 1
      saga_row "empty store" sqlite "$RESULT"
      if [ "$clients" = 64 ] && [ "$fail" = 0 ]; then MAX64=$(jq -r '.sagas_per_s|floor' <<<"$RESULT"); fi
    done
  done
  log "sqlite: 64 clients, random gids (client-side UUIDs)"
  saga_run sqlite 64 0 1 --gids random
  saga_row "empty store, random gids" sqlite "$RESULT"
fi

if want paced; then
  if [ "$MAX64" = 0 ]; then MAX64=${MAX64_SQLITE:-5000}; fi
  log "sqlite: 64 clients paced at $((MAX64 / 2))/s (half of $MAX64/s)"
  BEST_KEY=p99_ms BEST_DIR=min saga_run sqlite 64 0 1 --rate $((MAX64 / 2))
  saga_row "paced at half of max" sqlite "$RESULT"
fi

# ------------------------------------------------------------------- (a) 1M finished sagas stored
if want prefill; then
  log "sqlite: prefilling $PREFILL finished sagas"
  t0=$(date +%s.%N)
  bench/prefill.sh "$BUILD" "$WORK/prefill/dtx.db" "$PREFILL" finished
  sync
  log "  prefill took $(elapsed_since "$t0") s, $(du -h "$WORK/prefill/dtx.db" | cut -f1)"
  : >"$WORK/pf-empty.jsonl"
  : >"$WORK/pf-full.jsonl"
  for r in $(seq 1 "$PREFILL_REPS"); do  # interleaved, so both see the same machine
    for which in empty full; do
      if [ $which = empty ]; then db=$WORK/pfe-$r/dtx.db; else db=$WORK/prefill/dtx.db; fi
      start_server "sqlite:$db"
      wait_quiet
      bench --server "$SRV_URL" --server-pid "$SRV_PID" --clients 64 --seconds "$SECS" >>"$WORK/pf-$which.jsonl" || true
      stop_server "$SRV_PID"
      log "  $which run $r: $(tail -1 "$WORK/pf-$which.jsonl" | jq -r '.sagas_per_s|floor')/s"
    done
    rm -rf "$WORK/pfe-$r"
  done
  # Run-to-run noise on this VM (±10 %) is as large as the effect looked for: the rows are the
  # median runs of PREFILL_REPS interleaved pairs, not the best ones.
  median_by() { jq -cs "sort_by(.$1) | .[(length - 1) / 2 | floor]"; }
  saga_row "empty store (median of $PREFILL_REPS, interleaved with the next)" sqlite "$(median_by sagas_per_s <"$WORK/pf-empty.jsonl")"
  saga_row "$((PREFILL / 1000))k finished sagas stored (median of $PREFILL_REPS)" sqlite "$(median_by sagas_per_s <"$WORK/pf-full.jsonl")"
  rm -rf "$WORK/prefill"
fi

# ------------------------------------------------------------ (b) unfinished sagas at kill -9
# Count of unfinished rows (a reader beside the running server; WAL readers do not block it).
unfinished() { sqlite3 -cmd ".timeout 5000" "$1" "select count(*) from trans_global where status not in ('succeed','failed')"; }
# Waits until no unfinished row is left; prints the seconds since $2 (date +%s.%N), or "timeout".
wait_all_final() {
  local db=$1 t0=$2 limit=$3
  while :; do
    if [ "$(unfinished "$db")" = 0 ]; then elapsed_since "$t0"; return; fi
    if [ "$(elapsed_since "$t0" | cut -d. -f1)" -ge "$limit" ]; then echo timeout; return; fi
    sleep 0.2
  done
}
if want recovery; then
  PPORT=$((40000 + RANDOM % 10000))
  "$BENCH" --participant-only "$PPORT" >"$WORK/participant.log" 2>&1 &
  PPID_=$!
  PIDS+=("$PPID_")
  for _ in $(seq 1 50); do grep -qs ready "$WORK/participant.log" && break; sleep 0.1; done
  : >"$WORK/rec.jsonl"
  for r in $(seq 1 "$REPS"); do
    db=$WORK/rec-$r/dtx.db
    bench/prefill.sh "$BUILD" "$db" "$UNFINISHED" submitted "http://127.0.0.1:$PPORT/busi"
    sync
    wait_quiet
    t0=$(date +%s.%N)
    start_server "sqlite:$db"
    cpu0=$(awk '{print $14 + $15}' "/proc/$SRV_PID/stat")
    took=$(wait_all_final "$db" "$t0" 300)
    cpu=$(awk -v c0="$cpu0" -v t="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15 - c0) / t}' "/proc/$SRV_PID/stat")
    rss=$(awk '/VmHWM/ {print $2}' "/proc/$SRV_PID/status")
    stop_server "$SRV_PID"
    failed=$(sqlite3 "$db" "select count(*) from trans_global where status <> 'succeed'")
    log "  resume of $UNFINISHED due sagas, run $r: ${took} s, server ${cpu} CPU-s, peak RSS ${rss} KiB, $failed not succeed"
    [ "$took" != timeout ] && echo "{\"seconds\":$took,\"cpu_s\":$cpu,\"peak_rss_kib\":$rss,\"not_succeed\":$failed}" >>"$WORK/rec.jsonl"
    rm -rf "$WORK/rec-$r"
  done
  if [ -s "$WORK/rec.jsonl" ]; then
    row "$(best_by seconds min <"$WORK/rec.jsonl" | jq -c --argjson n "$UNFINISHED" '. + {kind:"recovery", variant:"due", n:$n}')"
  else
    row "{\"kind\":\"recovery\",\"variant\":\"due\",\"n\":$UNFINISHED,\"seconds\":\"timeout\"}"
  fi
  # A real kill -9 in the middle of the recovery: the rows claimed by the killed process carry its
  # lease (next_cron_time = claim time + retry interval, 10 s), so the next process waits for it.
  db=$WORK/kill/dtx.db
  bench/prefill.sh "$BUILD" "$db" "$UNFINISHED" submitted "http://127.0.0.1:$PPORT/busi"
  sync
  wait_quiet
  t0=$(date +%s.%N)
  start_server "sqlite:$db"
  sleep 3
  kill -9 "$SRV_PID"
  wait "$SRV_PID" 2>/dev/null || true
  forget_pid "$SRV_PID"
  left=$(unfinished "$db")
  t1=$(date +%s.%N)
  start_server "sqlite:$db"
  took=$(wait_all_final "$db" "$t1" 300)
  stop_server "$SRV_PID"
  log "  kill -9 after 3 s: $left left, resumed in $took s"
  row "{\"kind\":\"recovery\",\"variant\":\"kill9\",\"n\":$UNFINISHED,\"left\":$left,\"seconds\":\"$took\"}"
  rm -rf "$WORK/kill"
  kill -TERM "$PPID_" 2>/dev/null || true
  wait "$PPID_" 2>/dev/null || true
  forget_pid "$PPID_"
fi

# ---------------------------------------------------------------- (c) RSS vs finished sagas
if want rss; then
  log "sqlite: RSS after $RSS_N and $((10 * RSS_N)) sagas (64 clients)"
  start_server "sqlite:$WORK/rss/dtx.db"
  wait_quiet
  a=$(bench --server "$SRV_URL" --server-pid "$SRV_PID" --clients 64 --count "$RSS_N")
  b=$(bench --server "$SRV_URL" --server-pid "$SRV_PID" --clients 64 --count $((9 * RSS_N)))
  stop_server "$SRV_PID"
  row "$(jq -cn --argjson a "$a" --argjson b "$b" --argjson n "$RSS_N" \
    '{kind:"rss", n:$n, rss_a:$a.server_rss_kib, hwm_a:$a.server_peak_rss_kib, rss_b:$b.server_rss_kib, hwm_b:$b.server_peak_rss_kib, errors:($a.errors + $b.errors)}')"
  rm -rf "$WORK/rss"
fi

# --------------------------------------------------------------------------------------- PostgreSQL
if [ "$PG" = 1 ] && want pg; then
  pg_start
  if want baseline; then
    for workload in create saga; do
      : >"$WORK/st.jsonl"
      for r in $(seq 1 "$REPS"); do
        SCHEMA_N=$((SCHEMA_N + 1))
        wait_quiet
        "$BUILD/bench/dtx-store-bench" --store "$PG_URL?schema=bench_$SCHEMA_N" --workload $workload \
          --store-parent "$(head -1 "$PG_DIR/postmaster.pid")" --writers 64 --seconds 3 --json 2>>"$WORK/bench.log" >>"$WORK/st.jsonl"
        pg_drop "bench_$SCHEMA_N"
      done
      row "$(best_by items_per_s max <"$WORK/st.jsonl" | jq -c '. + {kind:"store"}')"
    done
  fi
  PGMAX64=0
  for clients in 1 8 64; do
    for fail in 0 0.1; do
      log "postgres: $clients clients, rollback $fail"
      saga_run postgres "$clients" "$fail" 1
      saga_row "1 coordinator" postgres "$RESULT"
      if [ "$clients" = 64 ] && [ "$fail" = 0 ]; then PGMAX64=$(jq -r '.sagas_per_s|floor' <<<"$RESULT"); fi
    done
  done
  log "postgres: 64 clients, random gids (client-side UUIDs)"
  saga_run postgres 64 0 1 --gids random
  saga_row "1 coordinator, random gids" postgres "$RESULT"
  for fail in 0 0.1; do
    log "postgres: 3 coordinators, 64 clients, rollback $fail"
    saga_run postgres 64 "$fail" 3
    saga_row "3 coordinators, one store" postgres "$RESULT"
  done
  if [ "$PGMAX64" != 0 ]; then
    log "postgres: 64 clients paced at $((PGMAX64 / 2))/s"
    BEST_KEY=p99_ms BEST_DIR=min saga_run postgres 64 0 1 --rate $((PGMAX64 / 2))
    saga_row "paced at half of max" postgres "$RESULT"
  fi
fi

# ------------------------------------------------------------------------------------------ report
ROWS=$WORK/rows.jsonl
touch "$ROWS"
if [ -n "${DTX_COMMIT:-}" ]; then
  commit=$DTX_COMMIT  # what BUILD_DIR was built from, when not this checkout
else
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
  git diff --quiet HEAD -- src tools 2>/dev/null || commit="$commit+local changes"
fi
echo "### dtx benchmark scenarios — $(date -u +%Y-%m-%d), commit $commit"
echo
echo "$(nproc) × $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(free -g | awk '/Mem:/ {print $2}') GiB," \
  "$(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r). 2-step sagas, wait_result," \
  "${SECS} s runs, best of $REPS (fresh server and store each). Noise = CPU used by other processes" \
  "during the best run (cores). Gids are ascending (as from newGid) unless the row says random gids" \
  "(22 random characters, like client-side UUIDs)."
echo
echo "| Scenario | Store | Clients | Rollback | Throughput | p50 ms | p90 ms | p99 ms | max ms | Coordinator CPU/saga | Store CPU/saga | Disk writes/saga | Peak RSS | Errors | Noise |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
jq -r '
  def n0: (. * 1 | floor | tostring | if length > 3 then .[0:length-3] + "," + .[length-3:] else . end);
  def ms: (. * 100 | round / 100 | tostring);
  def mib: ((. / 1024 * 10 | round) / 10 | tostring) + " MiB";
  def row: "| " + (map(tostring) | join(" | ")) + " |";
  if .kind == "echo" then
    ["HTTP echo, 1 server thread, " + (if .mode == "raw" then "raw keep-alive load" else "load from dtx::http::Client" end),
     "—", "\(.connections) conn", "—", "\(.requests_per_s | n0) req/s", "", "", "", "",
     "server \(.server_cpu_us) µs/req, \(if .mode == "raw" then "raw load" else "client" end) \(.load_cpu_us) µs/req",
     "", "", "", "", ""] | row
  elif .kind == "fsync" then
    ["fsync (pwrite 4 KiB + fdatasync)", "disk", "1", "—", "p50 \(.fsync_p50_us) µs, p99 \(.fsync_p99_us) µs",
     "", "", "", "", "", "", "", "", "", ""] | row
  elif .kind == "store" then
    ["store alone, " + (if .workload == "saga" then "2 commits per saga (create + final update)" else "Create (1 global + 4 branch rows)" end),
     .store, "\(.writers) writers", "—",
     "\(.items_per_s | n0) \(if .workload == "saga" then "sagas" else "creates" end)/s (\(.ops_per_commit) ops/commit)",
     "", "", "", "",
     (if .store == "sqlite" then "\(.cpu_us_per_item) µs (the whole store)" else "\(.cpu_us_per_item) µs (client side)" end),
     (if .store == "postgres" then "\(.store_server_cpu_us_per_item) µs" else "" end), "", "", .errors, ""] | row
  elif .kind == "saga" then
    [.scenario + (if .rate > 0 then " (\(.rate | n0)/s)" else "" end),
     .store + (if .servers > 1 then " ×\(.servers) coordinators" else "" end),
     .clients, "\(.fail_ratio * 100 | round)%", "**\(.sagas_per_s | n0)** sagas/s",
     (.p50_ms | ms), (.p90_ms | ms), (.p99_ms | ms), (.max_ms | ms),
     "\(.server_cpu_us_per_saga | round) µs",
     (if .store == "postgres" then "\(.store_cpu_us_per_saga | round) µs" else "(in process)" end),
     (if .store == "postgres" then "(in PostgreSQL)" elif (.server_disk_kib_per_saga // -1) >= 0 then "\(.server_disk_kib_per_saga * 10 | round / 10) KiB" else "" end),
     (.server_peak_rss_kib | mib),
     "\(.errors)" + (if (.runs_with_errors // 0) > 0 then " (\(.runs_with_errors) of \(.reps) runs had errors)" else "" end),
     (.other_cpu_s / .seconds * 100 | round / 100)] | row
  elif .kind == "recovery" and .variant == "due" then
    ["\(.n / 1000 | floor)k unfinished (submitted, due) sagas at start", "sqlite", "—", "0%",
     "all final in **\(.seconds) s**", "", "", "", "",
     (if .cpu_s then "\(.cpu_s) CPU-s (\(.cpu_s * 1e6 / .n | round) µs/saga)" else "" end),
     "", "", (if .peak_rss_kib then (.peak_rss_kib | mib) else "" end),
     (if .not_succeed != null then "\(.not_succeed) not succeed" else "" end), ""] | row
  elif .kind == "recovery" then
    ["kill -9 3 s into that recovery, restart", "sqlite", "—", "0%",
     "\(.left) left, all final in **\(.seconds) s** after restart", "", "", "", "", "", "", "", "", "", ""] | row
  elif .kind == "rss" then
    ["RSS after \(.n | n0) vs \(.n * 10 | n0) sagas (one server)", "sqlite", "64", "0%",
     "RSS \(.rss_a | mib) → \(.rss_b | mib); peak \(.hwm_a | mib) → \(.hwm_b | mib)",
     "", "", "", "", "", "", "", "", .errors, ""] | row
  else empty end' "$ROWS"

# The bars of issue 6, from the rows above.
echo
echo "| Bar (issue 6) | Measured | Met |"
echo "|---|---|---|"
jq -rs '
  def r0: (. | round | tostring);
  def yes(c): if c then "yes" else "**no**" end;
  (map(select(.kind == "saga" and .store == "sqlite" and .clients == 64 and .fail_ratio == 0 and .rate == 0 and .scenario == "empty store")) | first) as $s64 |
  (map(select(.kind == "saga" and .store == "sqlite" and .scenario == "empty store, random gids")) | first) as $s64r |
  (map(select(.kind == "saga" and .store == "postgres" and .clients == 64 and .fail_ratio == 0 and .rate == 0 and .servers == 1 and .gids != "random")) | first) as $p64 |
  (map(select(.kind == "saga" and .store == "postgres" and .gids == "random")) | first) as $p64r |
  (map(select(.kind == "saga" and .store == "sqlite" and .rate > 0)) | first) as $paced |
  (map(select(.kind == "saga" and (.scenario | test("interleaved with the next")))) | first) as $pe |
  (map(select(.kind == "saga" and (.scenario | test("finished sagas stored")))) | first) as $pf |
  (map(select(.kind == "recovery" and .variant == "due")) | first) as $rec |
  (map(select(.kind == "recovery" and .variant == "kill9")) | first) as $kill |
  (map(select(.kind == "rss")) | first) as $rss |
  (if $s64 then "| Coordinator CPU ≤ 150 µs/saga (SQLite, 64 clients) | \($s64.server_cpu_us_per_saga | r0) µs | \(yes($s64.server_cpu_us_per_saga <= 150)) |" else empty end),
  (if $s64r then "| Coordinator CPU ≤ 150 µs/saga (SQLite, 64 clients, random gids) | \($s64r.server_cpu_us_per_saga | r0) µs | \(yes($s64r.server_cpu_us_per_saga <= 150)) |" else empty end),
  (if $s64 then "| ≥ 5,000 sagas/s, SQLite synchronous=FULL, 64 clients | \($s64.sagas_per_s | r0)/s | \(yes($s64.sagas_per_s >= 5000)) |" else empty end),
  (if $s64r then "| ≥ 5,000 sagas/s, SQLite synchronous=FULL, 64 clients, random gids | \($s64r.sagas_per_s | r0)/s | \(yes($s64r.sagas_per_s >= 5000)) |" else empty end),
  (if $p64 then "| ≥ 3,000 sagas/s, PostgreSQL synchronous commit, 64 clients | \($p64.sagas_per_s | r0)/s | \(yes($p64.sagas_per_s >= 3000)) |" else empty end),
  (if $p64r then "| ≥ 3,000 sagas/s, PostgreSQL synchronous commit, 64 clients, random gids | \($p64r.sagas_per_s | r0)/s | \(yes($p64r.sagas_per_s >= 3000)) |" else empty end),
  (if $paced then "| p99 ≤ 10 ms at half the max throughput (SQLite) | \($paced.p99_ms * 100 | round / 100) ms at \($paced.sagas_per_s | r0)/s | \(yes($paced.p99_ms <= 10)) |" else empty end),
  (if $pe and $pf then "| \($pf.scenario): throughput within 10 % of empty | \($pf.sagas_per_s | r0) vs \($pe.sagas_per_s | r0)/s (\(($pf.sagas_per_s / $pe.sagas_per_s - 1) * 1000 | round / 10) %) | \(yes($pf.sagas_per_s >= 0.9 * $pe.sagas_per_s)) |" else empty end),
  (if $rec then "| \($rec.n) unfinished resumed within 30 s | \($rec.seconds) s (due at start)\(if $kill then "; \($kill.seconds) s after a real kill -9 mid-recovery" else "" end) | \(yes(($rec.seconds | type) == "number" and $rec.seconds <= 30)) |" else empty end),
  (if $rss then "| RSS does not grow with finished sagas | \($rss.rss_a / 1024 * 10 | round / 10) → \($rss.rss_b / 1024 * 10 | round / 10) MiB after \($rss.n) → \($rss.n * 10) sagas | \(yes($rss.rss_b <= 1.1 * $rss.rss_a + 2048)) |" else empty end)
' "$ROWS"
