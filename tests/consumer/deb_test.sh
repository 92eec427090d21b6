#!/usr/bin/env bash
# The Debian packages of a build (scripts/package.sh), checked as a user would meet them:
# their metadata (names, dependencies, the systemd unit and the conffile), whether dpkg would
# install them here (dpkg --dry-run, as root), then unpacked into a fresh directory (dpkg -x, so the
# machine is not changed): `dtx server --help` from it, and the consumer test (run.sh) against it.
# Usage: deb_test.sh BUILD_DIR
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd)
fail() { echo "deb_test: FAILED: $*" >&2; exit 1; }

BUILD_DIR=$build DTX_PACKAGE_SKIP_BUILD=1 "$here/../../scripts/package.sh" >/dev/null
debs=("$build"/packages/*.deb)
work=$(mktemp -d /tmp/dtx-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT

field() { dpkg-deb --field "$2" "$1"; }
server=$(ls "$build"/packages/dtx_*.deb) || fail "no dtx package"
dev=$(ls "$build"/packages/libdtx-dev_*.deb) || fail "no libdtx-dev package"
runtime=$(ls "$build"/packages/libdtx[0-9]*.deb) || fail "no libdtx runtime package"
inbox=$(ls "$build"/packages/libdtx-inbox[0-9]*.deb) || fail "no libdtx-inbox package"
echo "deb_test: ${debs[*]##*/}"
field Depends "$server" | grep -q 'libc6' || fail "dtx: no shlibs dependencies: $(field Depends "$server")"
field Depends "$runtime" | grep -q 'libboost-json1.81.0' ||
  fail "libdtx: no dependency on libboost-json1.81.0: $(field Depends "$runtime")"
# The broker clients are the inbox package's dependencies, never libdtx's.
field Depends "$inbox" | grep -q 'librdkafka1' ||
  fail "libdtx-inbox: no dependency on librdkafka1: $(field Depends "$inbox")"
! field Depends "$runtime" | grep -q 'rdkafka\|hiredis\|libnats\|rabbitmq' ||
  fail "libdtx depends on a broker client: $(field Depends "$runtime")"
field Depends "$dev" | grep -q "$(field Package "$runtime") (= $(field Version "$runtime"))" ||
  fail "libdtx-dev does not depend on its runtime package"
# (Listings go through variables: grep -q closing a pipe early would kill dpkg-deb with SIGPIPE.)
contents=$(dpkg-deb --contents "$server")
grep -q '\./usr/lib/systemd/system/dtx.service$' <<<"$contents" || fail "no systemd unit"
grep -q '\./etc/dtx/dtx.conf$' <<<"$contents" || fail "no /etc/dtx/dtx.conf"
conffiles=$(dpkg-deb --ctrl-tarfile "$server" | tar -xO ./conffiles)
grep -qx '/etc/dtx/dtx.conf' <<<"$conffiles" || fail "dtx.conf is not a conffile"
if [ "$(id -u)" = 0 ]; then
  dpkg --dry-run -i "${debs[@]}" >"$work/dry-run.log" 2>&1 ||
    { cat "$work/dry-run.log" >&2; fail "dpkg --dry-run -i (unmet dependencies?)"; }
fi

root=$work/root
for deb in "${debs[@]}"; do dpkg -x "$deb" "$root"; done
help=$("$root/usr/bin/dtx" server --help) || fail "dtx server --help from the package: exit $?"
grep -q -- '--store' <<<"$help" || fail "dtx server --help from the package: no --store"
grep -q '^ExecStart=/usr/bin/dtx server --config /etc/dtx/dtx.conf$' \
  "$root/usr/lib/systemd/system/dtx.service" || fail "unit ExecStart"
# The packaged config must be accepted by the packaged server (only the store path changed, to a
# writable place, and the port, to a free one).
sed -e "s|^store = .*|store = sqlite:$work/conf.db|" -e 's|^listen = .*|listen = 127.0.0.1:0|' \
  "$root/etc/dtx/dtx.conf" >"$work/dtx.conf"
timeout 10 "$root/usr/bin/dtx" server --config "$work/dtx.conf" >"$work/conf.out" 2>&1 &
conf_pid=$!
for _ in $(seq 1 100); do grep -q '^dtx server ready' "$work/conf.out" && break; sleep 0.1; done
grep -q '^dtx server ready' "$work/conf.out" || { cat "$work/conf.out" >&2; fail "server with the packaged config"; }
kill "$conf_pid"; wait "$conf_pid" 2>/dev/null || true

"$here/run.sh" --prefix "$root/usr"
echo "deb_test: passed"
