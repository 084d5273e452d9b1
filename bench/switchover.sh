#!/usr/bin/env bash
# A planned switchover under load, as the application sees it, pgfailover and PgBouncer side
# by side: two throwaway PostgreSQL 15 servers a and b, each with the same empty table, and
# pgbench -C (a new connection per transaction, session mode) inserting a row per
# transaction through the proxy. SWITCH_AT seconds in, traffic is moved to the other server:
#
#   pgfailover  one call: curl -X POST /switchover -d '{"to": "b"}'
#   pgbouncer   the usual procedure on its console: PAUSE; point [databases] at the other
#               server; RELOAD; RESUME
#
# For each round it prints how long the move took (the call, or the whole console
# procedure), the longest any transaction took (the pause as clients felt it, connect
# included), pgbench's failed transactions, and the rows on each server (every transaction
# pgbench counted must be on exactly one of them). Rounds alternate a->b and b->a.
#
#   bench/switchover.sh                    # 3 rounds, pgbench -C -c 8 -j 2 -T 20
#   ROUNDS=5 CLIENTS=16 DURATION=30 SWITCH_AT=10 bench/switchover.sh
#
# Every process it starts is stopped by process id when it ends, on Ctrl-C and on SIGTERM.
set -euo pipefail
shopt -s inherit_errexit

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/pgcluster.sh
. "$root/scripts/pgcluster.sh"

ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-8}
DURATION=${DURATION:-20}
SWITCH_AT=${SWITCH_AT:-8}

work=""
pids=()
cleanup() {
  local status=$? pid
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do
    stop_process "$pid" 10
  done
  if [ -n "$work" ]; then
    pg_cluster_stop "$work/a"
    pg_cluster_stop "$work/b"
    [ "${KEEP_BENCH_DIR:-0}" = 1 ] && echo "files kept in $work" || rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$root/scripts/setup.sh"
if ! command -v pgbouncer >/dev/null; then
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends pgbouncer >/dev/null
fi
bin=${PGFAILOVER_BIN:-$(build_release "$root")}

work=$(mktemp -d /tmp/pgfailover-switchover.XXXXXX)
chmod 755 "$work"
mkdir -p "$work/a" "$work/b"
chmod 755 "$work/a" "$work/b"
declare -A port=([a]=$(free_port) [b]=$(free_port))
pg_cluster_start "$work/a" "${port[a]}"
pg_cluster_start "$work/b" "${port[b]}"
export PGUSER=postgres PGDATABASE=postgres PGHOST=127.0.0.1
unset PGPASSWORD PGSERVICE PGOPTIONS
for s in a b; do
  psql -X -q -p "${port[$s]}" -c 'CREATE TABLE moves (id bigserial PRIMARY KEY, client int)'
done
echo 'INSERT INTO moves (client) VALUES (:client_id);' >"$work/insert.sql"

# pgfailover, passthrough authentication (the servers trust loopback), switching quickly.
pgf_port=$(free_port)
admin_port=$(free_port)
cat >"$work/pgfailover.toml" <<EOF
[proxy]
listen = "127.0.0.1:$pgf_port"
auth = "passthrough"
state_file = "$work/pgfailover.state"
[failover]
drain_timeout = "10s"
[admin]
listen = "127.0.0.1:$admin_port"
[[backend]]
name = "a"
priority = 1
url = "postgresql://postgres@127.0.0.1:${port[a]}/postgres?sslmode=disable"
[[backend]]
name = "b"
priority = 2
url = "postgresql://postgres@127.0.0.1:${port[b]}/postgres?sslmode=disable"
EOF
"$bin" run -c "$work/pgfailover.toml" --log-level warn >"$work/pgfailover.log" 2>&1 &
pids+=($!)
wait_for_listening "$work/pgfailover.log" "${pids[-1]}" 20 >/dev/null || {
  cat "$work/pgfailover.log" >&2
  exit 1
}

# PgBouncer in session mode, run as the servers' user (it refuses root) from a folder of
# that user's; its console user is the servers' superuser.
pgb_port=$(free_port)
mkdir -p "$work/pgb"
[ "$(id -u)" -eq 0 ] && chown "$PGCLUSTER_OS_USER:" "$work/pgb"
as_pg_user tee "$work/pgb/userlist.txt" >/dev/null <<<'"postgres" ""'
write_pgbouncer_ini() {
  as_pg_user tee "$work/pgb/pgbouncer.ini" >/dev/null <<EOF
[databases]
postgres = host=127.0.0.1 port=${port[$1]} dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $pgb_port
unix_socket_dir =
auth_type = trust
auth_file = $work/pgb/userlist.txt
admin_users = postgres
pool_mode = session
max_client_conn = 200
default_pool_size = 64
logfile = $work/pgb/pgbouncer.log
pidfile = $work/pgb/pgbouncer.pid
EOF
}
write_pgbouncer_ini a
as_pg_user pgbouncer "$work/pgb/pgbouncer.ini" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 50); do
  PGCONNECT_TIMEOUT=2 psql -X -p "$pgb_port" -Atc 'SELECT 1' >/dev/null 2>&1 && break
  sleep 0.2
