#!/usr/bin/env bash
# pgfailover in five minutes: builds the proxy, starts a throwaway PostgreSQL primary and a
# streaming-replication standby of it on free ports, puts pgfailover in front of both with
# conf/demo.toml, drives pgbench through the proxy, and kills the primary halfway
# (pg_ctl stop -m immediate). It prints when the proxy switched to the standby, how long
# that took and how many transactions failed. Everything it starts is stopped again on
# exit, on Ctrl-C and on SIGTERM.
#
#   scripts/demo.sh            # as a normal user with sudo, or as root
#   KEEP_DEMO_DIR=1 scripts/demo.sh   # keep the logs and data folders afterwards
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/pgcluster.sh
. "$root/scripts/pgcluster.sh"

say() { printf '\n== %s\n' "$*"; }
# Seconds since the epoch with milliseconds, and the same for a pgfailover log timestamp.
now() { date +%s.%3N; }
log_time() { date -d "$1" +%s.%3N; }

ROUNDS=${ROUNDS:-20}
KILL_ROUND=$((ROUNDS / 2 + 1))

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
    pg_cluster_stop "$work/standby"
    pg_cluster_stop "$work/primary"
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
mkdir "$work/primary" "$work/standby"

DEMO_PG_PORT=$(free_port)
say "starting PostgreSQL 15 primary on 127.0.0.1:$DEMO_PG_PORT"
pg_cluster_start "$work/primary" "$DEMO_PG_PORT"
DEMO_STANDBY_PORT=$(free_port)
say "starting its streaming standby (pg_basebackup) on 127.0.0.1:$DEMO_STANDBY_PORT"
pg_cluster_standby "$work/standby" "$DEMO_STANDBY_PORT" "$DEMO_PG_PORT"

PGFAILOVER_PORT=$(free_port)
PGFAILOVER_ADMIN_PORT=$(free_port)
PGFAILOVER_STATE_FILE="$work/pgfailover.state"
export DEMO_PG_PORT DEMO_STANDBY_PORT PGFAILOVER_PORT PGFAILOVER_ADMIN_PORT PGFAILOVER_STATE_FILE

say "starting pgfailover run -c conf/demo.toml on 127.0.0.1:$PGFAILOVER_PORT"
"$bin" check-config "$root/conf/demo.toml" >/dev/null
"$bin" run -c "$root/conf/demo.toml" >"$work/pgfailover.log" 2>&1 &
proxy_pid=$!
if ! listen_port=$(wait_for_listening "$work/pgfailover.log" "$proxy_pid" 20); then
  echo "pgfailover did not start:" >&2
  cat "$work/pgfailover.log" >&2
  exit 1
fi

# From here on every client talks to the proxy, never to PostgreSQL directly.
export PGHOST=127.0.0.1 PGPORT=$PGFAILOVER_PORT PGUSER=postgres PGDATABASE=postgres
export PGCONNECT_TIMEOUT=10
unset PGPASSWORD PGSERVICE PGOPTIONS

say "pgbench -i -s 5 through the proxy"
pgbench -i -s 5 -q

backend_of() {
  local port
  port=$(psql -X -A -t -c "SELECT inet_server_port()" 2>/dev/null) || port="?"
  case "$port" in
    "$DEMO_PG_PORT") echo primary ;;
    "$DEMO_STANDBY_PORT") echo standby ;;
    *) echo "none ($port)" ;;
  esac
}

say "$ROUNDS one-second rounds of pgbench -C -c 4 -j 2 (a new connection per transaction); the primary is killed during round $KILL_ROUND"
printf '%6s %8s %8s %8s  %s\n' round tps done failed "backend after the round"
total_done=0
total_failed=0
kill_at=""
killer_pid=""
for round in $(seq "$ROUNDS"); do
  if [ "$round" = "$KILL_ROUND" ]; then
    (
      sleep 0.5
      now >"$work/kill_at"
      as_pg_user "$PG_BIN/pg_ctl" -D "$work/primary/data" stop -m immediate >/dev/null 2>&1
    ) &
    killer_pid=$!
  fi
  out=$(timeout 60 pgbench -n -C -c 4 -j 2 -T 1 2>&1) || true
  done_=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
  # pgbench ends a client whose transaction or connection fails; each is one failure.
  failed=$(grep -c 'aborted' <<<"$out" || true)
  total_done=$((total_done + ${done_:-0}))
  total_failed=$((total_failed + failed))
  printf '%6s %8.0f %8s %8s  %s\n' "$round" "${tps:-0}" "${done_:-0}" "$failed" "$(backend_of)"
done
wait "$killer_pid" || true
kill_at=$(cat "$work/kill_at")

say "what the proxy logged about it"
grep -E '\] \[(warning|info)\] (backend (down|up|changed)|switch |promotion|backend route state)' \
  "$work/pgfailover.log" | sed 's/^/  /' || true

say "what the proxy says now: pgfailover ctl status --admin 127.0.0.1:$PGFAILOVER_ADMIN_PORT"
"$bin" ctl --admin "127.0.0.1:$PGFAILOVER_ADMIN_PORT" status | sed 's/^/  /' || true

switch_line=$(grep -E '\] \[warning\] switch from=primary ' "$work/pgfailover.log" | head -1 || true)
promoted_line=$(grep -E '\] \[warning\] switch from=[a-z]+ to=standby ' "$work/pgfailover.log" |
  head -1 || true)
say "summary"
echo "primary   127.0.0.1:$DEMO_PG_PORT (killed during round $KILL_ROUND)"
echo "standby   127.0.0.1:$DEMO_STANDBY_PORT (promoted by the proxy with SELECT pg_promote())"
echo "pgfailover 127.0.0.1:$PGFAILOVER_PORT"
if [ -n "$promoted_line" ]; then
  serving_at=$(log_time "$(sed 's/^\[\([^]]*\)\].*/\1/' <<<"$promoted_line")")
  left_at=$(log_time "$(sed 's/^\[\([^]]*\)\].*/\1/' <<<"$switch_line")")
  awk -v k="$kill_at" -v l="$left_at" -v s="$serving_at" 'BEGIN {
    printf "primary left %.0f ms after the kill; standby promoted and serving %.0f ms after the kill\n",
      (l - k) * 1000, (s - k) * 1000 }'
else
  echo "the proxy did not switch to the standby (see $work/pgfailover.log)"
fi
echo "transactions: $total_done committed, $total_failed failed (in flight when the primary died)"
[ -n "$promoted_line" ] && [ "$(backend_of)" = standby ]
