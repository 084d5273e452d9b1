"""Failover as a client sees it: HAProxy and pgfailover side by side on the same fault.

Each trial starts three proxies in front of the same two PostgreSQL servers, a
(priority 1) and b (priority 2), which share one password:

  haproxy      HAProxy in TCP mode, `option pgsql-check`, checks every 100 ms, down after
               2 failures, b a backup server
  pgf-fast     pgfailover with HAProxy's settings: probes every 100 ms, 100 ms timeout,
               down after 2 failures
  pgf-default  pgfailover with its default [health] settings

One client thread per proxy opens a new connection, runs `SELECT inet_server_port()` and
closes, over and over. After a second of steady traffic, a is killed (SIGQUIT to the
postmaster, as `pg_ctl stop -m immediate` does) or frozen (SIGSTOP of the postmaster and
its children). Every loop runs until it has been served by b (at most --cap seconds);
then the proxies stop and a is brought back for the next trial.

Per proxy and fault it reports the time from the fault to the first transaction served by
b, and the connection attempts and queries that failed after the fault.

Run it through bench/failover, which builds the Release proxy and sets PGFAILOVER_BIN.
Every process it starts is stopped by process id when it ends, on Ctrl-C and on SIGTERM.
"""
import argparse
import asyncio
import collections
import datetime
import os
import re
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psycopg

from pgfixture import (SUPERUSER, Cluster, Proxy, backend_entry, conninfo, free_port, read_log,
                       wait_until)

FAULTS = ("kill", "freeze")
TARGETS = ("haproxy", "pgf-fast", "pgf-default")
# HAProxy's settings, given to pgfailover too; rise stays at its default of 2 in both.
FAST_HEALTH = {"interval": "100ms", "timeout": "100ms", "fall": 2}
CONNECT_TIMEOUT = 5      # seconds, libpq's connect_timeout of every benchmark client
QUERY_TIMEOUT = 5        # seconds a query may take before the client gives up on it
LOOP_PAUSE = 0.005       # seconds between two connections of one loop


def log(text):
    print(text, file=sys.stderr, flush=True)


def note_pid(kind, pid):
    """Appends a started process to the file the wrapper cleans up from if this process
    dies without running its own cleanup (SIGKILL)."""
    path = os.environ.get("FAILOVER_PIDFILE")
    if path and pid:
        with open(path, "a") as f:
            f.write("%s %d\n" % (kind, pid))


# ---- HAProxy ----


class HAProxy:
    """One `haproxy -db` process in the foreground, stopped by its process id."""

    def __init__(self, binary, a_port, b_port, shutdown_sessions, redispatch):
        self.binary = binary
        self.base = tempfile.mkdtemp(prefix="pgf-haproxy-")
        self.config_path = os.path.join(self.base, "haproxy.cfg")
        self.log_path = os.path.join(self.base, "haproxy.log")
        self.port = free_port()
        # A session on a server marked down stays open until the server or a timeout
        # ends it unless `on-marked-down shutdown-sessions` is set; Patroni's sample
        # configuration sets it, and without it a client stuck in its login on a frozen
        # server waits for its own connect_timeout.
        extra = " on-marked-down shutdown-sessions" if shutdown_sessions else ""
        server = "check inter 100 fall 2 rise 2" + extra
        # Without `option redispatch` a connection refused by a is retried on a only
        # (`retries 3`, about a second apart), even once a is marked down.
        options = ["    option redispatch"] if redispatch else []
        text = "\n".join([
            "global",
            "    maxconn 2000",
            # rfc5424 for its microsecond timestamps: when a was marked down.
            "    log stdout format rfc5424 local0 notice",
            "defaults",
            "    mode tcp",
            "    log global",
            "    timeout connect 5s",
            "    timeout client 60s",
            "    timeout server 60s",
            "    timeout check 100ms",
            "listen pg",
            "    bind 127.0.0.1:%d" % self.port,
            "    option pgsql-check user %s" % SUPERUSER,
        ] + options + [
            "    server a 127.0.0.1:%d %s" % (a_port, server),
            "    server b 127.0.0.1:%d %s backup" % (b_port, server),
            ""])
        with open(self.config_path, "w") as f:
            f.write(text)
        self.proc = None

    def start(self):
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([self.binary, "-f", self.config_path, "-db"],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         start_new_session=True)
        note_pid("haproxy", self.proc.pid)
        time.sleep(0.05)
        if self.proc.poll() is not None:
            raise RuntimeError("haproxy exited with %d:\n%s" % (self.proc.returncode,
                                                                self.log()))
        return self

    def log(self):
        return read_log(self.log_path)

    def switch_times(self):
        """Wall-clock times at which HAProxy marked a down."""
        return [datetime.datetime.fromisoformat(m).timestamp() for m in
                re.findall(r"^<\d+>1 (\S+) .* Server pg/a is DOWN", self.log(), re.M)]

    def stop(self):
        """SIGTERM (HAProxy's hard stop), SIGKILL after 10 s; returns a problem or None."""
        if self.proc is None:
            return None
        problem = None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                problem = "haproxy ignored SIGTERM and was killed"
        elif self.proc.returncode != 0:
            problem = "haproxy exited on its own with status %d" % self.proc.returncode
        return problem

    def destroy(self, keep):
        problem = self.stop()
        if problem:
            log("%s; its log:\n%s" % (problem, self.log()[-3000:]))
        if not keep:
            shutil.rmtree(self.base, ignore_errors=True)
        return [problem] if problem else []


