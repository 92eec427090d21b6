#!/usr/bin/env bash
# Installs every build and test dependency of dtx on a fresh Debian 12 machine (run as root, or with sudo).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
PKGS=(
  g++ cmake ninja-build ccache pkg-config git curl procps
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libsqlite3-dev sqlite3 libpq-dev libjemalloc-dev libssl-dev
  libspdlog-dev libfmt-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  postgresql
  libhiredis-dev redis-server
  libnats-dev nats-server
  librdkafka-dev
  librabbitmq-dev rabbitmq-server  # tests start a private rabbitmq-server (not the system service)
  dpkg-dev file  # scripts/package.sh: cpack -G DEB runs dpkg-shlibdeps and file
  chromium chromium-driver python3-selenium  # the admin console's browser test (headless)
  doxygen  # scripts/api-docs.sh: the API reference
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  # The server packages (postgresql, redis-server, rabbitmq-server) must not start system services:
  # the tests start private ones, and on a machine without an init system a failed start (e.g.
  # rabbitmq-server's postinst: `invoke-rc.d rabbitmq-server start || exit 1`) fails the install.
  # A policy-rc.d that denies every start, only while installing and only if none is there.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "install-deps: all dependencies present"
