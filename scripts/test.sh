#!/usr/bin/env bash
# Runs every test: installs dependencies if missing, builds, starts a private PostgreSQL cluster on
# 127.0.0.1 for the run (stopped at exit), then runs unit, end-to-end and crash tests with ctest.
# Usage: scripts/test.sh [ctest args...]   (e.g. -R saga_e2e)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
./scripts/install-deps.sh
./scripts/build.sh
pg_dir=$(mktemp -d /tmp/dtx-test-pg.XXXXXX)
chmod 755 "$pg_dir"
trap '"$root/scripts/pg-cluster.sh" stop "$pg_dir/data" || true; rm -rf "$pg_dir"' EXIT
DTX_TEST_PG_URL=$(./scripts/pg-cluster.sh start "$pg_dir/data")
export DTX_TEST_PG_URL
echo "test.sh: PostgreSQL for tests at $DTX_TEST_PG_URL"
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --timeout 900 "$@"