# ---- the clients ----


class ClientLoop(threading.Thread):
    """New connection, `SELECT inet_server_port()`, close; again until stopped.

    Each record is (monotonic time at the end of the attempt, backend port or None,
    phase of the failure or None, error text or None, monotonic time at its start). The thread runs its own asyncio
    loop so that a query to a frozen server can be given up after QUERY_TIMEOUT: a
    blocking psycopg call could not be bounded, and the loop must end when it is told.
    """

    def __init__(self, name, port, password):
        super().__init__(name="loop-" + name, daemon=True)
        self.target = name
        self.dsn = conninfo("127.0.0.1", port, SUPERUSER, password, "postgres")
        self.records = []
        self._stop_requested = threading.Event()

    def run(self):
        asyncio.run(self._main())

    def stop(self):
        self._stop_requested.set()

    async def _main(self):
        while not self._stop_requested.is_set():
            self.records.append(await self._attempt())
            await asyncio.sleep(LOOP_PAUSE)

    async def _attempt(self):
        phase, conn = "connect", None
        started = time.monotonic()
        try:
            conn = await asyncio.wait_for(
                psycopg.AsyncConnection.connect(self.dsn, autocommit=True,
                                                connect_timeout=CONNECT_TIMEOUT),
                CONNECT_TIMEOUT + 1)
            phase = "query"
            cursor = await asyncio.wait_for(conn.execute("SELECT inet_server_port()"),
                                            QUERY_TIMEOUT)
            port = (await cursor.fetchone())[0]
            return (time.monotonic(), port, None, None, started)
        except asyncio.TimeoutError:
            return (time.monotonic(), None, phase, "client timeout", started)
        except Exception as e:  # every failure is a data point, never the loop's end
            return (time.monotonic(), None, phase, "%s: %s" % (type(e).__name__, e), started)
        finally:
            if conn is not None:
                try:
                    await asyncio.wait_for(conn.close(), 2)
                except Exception:
                    pass

    def first_on(self, port, after):
        return next((r[0] for r in list(self.records) if r[1] == port and r[0] >= after),
                    None)


def served_port(port, password):
    """The backend port one new connection through `port` lands on, or None."""
    try:
        with psycopg.connect(conninfo("127.0.0.1", port, SUPERUSER, password, "postgres"),
                             autocommit=True, connect_timeout=2) as conn:
            return conn.execute("SELECT inet_server_port()").fetchone()[0]
    except psycopg.Error:
        return None


# ---- one trial ----


