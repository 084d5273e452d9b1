# Shell functions shared by scripts/demo.sh and bench/pgbench_compare.sh: a throwaway
# PostgreSQL 15 server in a folder of its own, on a free loopback port, with trust
# authentication. Source this file; it defines functions and changes nothing by itself.
#
# initdb and postgres refuse to run as root, so under root the server runs as an
# unprivileged system user (PGCLUSTER_OS_USER), created on first use.

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PGCLUSTER_OS_USER=${PGCLUSTER_OS_USER:-pgfailover-demo}

# A loopback TCP port nothing listens on right now.
free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# True while the process runs; a zombie counts as gone.
pid_alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != "Z" ]
}

# wait_gone PID SECONDS: polls until PID is gone; false if it still runs after SECONDS.
wait_gone() {
  local pid=$1 deadline=$((SECONDS + $2))
  while pid_alive "$pid"; do
    [ "$SECONDS" -ge "$deadline" ] && return 1
    sleep 0.1
  done
}

# Runs a command as the user the server runs as.
as_pg_user() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$PGCLUSTER_OS_USER" -- "$@"
  else
    "$@"
  fi
}

# pg_cluster_start DIR PORT: initdb in DIR/data and start on 127.0.0.1:PORT, socket in DIR.
pg_cluster_start() {
  local dir=$1 port=$2
  if [ "$(id -u)" -eq 0 ]; then
    if ! id -u "$PGCLUSTER_OS_USER" >/dev/null 2>&1; then
      useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
        "$PGCLUSTER_OS_USER" || id -u "$PGCLUSTER_OS_USER" >/dev/null
    fi
    chown "$PGCLUSTER_OS_USER:" "$dir"
  fi
  as_pg_user "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C \
    --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; return 1; }
  as_pg_user tee -a "$dir/data/postgresql.auto.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
shared_buffers = 128MB
synchronous_commit = off
EOF
  as_pg_user "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start \
    >/dev/null </dev/null || { tail -20 "$dir/postgres.log" >&2; return 1; }
}

# pg_cluster_standby DIR PORT PRIMARY_PORT: a streaming-replication standby of the server
# on PRIMARY_PORT, copied with pg_basebackup -R into DIR/data and started on 127.0.0.1:PORT.
pg_cluster_standby() {
  local dir=$1 port=$2 primary_port=$3
  if [ "$(id -u)" -eq 0 ]; then
    chown "$PGCLUSTER_OS_USER:" "$dir"
  fi
  as_pg_user "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres \
    -D "$dir/data" -R -X stream --no-sync >"$dir/basebackup.log" 2>&1 ||
    { cat "$dir/basebackup.log" >&2; return 1; }
  # The copied settings name the primary's port and socket folder; later lines win.
  printf "port = %s\nunix_socket_directories = '%s'\n" "$port" "$dir" |
    as_pg_user tee -a "$dir/data/postgresql.auto.conf" >/dev/null
  as_pg_user "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start \
    >/dev/null </dev/null || { tail -20 "$dir/postgres.log" >&2; return 1; }
}

# pg_cluster_stop DIR: fast shutdown by the postmaster's PID, immediate after 20 s, then
# SIGKILL. Quiet and harmless when nothing runs.
pg_cluster_stop() {
  local dir=$1 pid
  pid=$(head -1 "$dir/data/postmaster.pid" 2>/dev/null) || return 0
  [ -n "$pid" ] && pid_alive "$pid" || return 0
  kill -INT "$pid" 2>/dev/null
  wait_gone "$pid" 20 && return 0
  kill -QUIT "$pid" 2>/dev/null
  wait_gone "$pid" 5 && return 0
  kill -KILL "$pid" 2>/dev/null
  wait_gone "$pid" 5
}

# wait_for_listening LOG PID SECONDS: the port pgfailover logged once listening on TCP.
wait_for_listening() {
  local log=$1 pid=$2 deadline=$((SECONDS + $3)) port
  while [ "$SECONDS" -lt "$deadline" ]; do
    port=$(sed -n 's/.*\] listening .*proto=tcp .*address=[^ ]*:\([0-9][0-9]*\).*/\1/p' \
      "$log" 2>/dev/null | head -1)
    if [ -n "$port" ]; then
      echo "$port"
      return 0
    fi
    pid_alive "$pid" || return 1
    sleep 0.1
  done
  return 1
}

# stop_process PID SECONDS: SIGTERM, then SIGKILL after SECONDS; quiet when it is gone.
stop_process() {
  local pid=$1
  pid_alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null
  wait_gone "$pid" "$2" && return 0
  kill -KILL "$pid" 2>/dev/null
  wait_gone "$pid" 5
}

# build_release ROOT: the optimised proxy binary in ROOT/build/release; prints its path.
build_release() {
  local root=$1
  # Called as bin=$(build_release ...): errexit does not reach inside, so fail explicitly.
  cmake -S "$root" -B "$root/build/release" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DPGFAILOVER_TESTS=OFF >/dev/null || return 1
  cmake --build "$root/build/release" --target pgfailover -j"$(nproc)" >&2 || return 1
  echo "$root/build/release/proxy/pgfailover"
}
