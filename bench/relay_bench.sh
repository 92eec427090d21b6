#!/usr/bin/env bash
# Relay benchmark: PostgreSQL outbox -> `dtx relay` -> a broker, on this machine.
#   bench/relay_bench.sh [ROWS] [BATCH] [WORKERS] [RATE] [SECONDS]
#   defaults:             100000  500     1         5000   20
#   DTX_BENCH_SINK=redis|nats|kafka|amqp (default redis); DTX_BENCH_TX_ROWS rows per pgbench
#   transaction (default 10; 50 reaches 10,000 rows/s with fewer commits); DTX_BENCH_MODE=both
#   (default) | throughput | latency: run only one of the two parts; DTX_BENCH_RELAY_ARGS more
#   `dtx relay` options (e.g. --delete-published: throughput, or latency on redis, see 2.); DTX_BENCH_SETUP_SQL statements
#   run (psql, one statement at a time, so ALTER SYSTEM works) after the table is created, before
#   either part (e.g. per-table autovacuum options, `alter system set autovacuum_naptime`).
# DTX_BENCH_PERF=1 also records the whole machine with perf during the throughput part and prints
# the CPU samples per process name (the relay is `dtx` plus librdkafka's `rdk:*` threads, postgres,
# the broker, everything else) and the relay's main threads per library (needs perf and
# kernel.perf_event_paranoid <= 0, or root).
# Every figure is printed with the machine's 1-minute load average at its start (the machine may
# be shared), and the throughput part with where the relay's wall time went (claim / publish /
# mark, from its `relay time` line at exit).
# 1. Throughput: ROWS pending rows (1000 keys, 200-byte payloads) pre-filled, then one relay drains
#    them; prints events/s and the relay's CPU per event (utime+stime from /proc).
# 2. Latency: pgbench commits TX_ROWS-row transactions at RATE rows/s (RATE/TX_ROWS transactions/s,
#    8 clients) for SECONDS while the relay runs (woken by LISTEN/NOTIFY); commit->published =
#    published_at (the relay's mark, after the broker's acks) - created_at (the inserting
#    transaction's start, before its commit: pgbench's "latency average" minus its "schedule lag",
#    both printed below, is how long such a transaction took, so the figure over-states the
#    relay's part by up to that); prints p50/p99/max and the rate pgbench reached. When the server
#    runs with track_commit_timestamp = on (e.g. a DTX_BENCH_PG_URL cluster after `alter system set
#    track_commit_timestamp = on` and a restart), a second line measures from the inserting
#    transaction's commit (pg_xact_commit_timestamp of its id, kept in a bench-only column), and
#    with the redis sink a third from that commit to the stream entry's time (commit -> in the
#    broker, bench/relay_broker_latency.py: the payload carries the transaction id); that one also
#    works with DTX_BENCH_RELAY_ARGS=--delete-published, which keeps no published_at.
# A private PostgreSQL (scripts/pg-cluster.sh; or DTX_BENCH_PG_URL) and a private broker on free
# ports: redis-server (appendonly yes, appendfsync everysec), nats-server -js (file storage), or
# dtx-kafka-mock (librdkafka's mock cluster: real protocol, data in memory, no disk: a Kafka
# figure here is the relay + librdkafka + protocol, not a Kafka broker's), or rabbitmq-server
# (durable queue, persistent messages, publisher confirms). Stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
rows=${1:-100000}
batch=${2:-500}
workers=${3:-1}
rate=${4:-5000}
seconds=${5:-20}
sink_kind=${DTX_BENCH_SINK:-redis}
mode=${DTX_BENCH_MODE:-both}
case "$mode" in both|throughput|latency) ;; *) echo "relay_bench: DTX_BENCH_MODE must be both, throughput or latency" >&2; exit 2 ;; esac
load() { cut -d' ' -f1 /proc/loadavg; }
relay_args=${DTX_BENCH_RELAY_ARGS:-}
deleting=
case "$relay_args" in *--delete-published*)
  deleting=1
  [ "$mode" = throughput ] || [ "$sink_kind" = redis ] || { echo "relay_bench: --delete-published keeps no published_at: DTX_BENCH_MODE=throughput, or the redis sink (latency to the broker)" >&2; exit 2; } ;;
esac
tx_rows=${DTX_BENCH_TX_ROWS:-10}
dtx=${DTX_BIN:-$root/build/tools/dtx/dtx}
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
work=$(mktemp -d /tmp/dtx-relay-bench.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -- "$p" 2>/dev/null || true; done  # -PGID: a process group
  wait 2>/dev/null || true
  if [ -z "${DTX_BENCH_PG_URL:-}" ]; then "$root/scripts/pg-cluster.sh" stop "$work/pg" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

pg=${DTX_BENCH_PG_URL:-$("$root/scripts/pg-cluster.sh" start "$work/pg")}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
case "$sink_kind" in
  redis)
    redis-server --port "$port" --bind 127.0.0.1 --dir "$work" --save "" --appendonly yes \
      --appendfsync everysec --daemonize no >"$work/broker.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done
    sink="redis://127.0.0.1:$port" ;;
  nats)
    nats-server -js -a 127.0.0.1 -p "$port" -sd "$work/jetstream" >"$work/broker.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do grep -q "Server is ready" "$work/broker.log" && break; sleep 0.05; done
    sink="nats://127.0.0.1:$port" ;;
  kafka)
    "${DTX_KAFKA_MOCK:-$root/build/src/brokers/dtx-kafka-mock}" >"$work/broker.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do grep -q "ready: bootstrap" "$work/broker.log" && break; sleep 0.05; done
    sink="kafka://$(sed -n 's/^dtx-kafka-mock ready: bootstrap //p' "$work/broker.log")" ;;
  amqp)
    # rabbitmq-server with its own node, ports and files; its definitions (loaded at boot) declare
    # the exchange dtx and a durable queue bound to the topic, so that nothing is unroutable.
    python3 - "$work" <<'PY'
