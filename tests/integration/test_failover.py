"""Health checks and priority failover with real servers: a killed, frozen, refused,
read-only or demoted backend, failback policies, restarts and chains. Each fault is real
(pg_ctl stop -m immediate's SIGQUIT, SIGSTOP, a port nobody listens on), and each test
asserts what the clients saw and what the proxy decided.
"""
import json
import os
import re
import secrets
import shutil
import threading
import time

import psycopg
import pytest

from conftest import make_cluster
from pgfixture import SUPERUSER, Proxy, backend_entry, free_port, wait_until

# Fast probes keep the tests short; the defaults are measured in bench/failover.
HEALTH = {"interval": "100ms", "timeout": "300ms", "fall": 2, "rise": 2}
REPLICATION_HBA = ["host replication %s 127.0.0.1/32 scram-sha-256" % SUPERUSER]


@pytest.fixture
def password():
    """One password for every server of a test: clients log in through the proxy with it,
    whichever backend serves them (passthrough authentication)."""
    return "pw-" + secrets.token_hex(8)


def backends_for(*clusters, **per_backend):
    entries = []
    for i, c in enumerate(clusters):
        extra = dict(per_backend.get(c.name, {}))
        entries.append(backend_entry(c.name, i + 1, c.port, password=c.password, **extra))
    return entries


def start_proxy(proxy_factory, clusters, failover=None, health=None, per_backend=None,
                **proxy_settings):
    sections = {"health": dict(HEALTH, **(health or {})),
                "failover": dict({"startup_wait": "2s"}, **(failover or {}))}
    backends = backends_for(*clusters, **(per_backend or {}))
    proxy_settings.setdefault("connect_timeout", "5s")
    return proxy_factory(clusters[0], backends=backends, sections=sections, **proxy_settings)


def served_by(proxy, password, timeout=10):
    """The backend port a new client through the proxy lands on."""
    with psycopg.connect(conninfo(proxy, password), autocommit=True,
                         connect_timeout=timeout) as conn:
        return conn.execute("SELECT inet_server_port()").fetchone()[0]


# What a client logging in at the instant of a switch may get: its authentication exchange
# with the old backend cannot be replayed elsewhere (README, "Not yet").
IN_FLIGHT_LOGIN = re.compile(r"no longer usable|server connection to backend \S+ lost|"
                             r"traffic moved from backend")


def lands_on(proxy, password, port):
    """True when a new client lands on `port`; False when it lands elsewhere, or was the
    one login caught in flight by the switch being waited for."""
    try:
        return served_by(proxy, password) == port
    except psycopg.OperationalError as e:
        if IN_FLIGHT_LOGIN.search(str(e)):
            return False
        raise


def conninfo(proxy, password, user=SUPERUSER):
    return ("host=127.0.0.1 port=%d user=%s password=%s dbname=postgres sslmode=disable"
            % (proxy.port, user, password))


def connect_error(proxy, password, user=SUPERUSER, timeout=30):
    """None when a new client logs in and runs a query, else its LoginError."""
    return proxy.login_error(password, user, timeout)


def switches(proxy):
    """(from, to, epoch, reason) of every switch the proxy logged, in order."""
    pattern = re.compile(r"\] switch from=(\S+) to=(\S+) epoch=(\d+) reason=\"([^\"]*)\"")
    return [(m[1], m[2], int(m[3]), m[4]) for m in pattern.finditer(proxy.log())]


def state_file(proxy):
    with open(os.path.join(proxy.base, "state")) as f:
        return json.load(f)


class ConnectLoop:
    """New connections through the proxy, one after another, each running one query:
    records (time, backend port or None, error) until stopped."""

    def __init__(self, proxy, password, query="SELECT inet_server_port()"):
        self.proxy, self.password, self.query = proxy, password, query
        self.results = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            phase = "connect"
            try:
                with psycopg.connect(conninfo(self.proxy, self.password), autocommit=True,
                                     connect_timeout=15) as conn:
                    phase = "query"
                    port = conn.execute(self.query).fetchone()[0]
                self.results.append((time.monotonic(), port, None))
            except psycopg.Error as e:
                self.results.append((time.monotonic(), None, "%s: %s" % (phase, e)))
            time.sleep(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)

    def failures(self):
        return [r for r in self.results if r[2] is not None]

    def first_on(self, port, after):
        return next((t for t, p, _ in self.results if p == port and t >= after), None)


