#!/usr/bin/env bash
# The consumer test (docs/packaging.md): builds tests/consumer against an installed dtx with
# find_package(dtx) (shared and static) and with pkg-config, and runs each build against a real
# `dtx server` from the same installation on 127.0.0.1 (a free port).
#   run.sh --install BUILD_DIR   cmake --install BUILD_DIR into a temporary prefix first
#   run.sh --prefix PREFIX       use an existing installation (e.g. an unpacked .deb: ROOT/usr)
# DTX_TEST_PG_URL, when set, adds the PostgreSQL barrier checks. Exit 0 when everything passed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source_root=$(cd "$here/../.." && pwd)
usage() { echo "usage: $0 --install BUILD_DIR | --prefix PREFIX" >&2; exit 2; }
[ $# -eq 2 ] || usage
work=$(mktemp -d /tmp/dtx-consumer.XXXXXX)
server_pid=
relay_pid=
redis_pid=
stop_pid() { if [ -n "$1" ]; then kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; fi; }
cleanup() {
  stop_pid "$relay_pid"
  stop_pid "$redis_pid"
  stop_pid "$server_pid"
  rm -rf "$work"
}
trap cleanup EXIT
case "$1" in
  --install) prefix=$work/prefix
             cmake --install "$2" --prefix "$prefix" >"$work/install.log" ;;
  --prefix) prefix=$(cd "$2" && pwd) ;;
  *) usage ;;
esac

step() { echo "consumer: $*"; }
fail() { echo "consumer: FAILED: $*" >&2; exit 1; }

# Nothing of the source tree may be installed or needed.
[ -d "$prefix/include/dtx" ] || fail "no headers in $prefix/include/dtx"
[ ! -e "$prefix/include/util" ] || fail "private headers installed under $prefix/include/util"

step "dtx server from $prefix/bin"
"$prefix/bin/dtx" server --help >/dev/null || fail "dtx server --help"
"$prefix/bin/dtx" server --listen 127.0.0.1:0 --store "sqlite:$work/dtx.db" --retry-interval 0.5 \
  --log-level warn >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
for _ in $(seq 1 150); do
  grep -q '^dtx server ready' "$work/server.out" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.err" >&2; fail "dtx server exited"; }
  sleep 0.1
done
ready=$(grep '^dtx server ready' "$work/server.out") || fail "dtx server not ready in 15 s"
address=$(echo "$ready" | sed -E 's/.*listening on ([^,]+),.*/\1/')
api="http://$address/api/dtmsvr"
step "server at $api"

launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
step "find_package(dtx) build"
cmake -S "$here" -B "$work/cmake" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_FLAGS="-Wall -Wextra -Werror" "${launcher[@]}" >"$work/configure.log" ||
  { cat "$work/configure.log" >&2; fail "configure"; }
ninja -C "$work/cmake" >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; fail "build"; }
if grep -q -- "-I$source_root/src\|-I$source_root/include" "$work/cmake/compile_commands.json"; then
  fail "a compile command includes dtx's source tree"
fi
"$work/cmake/consumer_shared" "$api" "${DTX_TEST_PG_URL:-}" || fail "consumer_shared"
"$work/cmake/consumer_static" "$api" "${DTX_TEST_PG_URL:-}" || fail "consumer_static"

# The inbox: outbox rows -> the installed `dtx relay` -> a private redis-server -> dtx::Inbox.
redis_url=
if [ -x /usr/bin/redis-server ]; then
  for _ in 1 2 3 4 5; do
    redis_port=$((20000 + RANDOM % 20000))
    /usr/bin/redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save '' \
      --appendonly no >"$work/redis.log" 2>&1 &
    redis_pid=$!
    for _ in $(seq 1 50); do
      grep -q 'Ready to accept connections' "$work/redis.log" && break
      kill -0 "$redis_pid" 2>/dev/null || break
      sleep 0.1
    done
    if grep -q 'Ready to accept connections' "$work/redis.log"; then
      redis_url=redis://127.0.0.1:$redis_port
      break
    fi
    stop_pid "$redis_pid"
    redis_pid=
  done
  [ -n "$redis_url" ] || { cat "$work/redis.log" >&2; fail "redis-server did not start"; }
elif [ -n "${CI:-}" ]; then
  fail "redis-server is not installed (scripts/install-deps.sh installs it)"
else
  step "SKIPPED the inbox checks: no /usr/bin/redis-server"
fi
# run_inbox NAME BINARY: a fresh outbox and consumer database, the relay, the consumer.
run_inbox() {
  [ -n "$redis_url" ] || return 0
  local dir=$work/inbox-$1
  mkdir -p "$dir"
  "$2" write "$dir" || fail "$1 write"
  "$prefix/bin/dtx" relay --source "sqlite:$dir/app.db" --sink "$redis_url" --poll-interval 0.05 \
    >"$dir/relay.log" 2>&1 &
  relay_pid=$!
  "$2" consume "$dir" "$redis_url" || { cat "$dir/relay.log" >&2; fail "$1"; }
  stop_pid "$relay_pid"
  relay_pid=
}
step "inbox through dtx relay and $redis_url"
run_inbox consumer_inbox "$work/cmake/consumer_inbox"
run_inbox consumer_inbox_static "$work/cmake/consumer_inbox_static"

step "pkg-config build"
pcdir=$(dirname "$(find "$prefix" -name dtx.pc | head -n 1)")
export PKG_CONFIG_PATH=$pcdir
flags=$(pkg-config --cflags --libs dtx dtx-pg libpq) || fail "pkg-config dtx dtx-pg"
case "$flags" in *"$source_root"*) fail "pkg-config flags point into the source tree: $flags" ;; esac
libdir=$(pkg-config --variable=libdir dtx)
# shellcheck disable=SC2086  # the flags are words
c++ -std=c++20 -Wall -Wextra -Werror -o "$work/consumer_pkgconfig" "$here/main.cc" $flags \
  "-Wl,-rpath,$libdir" || fail "pkg-config build"
"$work/consumer_pkgconfig" "$api" "${DTX_TEST_PG_URL:-}" || fail "consumer_pkgconfig"
inbox_flags=$(pkg-config --cflags --libs dtx-inbox sqlite3) || fail "pkg-config dtx-inbox"
# shellcheck disable=SC2086
c++ -std=c++20 -Wall -Wextra -Werror -o "$work/consumer_inbox_pkgconfig" "$here/inbox_main.cc" \
  $inbox_flags "-Wl,-rpath,$libdir" || fail "pkg-config build of the inbox consumer"
run_inbox consumer_inbox_pkgconfig "$work/consumer_inbox_pkgconfig"
step "all builds passed"