import base64, hashlib, json, os, sys
salt = os.urandom(4)
pw = base64.b64encode(salt + hashlib.sha256(salt + b"guest").digest()).decode()
json.dump({"vhosts": [{"name": "/"}],
           "users": [{"name": "guest", "password_hash": pw, "tags": ["administrator"],
                      "hashing_algorithm": "rabbit_password_hashing_sha256"}],
           "permissions": [{"user": "guest", "vhost": "/", "configure": ".*", "write": ".*",
                            "read": ".*"}],
           "exchanges": [{"name": "dtx", "vhost": "/", "type": "topic", "durable": True,
                          "auto_delete": False, "internal": False, "arguments": {}}],
           "queues": [{"name": "dtx.bench", "vhost": "/", "durable": True, "auto_delete": False,
                       "arguments": {}}],
           "bindings": [{"source": "dtx", "vhost": "/", "destination": "dtx.bench",
                         "destination_type": "queue", "routing_key": "orders", "arguments": {}}]},
          open(sys.argv[1] + "/definitions.json", "w"))
PY
    echo "load_definitions = $work/definitions.json" >"$work/rabbitmq.conf"
    dist=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    HOME=$work RABBITMQ_CONF_ENV_FILE=/dev/null RABBITMQ_NODENAME="dtx-bench-$port@localhost" \
      RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$port RABBITMQ_DIST_PORT=$dist \
      RABBITMQ_MNESIA_BASE=$work/mnesia RABBITMQ_LOG_BASE=$work/rlog RABBITMQ_LOGS=- \
      RABBITMQ_ENABLED_PLUGINS_FILE=$work/enabled_plugins RABBITMQ_CONFIG_FILE=$work/rabbitmq \
      RABBITMQ_PID_FILE=$work/rabbitmq.pid setsid /usr/lib/rabbitmq/bin/rabbitmq-server \
      >"$work/broker.log" 2>&1 &
    pids+=(-$!)
    for _ in $(seq 600); do grep -q "Server startup complete" "$work/broker.log" && break; sleep 0.1; done
    sink="amqp://127.0.0.1:$port" ;;
  *) echo "relay_bench: DTX_BENCH_SINK must be redis, nats, kafka or amqp" >&2; exit 2 ;;
esac
echo "relay_bench: sink $sink"
table=bench.outbox
sql() { psql "$pg" -qtAX -v ON_ERROR_STOP=1 -c "$1"; }
sql "drop schema if exists bench cascade; create schema bench"
"$dtx" relay --source "$pg" --table $table --sink "$sink" --init \
  --batch 1 >/dev/null 2>&1 & # creates the table, then is stopped
init_pid=$!
for _ in $(seq 100); do [ "$(sql "select to_regclass('$table') is not null")" = t ] && break; sleep 0.05; done
kill "$init_pid"; wait "$init_pid" 2>/dev/null || true
if [ -n "${DTX_BENCH_SETUP_SQL:-}" ]; then
  printf '%s\n' "$DTX_BENCH_SETUP_SQL" | psql "$pg" -qtAX -v ON_ERROR_STOP=1 -f - >/dev/null
fi

