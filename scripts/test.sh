#!/usr/bin/env bash
# Installs what is missing, builds the test configuration in build/test (AddressSanitizer
# and UndefinedBehaviorSanitizer, the libFuzzer targets with clang, the benchmarks) and runs
# every test with ctest: unit, integration against real PostgreSQL, the client-library
# cases and a short run of each fuzzer.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -L unit         # extra arguments go to ctest
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build="$root/build/test"

"$root/scripts/setup.sh"

# ccache keeps rebuilds on a 2-core machine short; its cache lives in the user's home.
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-2G}
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPGFAILOVER_SANITIZE=ON -DPGFAILOVER_FUZZ=ON -DPGFAILOVER_BENCH=ON >/dev/null
cmake --build "$build" -j"$(nproc)"

cd "$build"
ctest --output-on-failure -j"$(nproc)" "$@"
