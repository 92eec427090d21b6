#!/usr/bin/env bash
# Relay benchmark: PostgreSQL outbox -> `dtx relay` -> a broker, on this machine.
#   bench/relay_bench.sh [ROWS] [BATCH] [WORKERS] [RATE] [SECONDS]
#   defaults:             100000  500     1         5000   20
#   DTX_BENCH_SINK=redis|nats|kafka|amqp (default redis); DTX_BENCH_TX_ROWS rows per pgbench
#   transaction (default 10; 50 reaches 10,000 rows/s with fewer commits).
# 1. Throughput: ROWS pending rows (1000 keys, 200-byte payloads) pre-filled, then one relay drains
#    them; prints events/s and the relay's CPU per event (utime+stime from /proc).
# 2. Latency: pgbench commits TX_ROWS-row transactions at RATE rows/s (RATE/TX_ROWS transactions/s,
#    8 clients) for SECONDS while the relay runs (woken by LISTEN/NOTIFY); commit->published =
#    published_at - created_at per row (created_at is the transaction's start, a few ms before its
#    commit: the figure slightly over-states the relay's part); prints p50/p99/max and the rate
#    pgbench reached.
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

start_relay() {
  "$dtx" relay --source "$pg" --table $table --sink "$sink" \
    --batch "$batch" --workers "$workers" --poll-interval 1 --log-level warn \
    >"$work/relay.log" 2>&1 &
  relay_pid=$!
  pids+=($relay_pid)
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
pending() { sql "select count(*) from $table where state = 0"; }

# 1. Throughput.
sql "insert into $table (topic, msg_key, payload) select 'orders', 'k' || (g % 1000),
     repeat('x', 200) from generate_series(1, $rows) g"
sql "vacuum analyze $table"
t0=$(date +%s.%N)
start_relay
while [ "$(pending)" != 0 ]; do sleep 0.05; done
t1=$(date +%s.%N)
ticks=$(cpu_ticks "$relay_pid")
hz=$(getconf CLK_TCK)
python3 - "$rows" "$t0" "$t1" "$ticks" "$hz" "$batch" "$workers" <<'EOF'
import sys
rows, t0, t1, ticks, hz, batch, workers = sys.argv[1:]
secs = float(t1) - float(t0)
cpu = int(ticks) / int(hz)
print(f"throughput: {rows} rows, batch {batch}, {workers} worker(s): {secs:.2f} s, "
      f"{int(rows)/secs:,.0f} events/s, relay CPU {cpu:.2f} s = {cpu*1e6/int(rows):.1f} us/event")
EOF

# 2. Latency at RATE rows/s (the relay keeps running, idle, woken by NOTIFY).
sql "delete from $table"
sql "vacuum analyze $table"
cat >"$work/insert.sql" <<EOF
insert into $table (topic, msg_key, payload)
  select 'orders', 'k' || (random() * 999)::int, repeat('x', 200) from generate_series(1, $tx_rows);
EOF
"$bindir/pgbench" -n -f "$work/insert.sql" -R $((rate / tx_rows)) -T "$seconds" -c 8 -j 2 "$pg" \
  >"$work/pgbench.log" 2>&1
while [ "$(pending)" != 0 ]; do sleep 0.05; done
sql "select 'latency: ' || count(*) || ' rows at ' || $rate || '/s target: commit->published p50 '
     || round(extract(epoch from percentile_cont(0.5) within group (order by published_at - created_at)) * 1000, 1)
     || ' ms, p99 '
     || round(extract(epoch from percentile_cont(0.99) within group (order by published_at - created_at)) * 1000, 1)
     || ' ms, max '
     || round(extract(epoch from max(published_at - created_at)) * 1000, 1) || ' ms'
     from $table where state = 1"
grep -E "^tps" "$work/pgbench.log" | sed "s/^/pgbench ($tx_rows rows per transaction): /" || true