class Trial:
    """Three fresh proxies in front of a and b, one fault, one result per proxy."""

    def __init__(self, args, a, b, fault):
        self.args, self.a, self.b, self.fault = args, a, b, fault
        self.proxies = {}
        self.loops = {}
        self.problems = []

    def start_proxies(self):
        self.proxies["haproxy"] = HAProxy(self.args.haproxy, self.a.port, self.b.port,
                                          self.args.haproxy_shutdown_sessions,
                                          self.args.haproxy_redispatch).start()
        for name, sections in (("pgf-fast", {"health": dict(FAST_HEALTH)}),
                               ("pgf-default", {})):
            self.start_pgfailover(name, sections)
        for name, proxy in self.proxies.items():
            if not self.serves_from_a(proxy, 20):
                raise RuntimeError("%s does not serve from a within 20 s" % name)

    def start_pgfailover(self, name, sections, attempts=3):
        """A pgfailover serving from a. A new Proxy has a new folder, so a new state_file,
        and should start on a; one whose first probes all failed may choose b instead and
        stay there (it is then restarted, and that is reported)."""
        backends = [backend_entry("a", 1, self.a.port, password=self.a.password),
                    backend_entry("b", 2, self.b.port, password=self.b.password)]
        for attempt in range(attempts):
            proxy = Proxy(backends, sections=sections, log_level=self.args.log_level,
                          name=name)
            self.proxies[name] = proxy
            proxy.start()
            note_pid("pgfailover", proxy.pid)
            if attempt == attempts - 1 or self.serves_from_a(proxy, 5):
                return
            # What it decided and why, without the per-client lines.
            decisions = [line for line in proxy.log().splitlines()
                         if re.search(r"\] (switch|backend (up|down)) ", line)]
            self.problems.append("%s did not serve from a within 5 s of its start; "
                                 "restarted it. Its log:\n      %s"
                                 % (name, "\n      ".join(decisions[:8]) or "(no decision)"))
            self.problems += proxy.destroy()

    def serves_from_a(self, proxy, timeout):
        return wait_until(lambda: served_port(proxy.port, self.a.password) == self.a.port,
                          timeout, interval=0.1)

    def run(self):
        self.start_proxies()
        for name in TARGETS:
            self.loops[name] = ClientLoop(name, self.proxies[name].port, self.a.password)
        for loop in self.loops.values():
            loop.start()
        try:
            time.sleep(self.args.steady)
            fault_wall, fault_at = time.time(), time.monotonic()
            if self.fault == "kill":
                self.a.stop_immediate()
            else:
                self.a.freeze()
            wait_until(lambda: all(loop.first_on(self.b.port, fault_at) is not None
                                   for loop in self.loops.values()),
                       self.args.cap, interval=0.02)
        finally:
            self.stop_loops()
        outcome = {name: self.result(loop, fault_at) for name, loop in self.loops.items()}
        for name, r in outcome.items():
            times = [t - fault_wall for t in switch_times(self.proxies[name])]
            r["switch"] = next((t for t in times if t >= 0), None)
            r["early_switches"] = sum(1 for t in times if t < 0)
        return outcome

    def stop_loops(self):
        for loop in self.loops.values():
            loop.stop()
        # An attempt is bounded by CONNECT_TIMEOUT + 1 + QUERY_TIMEOUT + 2 seconds.
        deadline = time.monotonic() + CONNECT_TIMEOUT + QUERY_TIMEOUT + 5
        for loop in self.loops.values():
            if loop.is_alive():
                loop.join(max(0.1, deadline - time.monotonic()))
            if loop.is_alive():
                self.problems.append("client loop %s did not end" % loop.target)

    def result(self, loop, fault_at):
        records = list(loop.records)
        first_b = loop.first_on(self.b.port, fault_at)
        after = [r for r in records if r[0] >= fault_at]
        failed = [r for r in after if r[3] is not None]
        return {
            "ttfs": None if first_b is None else first_b - fault_at,
            "failed_connect": sum(1 for r in failed if r[2] == "connect"),
            # Of those, the ones that began after the fault: connections made during the
            # switch. The others were already logging in on a when it died or froze.
            "failed_new_connect": sum(1 for r in failed
                                      if r[2] == "connect" and r[4] >= fault_at),
            "failed_query": sum(1 for r in failed if r[2] == "query"),
            "errors": [(r[2], r[3]) for r in failed],
            "before_fault_failures": sum(1 for r in records
                                         if r[0] < fault_at and r[3] is not None),
            "steady_ok": sum(1 for r in records if r[0] < fault_at and r[1] is not None),
            "before_fault_on_b": sum(1 for r in records
                                     if r[0] < fault_at and r[1] == self.b.port),
            # A success on a after the first on b would mean the proxy went back.
            "back_on_a": 0 if first_b is None else sum(
                1 for r in after if r[1] == self.a.port and r[0] > first_b),
        }

    def stop_proxies(self):
        for name, proxy in self.proxies.items():
            if isinstance(proxy, HAProxy):
                self.problems += proxy.destroy(self.args.keep)
                continue
            found = proxy.destroy()  # keeps its folder under PGF_KEEP_TMP=1
            if found:
                log("---- %s log (%s) ----\n%s" % (name, proxy.base, proxy.log_tail(40)))
            self.problems += ["%s: %s" % (name, p) for p in found]
        self.proxies = {}