# ---- unplanned failover ----


def test_killed_primary_moves_new_connections_without_failures(cluster_factory, proxy_factory,
                                                                 password):
    a = cluster_factory("a", password=password)
    b = cluster_factory("b", password=password)
    proxy = start_proxy(proxy_factory, [a, b])
    assert served_by(proxy, password) == a.port

    with ConnectLoop(proxy, password) as loop:
        time.sleep(0.5)
        fault = time.monotonic()
        a.stop_immediate()
        assert wait_until(lambda: loop.first_on(b.port, fault) is not None, 10)
        time.sleep(0.3)

    # A connection whose query or (with passthrough authentication, which cannot be
    # replayed) whose login was under way on the server at the instant it died is lost;
    # every connection made after that reaches the new backend.
    lost = [r for r in loop.failures() if r[0] - fault < 0.5 and "backend a" in r[2]]
    assert len(lost) <= 1 and loop.failures() == lost, loop.failures()
    assert loop.first_on(b.port, fault) - fault < 2.0
    assert switches(proxy)[-1][:2] == ("a", "b")
    assert served_by(proxy, password) == b.port


def test_frozen_primary_is_left_and_its_clients_get_08006(cluster_factory, proxy_factory,
                                                          password):
    a = cluster_factory("a", password=password)
    b = cluster_factory("b", password=password)
    for c in (a, b):
        c.psql("CREATE TABLE rows_written (n int PRIMARY KEY)")
    proxy = start_proxy(proxy_factory, [a, b])

    sent_at = {}
    outcome = {}

    def writer():
        conn = psycopg.connect(conninfo(proxy, password), autocommit=True)
        n = 0
        try:
            while n < 100000:
                n += 1
                sent_at[n] = time.time()
                conn.execute("INSERT INTO rows_written VALUES (%s)", (n,))
        except psycopg.Error as e:
            outcome["error"] = e
            outcome["at"] = time.monotonic()
        finally:
            conn.close()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    time.sleep(0.5)
    fault = time.monotonic()
    a.freeze()
    try:
        thread.join(15)
        assert not thread.is_alive(), "the writer hung on the frozen backend"
        # The connection is lost mid-session: psycopg shows the FATAL text without its
        # SQLSTATE; the raw-protocol tests check the 08006 itself.
        assert "backend a is no longer usable" in str(outcome["error"]), outcome["error"]
        assert outcome["at"] - fault < 5
        assert served_by(proxy, password) == b.port
    finally:
        a.thaw()

    # Nothing the writer sent after the proxy marked the backend down may exist on it.
    match = re.search(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})\] \[warning\] backend down "
                      r"backend=a ", proxy.log())
    assert match, proxy.log_tail()
    down_at = time.mktime(time.strptime(match[1][:19], "%Y-%m-%d %H:%M:%S")) + \
        int(match[1][20:]) / 1000
    assert wait_until(lambda: a.psql("SELECT 1", check=False) == "1", 10)
    on_a = [int(n) for n in a.psql("SELECT n FROM rows_written").split()]
    late = [n for n in on_a if sent_at[n] > down_at + 0.001]
    assert late == []


def test_closed_port_is_never_eligible_and_says_connection_refused(cluster_factory,
                                                                   proxy_factory, password):
    b = cluster_factory("b", password=password)

    class Closed:
        name, port = "closed", free_port()
        password = b.password

    proxy = start_proxy(proxy_factory, [Closed, b])
    assert served_by(proxy, password) == b.port
    assert all(s[1] != "closed" for s in switches(proxy))

    only_closed = start_proxy(proxy_factory, [Closed], connect_timeout="1s")
    error = connect_error(only_closed, password)
    assert error is not None and error.sqlstate == "57P03"
    assert "closed" in str(error) and "connection refused" in str(error)


