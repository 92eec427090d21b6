#!/usr/bin/env bash
# CI smoke run of the benchmark: 2 s, 8 clients, 10 % rollbacks. Fails if any request errors.
set -euo pipefail
cd "$(dirname "$0")/.."
exec ./bench/run.sh "${1:-build}" --clients 8 --seconds 2 --fail-ratio 0.1