PGF_SWITCH = re.compile(r"^\[(\S+ \S+)\] \[warning\] switch from=a to=b ", re.M)


def switch_times(proxy):
    """Wall-clock times at which the proxy left a (pgfailover logs local time)."""
    if isinstance(proxy, HAProxy):
        return proxy.switch_times()
    return [datetime.datetime.strptime(m, "%Y-%m-%d %H:%M:%S.%f").timestamp()
            for m in PGF_SWITCH.findall(proxy.log())]


def restore(a):
    """a running again on its port after a fault: thawed, stopped, started."""
    a.thaw()
    a.stop()
    a.start(attempts=1)
    note_pid("postgres", a.postmaster_pid())


# ---- the report ----


def fmt_ms(seconds, cap):
    if seconds is None or seconds == float("inf"):
        return ">%d" % (cap * 1000)
    return "%d" % round(seconds * 1000)


def short_error(text):
    """An error reduced to what repeats between attempts: no ports, pids or addresses."""
    text = text.splitlines()[0] if text else ""
    text = re.sub(r"\d+", "N", text)
    return text[:110]


def print_report(args, results, problems, started):
    cap = args.cap
    print()
    print("pgfailover failover benchmark: %d trial(s) per fault, %.1f s steady traffic, "
          "cap %d s, %.0f s in all" % (args.trials, args.steady, cap,
                                      time.monotonic() - started))
    print("command: %s" % os.environ.get("FAILOVER_COMMAND", shlex.join(sys.argv)))
    print("python:  %s" % shlex.join([sys.executable] + sys.argv))
    print("haproxy: inter 100 fall 2 rise 2, timeout check 100ms, on-marked-down "
          "shutdown-sessions %s, option redispatch %s" % (
              "on" if args.haproxy_shutdown_sessions else "off",
              "on" if args.haproxy_redispatch else "off"))
    print("pgf-fast: [health] interval 100ms timeout 100ms fall 2; pgf-default: no [health]")
    print("p50 (lower median) and max: time from the fault to the first transaction served "
          "by b; failed: attempts that failed after the fault, summed over the trials "
          "(connects: all / begun after the fault); "
          "switch: when the proxy's log says it left a (HAProxy: a marked DOWN); steady "
          "tx/s: one client loop's rate before the fault")
    print()
    header = ("target", "fault", "trials", "p50 ms", "max ms", "failed connects",
              "failed queries", "switch p50 ms", "steady tx/s")
    rows = []
    for name in TARGETS:
        for fault in args.faults:
            runs = results[(name, fault)]
            if not runs:
                continue
            times = [r["ttfs"] if r["ttfs"] is not None else float("inf") for r in runs]
            rows.append((name, fault, str(len(runs)),
                         fmt_ms(statistics.median_low(times), cap), fmt_ms(max(times), cap),
                         "%d / %d" % (sum(r["failed_connect"] for r in runs),
                                      sum(r["failed_new_connect"] for r in runs)),
                         str(sum(r["failed_query"] for r in runs)),
                         fmt_ms(statistics.median_low(
                             r["switch"] if r["switch"] is not None else float("inf")
                             for r in runs), cap),
                         "%.0f" % (statistics.mean(r["steady_ok"] for r in runs)
                                   / args.steady)))
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    line = "  ".join("%-*s" if i < 2 else "%*s" for i in range(len(header)))
    print(line % tuple(x for pair in zip(widths, header) for x in pair))
    for row in rows:
        print(line % tuple(x for pair in zip(widths, row) for x in pair))

    notes = []
    for name in TARGETS:
        for fault in args.faults:
            runs = results[(name, fault)]
            kinds = collections.Counter("%s: %s" % (phase, short_error(text))
                                        for r in runs for phase, text in r["errors"])
            for kind, count in kinds.most_common(4):
                notes.append("%s/%s %dx %s" % (name, fault, count, kind))
            before = sum(r["before_fault_failures"] for r in runs)
            if before:
                notes.append("%s/%s: %d failure(s) before the fault" % (name, fault, before))
            early = sum(r["early_switches"] for r in runs)
            if early:
                notes.append("%s/%s: left a %d time(s) before the fault (a check timed out?)"
                             % (name, fault, early))
            on_b = sum(r["before_fault_on_b"] for r in runs)
            if on_b:
                notes.append("%s/%s: %d transaction(s) served by b before the fault"
                             % (name, fault, on_b))
            back = sum(r["back_on_a"] for r in runs)
            if back:
                notes.append("%s/%s: %d success(es) on a after the first on b"
                             % (name, fault, back))
    if notes or problems:
        print()
        print("errors after the fault (most frequent kinds) and problems:")
        for n in notes + problems:
            print("  " + n)