def test_everything_down_gets_57P03_then_serves_again(cluster_factory, proxy_factory,
                                                      password):
    a = cluster_factory("a", password=password)
    proxy = start_proxy(proxy_factory, [a], connect_timeout="1s")
    assert served_by(proxy, password) == a.port

    a.stop()
    began = time.monotonic()
    error = connect_error(proxy, password)
    assert error is not None and error.sqlstate == "57P03", error
    assert time.monotonic() - began < 3
    assert "backend a" in str(error) and "down" in str(error)

    a.start(attempts=1)
    assert wait_until(lambda: connect_error(proxy, password) is None, 10)
    assert served_by(proxy, password) == a.port


def test_ready_query_false_keeps_a_backend_out(cluster_factory, proxy_factory, password):
    a = cluster_factory("a", password=password)
    b = cluster_factory("b", password=password)
    proxy = start_proxy(proxy_factory, [a, b],
                        per_backend={"a": {"ready_query": "SELECT false"}})
    assert served_by(proxy, password) == b.port


def test_read_only_primary_is_left(cluster_factory, proxy_factory, password):
    a = cluster_factory("a", password=password)
    b = cluster_factory("b", password=password)
    proxy = start_proxy(proxy_factory, [a, b])
    assert served_by(proxy, password) == a.port

    a.psql("ALTER SYSTEM SET default_transaction_read_only = on")
    a.psql("SELECT pg_reload_conf()")
    assert wait_until(lambda: lands_on(proxy, password, b.port), 10)
    assert switches(proxy)[-1][:2] == ("a", "b")
    assert switches(proxy)[-1][3] == "read_only"


def test_standby_is_not_eligible_and_is_promoted_when_the_primary_dies(
        cluster_factory, proxy_factory, password):
    a = cluster_factory("a", hba_lines=REPLICATION_HBA, password=password)
    s = cluster_factory.standby(a, name="s")

    plain = start_proxy(proxy_factory, [s], connect_timeout="1s")
    error = connect_error(plain, password)
    assert error is not None and error.sqlstate == "57P03"
    assert "standby" in str(error) or "role" in str(error)

    proxy = start_proxy(proxy_factory, [a, s], per_backend={"s": {"promote": "sql"}})
    assert served_by(proxy, password) == a.port
    a.stop_immediate()
    assert wait_until(lambda: connect_error(proxy, password) is None and
                      served_by(proxy, password) == s.port, 20)
    assert s.psql("SELECT pg_is_in_recovery()") == "f"


# ---- policies ----


def fail_over_and_bring_back(proxy, password, a, b):
    """a serves, is killed, b takes over; then a runs again and its probes see it up."""
    assert served_by(proxy, password) == a.port
    a.stop_immediate()
    assert wait_until(lambda: lands_on(proxy, password, b.port), 10)

    a.start(attempts=1)
    assert wait_until(lambda: "backend up backend=a" in proxy.log().split("switch from=a")[-1],
                      10)


def test_manual_failback_stays_and_fences_the_old_primary(cluster_factory, proxy_factory,
                                                         password):
    a = cluster_factory("a", password=password)
    b = cluster_factory("b", password=password)
    proxy = start_proxy(proxy_factory, [a, b])
    fail_over_and_bring_back(proxy, password, a, b)
    time.sleep(1)
    assert served_by(proxy, password) == b.port
    assert "a" in state_file(proxy)["fenced"]

    # Only the fenced backend is healthy: clients get 57P03 saying so.
    b.stop_immediate()
    error = connect_error(proxy, password)
    assert error is not None and error.sqlstate == "57P03"
    assert "fenced" in str(error)


def test_auto_failback_returns_after_failback_after_and_not_before(cluster_factory,
                                                                  proxy_factory, password):
    a = cluster_factory("a", password=password)
    b = cluster_factory("b", password=password)
    proxy = start_proxy(proxy_factory, [a, b],
                        failover={"failback": "auto", "failback_after": "3s"})
    fail_over_and_bring_back(proxy, password, a, b)
    up_at = time.monotonic()
    assert served_by(proxy, password) == b.port
    assert wait_until(lambda: lands_on(proxy, password, a.port), 10)
    assert time.monotonic() - up_at >= 2.5
    assert switches(proxy)[-1][:2] == ("b", "a")
    assert switches(proxy)[-1][3] == "failback"


