#!/usr/bin/env bash
# CI smoke run of the benchmark harness (< 10 s): dtx-bench against the real server (2 s, 8 clients,
# 10 % rollbacks), then the two baselines briefly. Fails if any of them reports an error.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
./bench/run.sh "$BUILD" --clients 8 --seconds 2 --fail-ratio 0.1
"$BUILD/bench/dtx-echo-bench" --connections 4 --seconds 0.5
DIR=$(mktemp -d /tmp/dtx-smoke.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
"$BUILD/bench/dtx-store-bench" --store "sqlite:$DIR/store.db" --writers 8 --seconds 1