start_relay() {
  "$dtx" relay --source "$pg" --table $table --sink "$sink" \
    --batch "$batch" --workers "$workers" --poll-interval 1 --log-level info $relay_args \
    >"$work/relay.log" 2>&1 &
  relay_pid=$!
  pids+=($relay_pid)
  for _ in $(seq 200); do grep -q "dtx relay ready" "$work/relay.log" && break; sleep 0.05; done
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Waits in one database session until no row is pending (polling with a psql per check cost ~11 %
# of the machine's CPU in a perf profile: a process and a backend each time). The commit in the
# loop releases the block's snapshot: without it the DO kept one backend_xmin for the whole drain
# (pg_stat_activity), so no row marked meanwhile was dead to every snapshot (their index entries
# not killable, their tuples not removable) - the bench must not hold back the relay's cleanup.
# 3 interleaved pairs showed no measurable change in the latency figure (docs/benchmarks.md).
wait_drained() {
  sql "do \$\$ begin while exists (select 1 from $table where state = 0) loop
         commit; perform pg_sleep(0.02); end loop; end \$\$"
}

stop_relay() {
  kill "$relay_pid"
  wait "$relay_pid" 2>/dev/null || true
}

# 1. Throughput.
if [ "$mode" != latency ]; then
sql "insert into $table (topic, msg_key, payload) select 'orders', 'k' || (g % 1000),
     repeat('x', 200) from generate_series(1, $rows) g"
sql "vacuum analyze $table"
load0=$(load)
t0=$(date +%s.%N)
start_relay
if [ -n "${DTX_BENCH_PERF:-}" ]; then
  perf record -a -F 499 -o "$work/perf.data" >"$work/perf.log" 2>&1 &
  perf_pid=$!
fi
wait_drained
t1=$(date +%s.%N)
if [ -n "${DTX_BENCH_PERF:-}" ]; then
  kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
  echo "perf: CPU samples per process during the drain (whole machine, 499 Hz):"
  perf report -i "$work/perf.data" --sort comm --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -12
  echo "perf: the relay's own threads (comm dtx; librdkafka's are rdk:*, above) per library:"
  perf report -i "$work/perf.data" --comms dtx --sort dso --stdio 2>/dev/null |
    grep -E '^ +[0-9]' | head -8
fi
ticks=$(cpu_ticks "$relay_pid")
hz=$(getconf CLK_TCK)
stop_relay
python3 - "$rows" "$t0" "$t1" "$ticks" "$hz" "$batch" "$workers" "$load0" <<'EOF'
import sys
rows, t0, t1, ticks, hz, batch, workers, load0 = sys.argv[1:]
secs = float(t1) - float(t0)
cpu = int(ticks) / int(hz)
print(f"throughput: {rows} rows, batch {batch}, {workers} worker(s): {secs:.2f} s, "
      f"{int(rows)/secs:,.0f} events/s, relay CPU {cpu:.2f} s = {cpu*1e6/int(rows):.1f} us/event, "
      f"load {load0}")
EOF
sed -n 's/.*relay time: /relay time: /p' "$work/relay.log"
sql "delete from $table"
fi
[ "$mode" != throughput ] || exit 0

# 2. Latency at RATE rows/s (a fresh relay, idle until woken by NOTIFY).
# With track_commit_timestamp on (a server setting, needs a restart) each row also records its
# inserting transaction's id, and a second line measures from that transaction's commit time.
# With the redis sink it also carries the id in the payload's first 12 characters, and a third
# line measures commit -> in the broker: the stream entry's id (Redis's clock, ms) minus the
# commit time; the only figure with --delete-published (no published_at).
commit_ts=$(sql "show track_commit_timestamp")
if [ -n "$deleting" ] && [ "$commit_ts" != on ]; then
  echo "relay_bench: latency with --delete-published needs track_commit_timestamp = on" >&2; exit 2
fi
payload="repeat('x', 200)"
if [ "$commit_ts" = on ]; then
  sql "alter table $table add column if not exists bench_xid xid8 default pg_current_xact_id()"
  [ "$sink_kind" != redis ] || payload="lpad(pg_current_xact_id()::text, 12, '0') || repeat('x', 188)"
fi
sql "vacuum analyze $table"
start_relay
load0=$(load)
cat >"$work/insert.sql" <<EOF
insert into $table (topic, msg_key, payload)
  select 'orders', 'k' || (random() * 999)::int, $payload from generate_series(1, $tx_rows);
EOF
"$bindir/pgbench" -n -f "$work/insert.sql" -R $((rate / tx_rows)) -T "$seconds" -c 8 -j 2 "$pg" \
  >"$work/pgbench.log" 2>&1
wait_drained
if [ -z "$deleting" ]; then
sql "select 'latency: ' || count(*) || ' rows at ' || $rate || '/s target: commit->published p50 '
     || round(extract(epoch from percentile_cont(0.5) within group (order by published_at - created_at)) * 1000, 1)
     || ' ms, p99 '
     || round(extract(epoch from percentile_cont(0.99) within group (order by published_at - created_at)) * 1000, 1)
     || ' ms, max '
     || round(extract(epoch from max(published_at - created_at)) * 1000, 1) || ' ms, load $load0'
     from $table where state = 1"
if [ "$commit_ts" = on ]; then
  sql "select 'latency from the commit: p50 '
       || round(extract(epoch from percentile_cont(0.5) within group (order by d)) * 1000, 1)
       || ' ms, p99 ' || round(extract(epoch from percentile_cont(0.99) within group (order by d)) * 1000, 1)
       || ' ms, max ' || round(extract(epoch from max(d)) * 1000, 1) || ' ms'
       from (select published_at - pg_xact_commit_timestamp(xid(bench_xid)) as d
             from $table where state = 1) t"
fi
fi
if [ "$commit_ts" = on ] && [ "$sink_kind" = redis ]; then
  redis-cli -p "$port" --raw xrange orders - + |
    python3 "$root/bench/relay_broker_latency.py" "$pg" "$rate" "$load0"
fi
grep -E "^(tps|latency average|rate limit schedule lag)" "$work/pgbench.log" | sed "s/^/pgbench ($tx_rows rows per transaction): /" || true
stop_relay
sed -n 's/.*relay time: /relay time: /p' "$work/relay.log"
