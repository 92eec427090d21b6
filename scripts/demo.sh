#!/usr/bin/env bash
# The main job: installs dependencies if missing, builds, starts `dtx server` on embedded SQLite and
# runs the order-saga demo (order -> payment -> inventory -> shipping as four participant processes):
# one order that succeeds and one out-of-stock order that rolls back.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
BUILD_DIR="$PWD/${BUILD_DIR:-build}" exec ./examples/order_saga/run_demo.sh