# ---- main ----


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=int(os.environ.get("TRIALS", "10")),
                   help="trials per fault (env TRIALS, default 10)")
    p.add_argument("--faults", default=os.environ.get("FAULTS", ",".join(FAULTS)),
                   help="comma-separated, of kill,freeze (env FAULTS)")
    p.add_argument("--steady", type=float, default=float(os.environ.get("STEADY", "1.0")),
                   help="seconds of traffic before the fault (env STEADY, default 1)")
    p.add_argument("--cap", type=int, default=int(os.environ.get("CAP", "15")),
                   help="seconds to wait for every loop to reach b (env CAP, default 15)")
    p.add_argument("--haproxy", default=os.environ.get("HAPROXY_BIN") or
                   shutil.which("haproxy") or "/usr/sbin/haproxy",
                   help="the haproxy binary (env HAPROXY_BIN)")
    p.add_argument("--no-haproxy-shutdown-sessions", dest="haproxy_shutdown_sessions",
                   action="store_false",
                   default=os.environ.get("HAPROXY_SHUTDOWN_SESSIONS", "1") != "0",
                   help="leave out `on-marked-down shutdown-sessions` "
                   "(env HAPROXY_SHUTDOWN_SESSIONS=0)")
    p.add_argument("--haproxy-redispatch", action="store_true",
                   default=os.environ.get("HAPROXY_REDISPATCH", "0") == "1",
                   help="add `option redispatch` (env HAPROXY_REDISPATCH=1)")
    p.add_argument("--log-level", default=os.environ.get("PGF_LOG_LEVEL", "info"),
                   help="pgfailover's --log-level (env PGF_LOG_LEVEL, default info)")
    p.add_argument("--keep", action="store_true",
                   default=os.environ.get("KEEP_BENCH_DIR") == "1",
                   help="keep the proxies' folders and logs (env KEEP_BENCH_DIR=1)")
    args = p.parse_args()
    args.faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    if args.trials < 1 or not args.faults or any(f not in FAULTS for f in args.faults):
        p.error("need --trials >= 1 and --faults from %s" % ",".join(FAULTS))
    if not os.access(args.haproxy, os.X_OK):
        p.error("no haproxy binary at %s" % args.haproxy)
    return args


def interrupt(signo, frame):
    # Once: cleanup must not be interrupted by a second Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt("signal %d" % signo)


def main():
    args = parse_args()
    if args.keep:
        os.environ["PGF_KEEP_TMP"] = "1"  # Cluster and Proxy keep their folders
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    started = time.monotonic()
    password = "pw-" + secrets.token_hex(8)
    clusters, trial = [], None
    results = {(t, f): [] for t in TARGETS for f in args.faults}
    problems = []
    try:
        for name in ("a", "b"):
            cluster = Cluster(name=name, password=password)
            clusters.append(cluster)
            cluster.init().start()
            note_pid("postgres", cluster.postmaster_pid())
        a, b = clusters
        log("servers: a on 127.0.0.1:%d, b on 127.0.0.1:%d" % (a.port, b.port))
        for i in range(1, args.trials + 1):
            for fault in args.faults:
                trial = Trial(args, a, b, fault)
                try:
                    outcome = trial.run()
                finally:
                    trial.stop_proxies()
                    problems += ["trial %d %s: %s" % (i, fault, p) for p in trial.problems]
                    trial = None
                restore(a)
                for name, r in outcome.items():
                    results[(name, fault)].append(r)
                log("trial %d/%d %-6s  %s" % (i, args.trials, fault, "  ".join(
                    "%s %s ms (switch %s, %d conn, %d query failed)" % (
                        name, fmt_ms(r["ttfs"], args.cap), fmt_ms(r["switch"], args.cap),
                        r["failed_connect"], r["failed_query"])
                    for name, r in outcome.items())))
        print_report(args, results, problems, started)
        return 0
    except KeyboardInterrupt:
        log("interrupted; stopping everything")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if trial is not None:
            trial.stop_loops()
            trial.stop_proxies()
        for cluster in clusters:
            cluster.destroy()


if __name__ == "__main__":
    sys.exit(main())
