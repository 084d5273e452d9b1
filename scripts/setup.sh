#!/usr/bin/env bash
# Installs everything pgfailover needs to build, test, benchmark and run its demo,
# from Debian 12's own packages. Idempotent: packages already present are skipped,
# so a second run costs one dpkg query.
set -euo pipefail

# What building the proxy needs.
packages=(
  build-essential cmake ninja-build pkg-config git ccache
  libboost1.81-dev libboost-json1.81-dev
  libpq-dev libssl-dev libfmt-dev libspdlog-dev libtomlplusplus-dev libcli11-dev
  prometheus-cpp-dev
)
# What the tests, fuzzers, benchmarks and the demo need on top; `--build-only` skips them
# (the Dockerfile's build stage).
if [ "${1:-}" != "--build-only" ]; then
  packages+=(
    libgtest-dev libbenchmark-dev
    clang-14 libclang-rt-14-dev
    postgresql postgresql-client
    python3 python3-pytest python3-psycopg python3-psycopg2 python3-asyncpg
    curl procps iproute2 util-linux
    prometheus  # promtool checks the /metrics output
  )
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  sudo_cmd=(sudo)
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# The stock cluster that the postgresql package would start is not used: the demo and the
# tests start their own servers in temporary folders.
if [ ! -e /usr/sbin/policy-rc.d ] && [ "$(id -u)" -eq 0 ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
