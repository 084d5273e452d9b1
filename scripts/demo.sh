#!/usr/bin/env bash
# pgfailover in five minutes: builds the proxy, starts a throwaway PostgreSQL on a free port,
# puts pgfailover in front of it with conf/demo.toml, and drives pgbench through the proxy.
# Everything it starts is stopped again on exit, on Ctrl-C and on SIGTERM.
#
#   scripts/demo.sh            # as a normal user with sudo, or as root
#   KEEP_DEMO_DIR=1 scripts/demo.sh   # keep the logs and data folder afterwards
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/pgcluster.sh
. "$root/scripts/pgcluster.sh"

say() { printf '\n== %s\n' "$*"; }

work=""
proxy_pid=""
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "$proxy_pid" ]; then
    stop_process "$proxy_pid" 35
    wait "$proxy_pid" 2>/dev/null || true
  fi
  if [ -n "$work" ]; then
    pg_cluster_stop "$work"
    if [ "${KEEP_DEMO_DIR:-0}" = 1 ]; then
      echo "demo files kept in $work"
    else
      rm -rf "$work"
    fi
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "installing what is missing (scripts/setup.sh)"
"$root/scripts/setup.sh"

say "building a Release binary in build/release"
bin=$(build_release "$root")

work=$(mktemp -d /tmp/pgfailover-demo.XXXXXX)
chmod 755 "$work"

DEMO_PG_PORT=$(free_port)
say "starting PostgreSQL 15 on 127.0.0.1:$DEMO_PG_PORT (data in $work/data)"
pg_cluster_start "$work" "$DEMO_PG_PORT"

PGFAILOVER_PORT=$(free_port)
PGFAILOVER_ADMIN_PORT=$(free_port)
PGFAILOVER_STATE_FILE="$work/pgfailover.state"
export DEMO_PG_PORT PGFAILOVER_PORT PGFAILOVER_ADMIN_PORT PGFAILOVER_STATE_FILE

say "starting pgfailover run -c conf/demo.toml on 127.0.0.1:$PGFAILOVER_PORT"
"$bin" check-config "$root/conf/demo.toml" >/dev/null
"$bin" run -c "$root/conf/demo.toml" >"$work/pgfailover.log" 2>&1 &
proxy_pid=$!
if ! listen_port=$(wait_for_listening "$work/pgfailover.log" "$proxy_pid" 20); then
  echo "pgfailover did not start:" >&2
  cat "$work/pgfailover.log" >&2
  exit 1
fi
if [ "$listen_port" != "$PGFAILOVER_PORT" ]; then
  echo "pgfailover listens on $listen_port, expected $PGFAILOVER_PORT" >&2
  exit 1
fi

# From here on every client talks to the proxy, never to PostgreSQL directly.
export PGHOST=127.0.0.1 PGPORT=$PGFAILOVER_PORT PGUSER=postgres PGDATABASE=postgres
unset PGPASSWORD PGSERVICE PGOPTIONS

say "pgbench -i -s 5 through the proxy"
pgbench -i -s 5 -q

say "pgbench -c 8 -j 2 -T 10 -P 2 through the proxy"
bench_out="$work/pgbench.out"
timeout 60 pgbench -c 8 -j 2 -T 10 -P 2 2>&1 | tee "$bench_out"

say "who answers on the proxy's port?"
psql -X -c "SELECT inet_server_port() AS backend_port, current_user, version()"
backend_port=$(psql -X -A -t -c "SELECT inet_server_port()")

tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$bench_out" | head -1)
processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' \
  "$bench_out")
failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$bench_out")
warnings=$(grep -c '\] \[warning\] ' "$work/pgfailover.log" || true)

say "summary"
cat <<EOF
PostgreSQL          127.0.0.1:$DEMO_PG_PORT
pgfailover          127.0.0.1:$PGFAILOVER_PORT (admin 127.0.0.1:$PGFAILOVER_ADMIN_PORT)
backend seen by the clients through the proxy: port $backend_port$(
  [ "$backend_port" = "$DEMO_PG_PORT" ] && echo " (the PostgreSQL above: the proxy is in between)")
pgbench TPC-B for 10 s, 8 clients: ${processed:-?} transactions, ${failed:-?} failed, ${tps:-?} tps
pgfailover log: $(wc -l <"$work/pgfailover.log") lines, ${warnings} warnings
EOF
[ "$backend_port" = "$DEMO_PG_PORT" ] && [ "${failed:-1}" = 0 ]