def test_restart_keeps_serving_from_the_backend_it_switched_to(cluster_factory,
                                                              proxy_factory, password):
    a = cluster_factory("a", password=password)
    b = cluster_factory("b", password=password)
    proxy = start_proxy(proxy_factory, [a, b])
    assert served_by(proxy, password) == a.port
    a.stop_immediate()
    assert wait_until(lambda: lands_on(proxy, password, b.port), 10)
    epoch = state_file(proxy)["epoch"]
    a.start(attempts=1)
    proxy.stop()

    again = Proxy(backends_for(a, b), proxy={"state_file": os.path.join(proxy.base, "state"),
                                             "connect_timeout": "5s"},
                  sections={"health": HEALTH, "failover": {"startup_wait": "2s"}},
                  name="restarted").start()
    try:
        time.sleep(1)
        assert served_by(again, password) == b.port
        assert state_file(proxy)["epoch"] == epoch
        assert state_file(proxy)["active"] == "b"
    finally:
        assert again.destroy() == []


def test_chain_of_three_moves_down_the_list_with_growing_epochs(cluster_factory,
                                                               proxy_factory, password):
    a = cluster_factory("a", password=password)
    b = cluster_factory("b", password=password)
    c = cluster_factory("c", password=password)
    proxy = start_proxy(proxy_factory, [a, b, c])

    held = psycopg.connect(conninfo(proxy, password), autocommit=True)
    assert held.execute("SELECT inet_server_port()").fetchone()[0] == a.port

    a.stop_immediate()
    assert wait_until(lambda: lands_on(proxy, password, b.port), 10)
    on_b = psycopg.connect(conninfo(proxy, password), autocommit=True)
    b.stop_immediate()
    assert wait_until(lambda: lands_on(proxy, password, c.port), 10)

    # Neither connection of an older epoch is reused: both are gone, with 08006.
    for conn in (held, on_b):
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
        conn.close()
    epochs = [s[2] for s in switches(proxy)]
    assert epochs == sorted(set(epochs)) and len(epochs) >= 3
    assert [s[1] for s in switches(proxy)][-2:] == ["b", "c"]


# ---- no false alarms ----


def test_wrong_password_and_too_many_connections_cause_no_switch(cluster_factory,
                                                                 proxy_factory, password):
    a = cluster_factory("a", password=password, settings={"max_connections": "8",
                                                          "superuser_reserved_connections": "1"})
    b = cluster_factory("b", password=password)
    a.psql("CREATE ROLE app LOGIN PASSWORD 'app-pw'")
    proxy = start_proxy(proxy_factory, [a, b])
    assert served_by(proxy, password) == a.port

    error = connect_error(proxy, "wrong")
    assert error is not None and error.sqlstate == "28P01", error

    held = []
    try:
        for _ in range(12):
            error = connect_error(proxy, "app-pw", user="app")
            if error is not None:
                assert error.sqlstate == "53300", error
                break
            held.append(psycopg.connect(conninfo(proxy, "app-pw", user="app"),
                                        autocommit=True, connect_timeout=10))
        else:
            pytest.fail("max_connections was never reached")
    finally:
        for conn in held:
            conn.close()
    time.sleep(1)
    assert switches(proxy)[-1][:2] == ("none", "a")
    assert served_by(proxy, password) == a.port


def test_flapping_backend_causes_no_switch_storm(cluster_factory, proxy_factory, password):
    a = cluster_factory("a", password=password)
    b = cluster_factory("b", password=password)
    # Each freeze outlasts a probe's timeout, so probes fail, but it is over long before
    # fall = 6 probes in a row can time out (a loaded test machine adds the odd slow probe).
    proxy = start_proxy(proxy_factory, [a, b], health={"fall": 6})
    assert served_by(proxy, password) == a.port
    for _ in range(8):
        a.freeze()
        time.sleep(0.5)
        a.thaw()
        time.sleep(1.0)
    failed_probes = len(re.findall(r"probe failed backend=a ", proxy.log()))
    assert failed_probes >= 4, proxy.log_tail()
    assert len(switches(proxy)) == 1
    assert served_by(proxy, password) == a.port


