#!/usr/bin/env bash
# The whole proxy under pgbench, side by side with direct PostgreSQL and PgBouncer in the
# same run: one throwaway PostgreSQL 15, pgfailover (Release) and PgBouncer 1.18 (Debian's)
# in session mode in front of it, then ROUNDS interleaved rounds of the same pgbench
# against each target. Prints the median TPS and latency of each and the ratios to direct.
#
#   bench/pgbench_compare.sh                       # pgbench -S -c 16 -j 2 -T 15, 3 rounds
#   PGBENCH_ARGS="-c 16 -j 2 -T 15" bench/pgbench_compare.sh      # TPC-B instead of -S
#   ROUNDS=5 SCALE=20 bench/pgbench_compare.sh
#
# Every process it starts is stopped when it ends, on Ctrl-C and on SIGTERM.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/pgcluster.sh
. "$root/scripts/pgcluster.sh"

ROUNDS=${ROUNDS:-3}
SCALE=${SCALE:-10}
PGBENCH_ARGS=${PGBENCH_ARGS:--S -c 16 -j 2 -T 15}

work=""
pids=()
cleanup() {
  local status=$? pid
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do
    stop_process "$pid" 10
  done
  if [ -n "$work" ]; then
    pg_cluster_stop "$work"
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
bin=$(build_release "$root")

work=$(mktemp -d /tmp/pgfailover-bench.XXXXXX)
chmod 755 "$work"
pg_port=$(free_port)
pg_cluster_start "$work" "$pg_port"

# pgfailover, passthrough authentication (the cluster trusts loopback).
pgf_port=$(free_port)
cat >"$work/pgfailover.toml" <<EOF
[proxy]
listen = "127.0.0.1:$pgf_port"
auth = "passthrough"
state_file = "$work/pgfailover.state"
[admin]
listen = "127.0.0.1:0"
[[backend]]
name = "pg"
priority = 1
url = "postgresql://postgres@127.0.0.1:$pg_port/postgres?sslmode=disable"
EOF
"$bin" run -c "$work/pgfailover.toml" --log-level warn >"$work/pgfailover.log" 2>&1 &
pids+=($!)
wait_for_listening "$work/pgfailover.log" "${pids[-1]}" 20 >/dev/null || {
  cat "$work/pgfailover.log" >&2
  exit 1
}

# PgBouncer in session mode, the same pool size as pgfailover would give (one server
# connection per client here). It refuses to run as root, so it runs as the server's user.
pgb_port=$(free_port)
as_pg_user tee "$work/userlist.txt" >/dev/null <<<'"postgres" ""'
as_pg_user tee "$work/pgbouncer.ini" >/dev/null <<EOF
[databases]
postgres = host=127.0.0.1 port=$pg_port dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $pgb_port
unix_socket_dir =
auth_type = trust
auth_file = $work/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 64
logfile = $work/pgbouncer.log
pidfile = $work/pgbouncer.pid
EOF
as_pg_user pgbouncer "$work/pgbouncer.ini" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 50); do
  PGCONNECT_TIMEOUT=2 psql -X -h 127.0.0.1 -p "$pgb_port" -U postgres -d postgres -Atc 'SELECT 1' \
    >/dev/null 2>&1 && break
  sleep 0.2
done

export PGUSER=postgres PGDATABASE=postgres PGHOST=127.0.0.1
unset PGPASSWORD PGSERVICE PGOPTIONS
pgbench -i -q -s "$SCALE" -p "$pg_port" >/dev/null 2>&1

declare -A tps lat
targets=(direct pgfailover pgbouncer)
declare -A ports=([direct]=$pg_port [pgfailover]=$pgf_port [pgbouncer]=$pgb_port)
echo "pgbench $PGBENCH_ARGS, scale $SCALE, $ROUNDS interleaved rounds"
for round in $(seq "$ROUNDS"); do
  for t in "${targets[@]}"; do
    # shellcheck disable=SC2086
    out=$(timeout 300 pgbench -n $PGBENCH_ARGS -p "${ports[$t]}" 2>&1) || {
      echo "$out" >&2
      exit 1
    }
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")
    t_tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
    t_lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")
    printf '  round %d %-11s %10.0f tps  %7.3f ms  failed %s\n' "$round" "$t" "$t_tps" \
      "$t_lat" "${failed:-0}"
    tps[$t]+="$t_tps "
    lat[$t]+="$t_lat "
  done
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
direct_tps=$(median <<<"${tps[direct]}")
direct_lat=$(median <<<"${lat[direct]}")
echo
printf '%-11s %12s %12s %12s %12s\n' target "median tps" "vs direct" "latency ms" "vs direct"
for t in "${targets[@]}"; do
  m_tps=$(median <<<"${tps[$t]}")
  m_lat=$(median <<<"${lat[$t]}")
  printf '%-11s %12.0f %12.3f %12.3f %12.3f\n' "$t" "$m_tps" \
    "$(awk -v a="$m_tps" -v b="$direct_tps" 'BEGIN {print a / b}')" "$m_lat" \
    "$(awk -v a="$m_lat" -v b="$direct_lat" 'BEGIN {print a / b}')"
done
