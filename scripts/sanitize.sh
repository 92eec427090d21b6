#!/usr/bin/env bash
# Builds dtx with a sanitizer into build-MODE/ and runs the tests there, with a private PostgreSQL
# cluster (like test.sh). Any sanitizer report fails the run.
#   scripts/sanitize.sh asan   AddressSanitizer + UndefinedBehaviorSanitizer, every test
#   scripts/sanitize.sh tsan   ThreadSanitizer, the unit tests (e2e and crash tests time real
#                              processes, which TSan slows down 5-15x; run them by hand if needed)
# Extra arguments go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
mode=${1:?usage: scripts/sanitize.sh asan|tsan [ctest args...]}
shift
case "$mode" in
  asan)
    flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -O1 -g"
    select=()
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    ;;
  tsan)
    # -Wno-tsan: GCC warns that TSan does not model the atomic_thread_fence in Asio's headers.
    flags="-fsanitize=thread -Wno-tsan -O1 -g"
    select=(-LE "e2e|crash")
    export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
    ;;
  *) echo "sanitize: mode must be asan or tsan" >&2; exit 2 ;;
esac
./scripts/install-deps.sh
build="build-$mode"
# Without -Werror: at -O1 with instrumentation GCC reports false maybe-uninitialized warnings inside
# Boost's headers; warnings on our code are enforced by the regular build (scripts/build.sh).
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDTX_WERROR=OFF \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" >/dev/null
ninja -C "$build"
pg_dir=$(mktemp -d /tmp/dtx-sanitize-pg.XXXXXX)
chmod 755 "$pg_dir"
trap '"$root/scripts/pg-cluster.sh" stop "$pg_dir/data" || true; rm -rf "$pg_dir"' EXIT
DTX_TEST_PG_URL=$(./scripts/pg-cluster.sh start "$pg_dir/data")
export DTX_TEST_PG_URL
cd "$build"
ctest --output-on-failure --timeout 1800 "${select[@]}" "$@"