def test_saturating_load_on_the_active_backend_causes_no_switch(cluster_factory,
                                                                 proxy_factory, password):
    import subprocess
    a = cluster_factory("a", password=password, settings={"max_connections": "100"})
    b = cluster_factory("b", password=password)
    # The defaults: a busy server answers its probes a little later, never not at all.
    proxy = start_proxy(proxy_factory, [a, b], health={"interval": "250ms", "timeout": "400ms"})
    assert served_by(proxy, password) == a.port
    env = proxy.env(a)
    subprocess.run(["pgbench", "-i", "-q", "-s", "4"], env=env, check=True,
                   capture_output=True, timeout=120)

    result = subprocess.run(["pgbench", "-n", "-c", "64", "-j", "2", "-T", "60"], env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    processed = int(re.search(r"transactions actually processed: (\d+)", result.stdout)[1])
    assert processed > 0
    assert len(switches(proxy)) == 1
    assert "backend down" not in proxy.log()


def test_on_switch_hook_gets_the_switch_and_a_slow_one_blocks_nothing(cluster_factory,
                                                                     proxy_factory, password,
                                                                     tmp_path):
    a = cluster_factory("a", password=password)
    b = cluster_factory("b", password=password)
    out = tmp_path / "switches"
    hook = ('echo "$PGFAILOVER_FROM $PGFAILOVER_TO $PGFAILOVER_EPOCH $PGFAILOVER_REASON" '
            '>> %s; [ "$PGFAILOVER_FROM" = a ] && sleep 30; true' % out)
    proxy = start_proxy(proxy_factory, [a, b],
                        failover={"on_switch": hook, "hook_timeout": "1s"})
    assert served_by(proxy, password) == a.port
    # PGFAILOVER_FROM is empty when nothing was active before.
    assert wait_until(lambda: out.exists() and out.read_text().startswith(" a 1 startup\n"), 5)

    a.stop_immediate()
    assert wait_until(lambda: lands_on(proxy, password, b.port), 10)
    assert wait_until(lambda: "a b 2 down" in out.read_text(), 5)
    # The hook for a -> b sleeps: it is stopped at hook_timeout, logged, and routing went
    # on meanwhile (b served above while it ran).
    assert wait_until(lambda: re.search(r"on_switch finished result=\"[^\"]*tim", proxy.log()),
                      10), proxy.log_tail()


@pytest.mark.parametrize("content", ['{"epoch":3,"active":"a",', "", "garbage", "[]",
                                     '{"epoch":"x","active":null}'],
                         ids=["truncated", "empty", "garbage", "array", "wrong-type"])
def test_damaged_state_file_stops_the_start_with_its_reason(cluster_factory, content, tmp_path):
    a = cluster_factory("a")
    path = tmp_path / "state"
    path.write_text(content)
    proxy = Proxy(backends_for(a), proxy={"state_file": str(path)}, name="damaged")
    try:
        with pytest.raises(RuntimeError) as failure:
            proxy.start()
        assert "exited with 1" in str(failure.value)
        assert "start_failed" in proxy.log() and str(path) in proxy.log(), proxy.log()
        assert path.read_text() == content, "the damaged file must be left for the operator"
    finally:
        problems = proxy.destroy()
        # The refused start is the expected outcome, so nothing is kept for debugging.
        shutil.rmtree(proxy.base, ignore_errors=True)
        assert [p for p in problems if "exited with status 1" not in p] == []


def test_unwritable_state_file_stops_the_start(cluster_factory, tmp_path):
    a = cluster_factory("a")
    path = tmp_path / "missing-dir" / "state"
    proxy = Proxy(backends_for(a), proxy={"state_file": str(path)}, name="unwritable")
    try:
        with pytest.raises(RuntimeError) as failure:
            proxy.start()
        assert "exited with 1" in str(failure.value)
        assert "start_failed" in proxy.log() and "state_file" in proxy.log(), proxy.log()
    finally:
        problems = proxy.destroy()
        # The refused start is the expected outcome, so nothing is kept for debugging.
        shutil.rmtree(proxy.base, ignore_errors=True)
        assert [p for p in problems if "exited with status 1" not in p] == []
