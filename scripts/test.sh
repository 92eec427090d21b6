#!/usr/bin/env bash
# Runs every test: installs dependencies if missing, builds, then runs unit, end-to-end and crash
# tests with ctest. Usage: scripts/test.sh [ctest args...]   (e.g. -R saga_e2e)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --timeout 900 "$@"
