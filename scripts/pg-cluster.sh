#!/usr/bin/env bash
# A private PostgreSQL cluster for tests, on 127.0.0.1 only; nothing depends on a server started by
# hand. Installs postgresql (via install-deps.sh) if missing.
#   scripts/pg-cluster.sh start DIR [PORT]   -> prints the URL postgres://postgres@127.0.0.1:PORT/dtx_test
#   scripts/pg-cluster.sh stop DIR
# As root the cluster runs as the `postgres` system user (PostgreSQL refuses to run as root).
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?data directory}
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$bindir" ]; then
  "$(dirname "$0")/install-deps.sh" >&2
  bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "$cmd" in
  start)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
      chown postgres:postgres "$dir"
      runuser -u postgres -- test -w "$dir" \
        || { echo "pg-cluster: user postgres cannot reach $dir (make its parents o+x)" >&2; exit 1; }
    fi
    if [ ! -f "$dir/PG_VERSION" ]; then
      as_pg "$bindir/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 >"$dir.initdb.log" 2>&1 \
        || { cat "$dir.initdb.log" >&2; exit 1; }
    fi
    # Without a PORT, pick one below the kernel's ephemeral range (32768+), where outgoing
    # connections cannot hold it, and try another if it is taken anyway.
    # max_prepared_transactions > 0: XA branches are prepared transactions (docs/xa.md).
    for attempt in 1 2 3 4 5; do
      port=${3:-$((20000 + RANDOM % 12000))}
      if as_pg "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k /tmp -c fsync=on -c synchronous_commit=on -c max_connections=300 -c max_prepared_transactions=64" \
        start >/dev/null; then
        break
      fi
      if [ -n "${3:-}" ] || [ "$attempt" = 5 ]; then
        echo "pg-cluster: could not start PostgreSQL on port $port:" >&2
        tail -5 "$dir/server.log" >&2
        exit 1
      fi
      echo "pg-cluster: port $port unavailable, trying another" >&2
    done
    as_pg "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -qAt \
      -c "select 1 from pg_database where datname='dtx_test'" | grep -q 1 \
      || as_pg "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres dtx_test
    echo "postgres://postgres@127.0.0.1:$port/dtx_test"
    ;;
  stop)
    [ -f "$dir/postmaster.pid" ] && as_pg "$bindir/pg_ctl" -D "$dir" -m fast -w stop >/dev/null || true
    ;;
  *) echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2 ;;
esac