done

console() { psql -X -q -p "$pgb_port" -d pgbouncer -c "$1" >/dev/null; }
now_ms() { date +%s%3N; }

# move TARGET FROM TO: moves the proxy's traffic; prints the milliseconds it took.
move() {
  local target=$1 to=$3 begin end
  begin=$(now_ms)
  if [ "$target" = pgfailover ]; then
    curl -sS --fail-with-body -X POST "http://127.0.0.1:$admin_port/switchover" \
      -d "{\"to\": \"$to\", \"reason\": \"bench\"}" >"$work/switchover.json"
  else
    console "PAUSE postgres"
    write_pgbouncer_ini "$to"
    console "RELOAD"
    console "RESUME postgres"
  fi
  end=$(now_ms)
  echo $((end - begin))
}

echo "pgbench -n -C -c $CLIENTS -j 2 -T $DURATION, one INSERT per transaction; traffic moved" \
  "${SWITCH_AT}s in; $ROUNDS rounds, a->b and b->a alternating"
printf '%-6s %-11s %-5s %9s %13s %7s %8s %8s %8s %8s\n' round target move "move ms" \
  "max txn ms" failed aborted counted "rows a" "rows b"
from=a
to=b
for round in $(seq "$ROUNDS"); do
  for target in pgfailover pgbouncer; do
    for s in a b; do
      psql -X -q -p "${port[$s]}" -c 'TRUNCATE moves'
    done
    p=$pgf_port
    [ "$target" = pgbouncer ] && p=$pgb_port
    rm -f "$work"/txn.*
    timeout $((DURATION + 120)) pgbench -n -C -c "$CLIENTS" -j 2 -T "$DURATION" -p "$p" \
      -f "$work/insert.sql" -l --log-prefix="$work/txn" >"$work/pgbench.out" 2>&1 &
    bench_pid=$!
    sleep "$SWITCH_AT"
    took=$(move "$target" "$from" "$to")
    status=0
    wait "$bench_pid" || status=$?
    out=$(cat "$work/pgbench.out")
    if [ "$status" -ne 0 ]; then
      echo "pgbench through $target exited with $status:" >&2
      tail -20 <<<"$out" >&2
    fi
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")
    aborted=$(grep -c 'aborted' <<<"$out" || true)
    counted=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
    max_us=$(cat "$work"/txn.* | awk 'BEGIN {m = 0} $3 > m {m = $3} END {print m}')
    rows_a=$(psql -X -Atp "${port[a]}" -c 'SELECT count(*) FROM moves')
    rows_b=$(psql -X -Atp "${port[b]}" -c 'SELECT count(*) FROM moves')
    printf '%-6s %-11s %-5s %9s %13.1f %7s %8s %8s %8s %8s\n' "$round" "$target" \
      "$from->$to" "$took" "$(awk -v u="$max_us" 'BEGIN {print u / 1000}')" "${failed:-?}" \
      "$aborted" "${counted:-?}" "$rows_a" "$rows_b"
  done
  tmp=$from
  from=$to
  to=$tmp
done
