#!/usr/bin/env bash
# Builds the Debian packages of dtx into BUILD_DIR/packages (docs/packaging.md):
#   dtx_<version>_<arch>.deb          dtx server + systemd unit + /etc/dtx/dtx.conf
#   libdtx<soversion>_<version>_<arch>.deb   libdtx.so, libdtx_pg.so
#   libdtx-dev_<version>_<arch>.deb   headers, static libraries, CMake package, pkg-config files
# Usage: scripts/package.sh   (BUILD_DIR=build by default; builds it first when needed)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
if [ "${DTX_PACKAGE_SKIP_BUILD:-0}" != 1 ]; then ./scripts/build.sh; fi
out=$BUILD_DIR/packages
rm -rf "$out"
mkdir -p "$out"
# BUILD_DIR/CPackConfig.cmake is written by packaging/cpack.cmake.
(cd "$out" && cpack -G DEB --config ../CPackConfig.cmake >cpack.log) ||
  { cat "$out/cpack.log" >&2; exit 1; }
rm -rf "$out/_CPack_Packages"
ls "$out"/*.deb
