#!/usr/bin/env bash
# Configures and builds dtx (RelWithDebInfo, Ninja, ccache) into build/. Extra args go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDTX_WERROR=ON "$@" >/dev/null
ninja -C "$BUILD_DIR" -j "$JOBS"
