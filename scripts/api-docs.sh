#!/usr/bin/env bash
# Builds the libdtx API reference (Doxygen, docs/api/Doxyfile) from include/dtx/ into
# OUT (default build/api-docs/html) and fails on any Doxygen warning (an undocumented public
# member, a broken @ref, ...). Usage: scripts/api-docs.sh [OUT]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build/api-docs}
command -v doxygen >/dev/null || { echo "api-docs: doxygen is not installed (scripts/install-deps.sh installs it)" >&2; exit 1; }
mkdir -p "$out"
version=$(sed -n 's/^project(dtx VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
export DTX_SOURCE_DIR=$root DTX_DOXYGEN_OUT=$out DTX_VERSION=$version
rm -f "$out/warnings.log"
if ! doxygen "$root/docs/api/Doxyfile" || [ -s "$out/warnings.log" ]; then
  echo "api-docs: Doxygen warnings (docs/api/Doxyfile treats them as errors):" >&2
  cat "$out/warnings.log" >&2 || true
  exit 1
fi
echo "api-docs: $out/html/index.html"
