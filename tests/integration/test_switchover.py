"""Planned moves through the admin API with real clients: switchover (drained and forced),
a refused switchover, disable and enable with both failback policies, pause and resume.
Each test asserts what the clients saw (SQLSTATE, which server answered, what was
committed where) and what the proxy answered and recorded.

Every client call is bounded: a held client that is never released must fail the test, not
hang it.
"""
import re
import secrets
import subprocess
import threading
import time

import psycopg
import pytest

from conftest import TRUST_USER
from pgfixture import SUPERUSER, backend_entry, wait_until
from wire import RawClient

# Fast probes and a short start keep the tests short; the defaults are measured in bench/.
HEALTH = {"interval": "100ms", "timeout": "400ms"}
STARTUP = {"startup_wait": "300ms"}
# Set on the long-lived clients so that the server's pg_stat_activity shows whether the
# proxy really closed their server connections.
HELD_APP = "pgf_held"


@pytest.fixture
def password():
    """One password for both servers: passthrough authentication sends the client's to
    whichever backend serves it."""
    return "pw-" + secrets.token_hex(8)


@pytest.fixture
def pair(cluster_factory, password):
    """Two servers, a (priority 1) and b (priority 2), each with the table the tests write."""
    a = cluster_factory("a", password=password)
    b = cluster_factory("b", password=password)
    for c in (a, b):
        c.psql("CREATE TABLE moved_rows (id bigserial PRIMARY KEY, port int NOT NULL, "
               "note text)")
    return a, b


def start_proxy(proxy_factory, clusters, proxy_settings=None, **failover):
    backends = [backend_entry(c.name, i + 1, c.port, password=c.password)
                for i, c in enumerate(clusters)]
    sections = {"health": dict(HEALTH), "failover": dict(STARTUP, **failover)}
    settings = dict({"connect_timeout": "5s"}, **(proxy_settings or {}))
    return proxy_factory(clusters[0], backends=backends, sections=sections, **settings)


def conninfo(proxy, password, application_name="pgf_test"):
    return ("host=127.0.0.1 port=%d user=%s password=%s dbname=postgres sslmode=disable "
            "application_name=%s" % (proxy.port, SUPERUSER, password, application_name))


def connect(proxy, password, application_name="pgf_test"):
    return psycopg.connect(conninfo(proxy, password, application_name), autocommit=True,
                           connect_timeout=10)


def served_by(proxy, password):
    """The server port a new client through the proxy lands on."""
    def attempt():
        with connect(proxy, password) as conn:
            return conn.execute("SELECT inet_server_port()").fetchone()[0]
    return bounded(attempt, 20)


def bounded(fn, timeout):
    """fn() in a daemon thread; its result, or its exception re-raised. A call still running
    after timeout seconds fails the test (the thread is left behind, daemon, instead of
    hanging the run)."""
    outcome = {}

    def run():
        try:
            outcome["value"] = fn()
        except BaseException as e:  # noqa: B902 - handed back to the caller
            outcome["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail("a client call did not return within %ss" % timeout, pytrace=False)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class Background:
    """fn() started now in a daemon thread; result(timeout) waits for it like bounded()."""

    def __init__(self, fn):
        self.outcome = {}
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn):
        try:
            self.outcome["value"] = fn()
        except BaseException as e:  # noqa: B902 - handed back to the caller
            self.outcome["error"] = e
        self.outcome["took"] = time.monotonic() - self.started

    def result(self, timeout):
        self.thread.join(timeout)
        if self.thread.is_alive():
            pytest.fail("a background call did not return within %ss" % timeout, pytrace=False)
        if "error" in self.outcome:
            raise self.outcome["error"]
        return self.outcome["value"]

    @property
    def took(self):
        return self.outcome["took"]


def query_error(conn, sql="SELECT 1"):
    """The psycopg error the next query on conn raises (None if it succeeds)."""
    def attempt():
        try:
            conn.execute(sql)
        except psycopg.Error as e:
            return e
        return None
    return bounded(attempt, 10)


def raw_session(proxy):
    """A long-lived session that reads the proxy's bytes itself, so that the SQLSTATE of
    an ErrorResponse sent while it is idle is seen (libpq drops it)."""
    client = RawClient(proxy.port, timeout=10)
    client.login(TRUST_USER, extra={"application_name": HELD_APP})
    rows, error = client.simple_query("SELECT inet_server_port()")
    assert error is None, error
    return client, int(rows[0][0])


def assert_pushed_57P01(client, old, new, within):
    """The proxy itself sends FATAL 57P01 to an idle session left on the old backend, within
    `within` seconds and without being asked anything, then closes it."""
    client.sock.settimeout(within)
    fields = client.expect_error()
    assert fields["C"] == "57P01" and fields["V"] == "FATAL", fields
    assert fields["M"] == "terminating connection: traffic moved from backend %s to %s" % (
        old, new), fields
    assert client.expect_closed(2)


def assert_moved_error(error, old, new):
    """What a psycopg session left on the old backend after the drain gets on its next
    query. libpq hands a FATAL that arrived while the client was idle over as a lost
    connection, without its SQLSTATE (assert_pushed_57P01 checks that on the wire)."""
    assert error is not None, "the query on the old backend's session succeeded"
    assert isinstance(error, psycopg.OperationalError), repr(error)
    assert error.sqlstate in (None, "57P01"), (error.sqlstate, str(error))
    assert "traffic moved from backend %s to %s" % (old, new) in str(error), str(error)


def held_sessions(cluster):
    """Server sessions of the long-lived test clients on cluster, as its server counts them."""
    return int(cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s'"
                            % HELD_APP))


def status(proxy):
    code, body = proxy.admin("GET", "/status")
    assert code == 200, body
    return body


def backend_status(proxy, name):
    return next(b for b in status(proxy)["backends"] if b["name"] == name)


def events(proxy, kind=None):
    code, body = proxy.admin("GET", "/events")
    assert code == 200, body
    return [e for e in body["events"] if kind is None or e["kind"] == kind]


def switchover(proxy, to, reason="test", force=None):
    body = {"to": to, "reason": reason}
    if force is not None:
        body["force"] = force
    began = time.monotonic()
    code, answer = proxy.admin("POST", "/switchover", body, timeout=60)
    return code, answer, time.monotonic() - began


def psql_through(proxy, cluster, sql, timeout=30):
    """psql through the proxy: (exit status, stdout, stderr, seconds taken)."""
    began = time.monotonic()
    result = subprocess.run(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
                            env=proxy.env(cluster), capture_output=True, text=True,
                            timeout=timeout)
    return (result.returncode, result.stdout.strip(), result.stderr.strip(),
            time.monotonic() - began)


# ---- switchover ----


PGBENCH_SCRIPT = "INSERT INTO moved_rows (port, note) VALUES (inet_server_port(), 'pgbench');\n"


def test_switchover_under_pgbench_new_connection_per_transaction_loses_nothing(
        pair, proxy_factory, password, tmp_path):
    a, b = pair
    proxy = start_proxy(proxy_factory, [a, b], drain_timeout="5s")
    assert served_by(proxy, password) == a.port
    script = tmp_path / "insert.sql"
    script.write_text(PGBENCH_SCRIPT)

    # Four clients on each of two threads. pgbench -C connects synchronously, so a connect
    # held at the proxy would stop the thread's other clients from finishing (and closing)
    # the transaction they have in flight: the drain would wait on pgbench. New connections
    # during the drain therefore log in to the target at once and only their first query
    # waits for the switch.
    bench = subprocess.Popen(
        ["pgbench", "-C", "-n", "-c", "8", "-j", "2", "-T", "20", "-f", str(script)],
        env=proxy.env(a), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(7)
        assert bench.poll() is None, bench.communicate()
        code, answer, took = switchover(proxy, "b")
        out, err = bench.communicate(timeout=60)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait(10)

    print("switchover answer: %s (HTTP call took %.3fs)" % (answer, took))
    for line in out.splitlines():
        if re.search(r"latency|tps|failed|processed|connection time", line):
            print("pgbench: " + line)
    print("pgbench exit status %s, stderr:\n%s" % (bench.returncode, err))
    assert code == 200, answer
    assert answer["ok"] is True and answer["active"] == "b" and answer["forced"] is False
    assert answer["drain_ms"] < 1000, answer
    assert answer["closed_sessions"] == 0, answer
    assert bench.returncode == 0, out + err
    assert re.search(r"^number of failed transactions: 0 ", out, re.M), out
    processed = int(re.search(r"number of transactions actually processed: (\d+)", out)[1])

    on_a = int(a.psql("SELECT count(*) FROM moved_rows WHERE port = %d" % a.port))
    on_b = int(b.psql("SELECT count(*) FROM moved_rows WHERE port = %d" % b.port))
    assert on_a > 0 and on_b > 0, (on_a, on_b)
    assert on_a + on_b == processed, (on_a, on_b, processed)
    assert a.psql("SELECT count(*) FROM moved_rows WHERE port <> %d" % a.port) == "0"
    assert b.psql("SELECT count(*) FROM moved_rows WHERE port <> %d" % b.port) == "0"

    switches = [e for e in events(proxy, "switch") if e["to"] == "b"]
    assert len(switches) == 1, events(proxy)
    assert switches[0]["from"] == "a" and switches[0]["epoch"] == answer["epoch"]
    assert switches[0]["who"].startswith("admin:127.0.0.1:"), switches[0]
    assert "test" in switches[0]["reason"], switches[0]
    assert served_by(proxy, password) == b.port


def test_switchover_drains_idle_sessions_for_drain_timeout_then_closes_them_with_57P01(
        pair, proxy_factory, password):
    a, b = pair
    proxy = start_proxy(proxy_factory, [a, b], drain_timeout="2s")
    idle = [connect(proxy, password, HELD_APP) for _ in range(2)]
    in_tx = connect(proxy, password, HELD_APP)
    raw, raw_port = raw_session(proxy)
    try:
        assert raw_port == a.port
        for conn in idle + [in_tx]:
            assert conn.execute("SELECT inet_server_port()").fetchone()[0] == a.port
        in_tx.execute("BEGIN")
        in_tx.execute("INSERT INTO moved_rows (port, note) VALUES (inet_server_port(), "
                      "'uncommitted')")
        assert held_sessions(a) == 4

        move = Background(lambda: switchover(proxy, "b"))
        # A client arriving during the drain is held, not refused, and lands on b.
        assert wait_until(lambda: status(proxy)["paused"], 1.5, interval=0.02)
        arriving = Background(lambda: served_by(proxy, password))
        code, answer, took = move.result(30)
        assert code == 200, answer
        # Landing on b shows it was held until the switch: nothing was routable before.
        assert arriving.result(20) == b.port
        assert arriving.took > 0.3, arriving.took

        # The four sessions stayed on a through the whole drain, so it lasted drain_timeout.
        assert 1.9 <= took < 4.0, took
        assert 1950 <= answer["drain_ms"] <= 3000, answer
        assert answer["closed_sessions"] == 4, answer
        assert answer["active"] == "b" and answer["forced"] is False

        # The proxy closed them at the switch, not at their next query.
        assert_pushed_57P01(raw, "a", "b", within=2.0)
        assert wait_until(lambda: held_sessions(a) == 0, 3), held_sessions(a)
        for conn in idle + [in_tx]:
            assert_moved_error(query_error(conn), "a", "b")
    finally:
        raw.close()
        for conn in idle + [in_tx]:
            conn.close()

    assert a.psql("SELECT count(*) FROM moved_rows") == "0"
    assert b.psql("SELECT count(*) FROM moved_rows") == "0"
    assert served_by(proxy, password) == b.port
    after = status(proxy)
    assert after["paused"] is False and after["active"] == "b"
    assert after["epoch"] == answer["epoch"]
    assert backend_status(proxy, "a")["fenced"] is True


def test_forced_switchover_does_not_wait_and_closes_old_sessions_at_once(
        pair, proxy_factory, password):
    a, b = pair
    proxy = start_proxy(proxy_factory, [a, b], drain_timeout="10s")
    held = connect(proxy, password, HELD_APP)
    raw, raw_port = raw_session(proxy)
    try:
        assert raw_port == a.port
        assert held.execute("SELECT inet_server_port()").fetchone()[0] == a.port
        epoch = status(proxy)["epoch"]

        code, answer, took = switchover(proxy, "b", force=True)
        assert code == 200, answer
        assert took < 3.0, took
        assert answer["forced"] is True and answer["active"] == "b"
        assert answer["drain_ms"] < 1000 and answer["epoch"] == epoch + 1, answer

        assert_pushed_57P01(raw, "a", "b", within=2.0)
        assert wait_until(lambda: held_sessions(a) == 0, 3), held_sessions(a)
        assert_moved_error(query_error(held), "a", "b")
    finally:
        raw.close()
        held.close()
    assert served_by(proxy, password) == b.port
    assert status(proxy)["paused"] is False


def test_switchover_to_a_stopped_backend_is_refused_and_pauses_nothing(
        pair, proxy_factory, password):
    a, b = pair
    # A drain or a hold would cost seconds, far above the bounds below.
    proxy = start_proxy(proxy_factory, [a, b], drain_timeout="10s")
    held = connect(proxy, password, HELD_APP)
    try:
        assert held.execute("SELECT inet_server_port()").fetchone()[0] == a.port
        epoch = status(proxy)["epoch"]
        b.stop()
        assert wait_until(lambda: backend_status(proxy, "b")["state"] == "down", 10), \
            backend_status(proxy, "b")

        code, answer, took = switchover(proxy, "b")
        assert code == 409, answer
        assert "not eligible" in answer["error"], answer
        assert took < 3.0, took

        after = status(proxy)
        assert after["paused"] is False and after["active"] == "a" and after["epoch"] == epoch
        assert held.execute("SELECT inet_server_port()").fetchone()[0] == a.port
        rc, out, err, took = psql_through(proxy, a, "SELECT inet_server_port()")
        assert rc == 0 and out == str(a.port), err
        assert took < 5.0, took
    finally:
        held.close()
    assert [e for e in events(proxy, "switch") if e["to"] == "b"] == []


def test_second_switchover_while_the_first_drains_is_refused(pair, proxy_factory, password):
    a, b = pair
    proxy = start_proxy(proxy_factory, [a, b], drain_timeout="4s")
    held = connect(proxy, password, HELD_APP)
    try:
        assert held.execute("SELECT 1").fetchone()[0] == 1
        first = Background(lambda: switchover(proxy, "b"))
        assert wait_until(lambda: status(proxy)["moving"] is not None, 2, interval=0.02)

        code, answer, took = switchover(proxy, "b", reason="second")
        assert code == 409, answer
        assert "under way" in answer["error"], answer
        assert took < 2.0, took
        code, answer = proxy.admin("POST", "/backends/a/disable", {"reason": "during"})
        assert code == 409 and "under way" in answer["error"], answer

        code, answer, took = first.result(30)
        assert code == 200 and answer["active"] == "b", answer
        assert answer["closed_sessions"] == 1, answer
        assert_moved_error(query_error(held), "a", "b")
    finally:
        held.close()
    assert len([e for e in events(proxy, "switch") if e["to"] == "b"]) == 1
    assert backend_status(proxy, "a")["disabled"] is False


# ---- disable and enable ----


def disable_active_then_enable(proxy, password, a, b):
    assert served_by(proxy, password) == a.port
    code, answer = proxy.admin("POST", "/backends/a/disable", {"reason": "maintenance"})
    assert code == 200, answer
    assert answer["active"] == "b", answer
    assert served_by(proxy, password) == b.port
    entry = backend_status(proxy, "a")
    assert entry["disabled"] is True and entry["eligible"] is False, entry
    switch = [e for e in events(proxy, "switch") if e["to"] == "b"]
    assert len(switch) == 1 and switch[0]["from"] == "a", events(proxy)
    assert switch[0]["who"].startswith("admin:"), switch[0]

    code, answer = proxy.admin("POST", "/backends/a/enable", {"reason": "done"})
    assert code == 200, answer
    entry = backend_status(proxy, "a")
    assert entry["disabled"] is False and entry["fenced"] is False, entry
    return time.monotonic()


def test_disabling_the_active_backend_moves_traffic_and_manual_failback_stays(
        pair, proxy_factory, password):
    a, b = pair
    proxy = start_proxy(proxy_factory, [a, b], drain_timeout="2s")
    disable_active_then_enable(proxy, password, a, b)
    # Several probe intervals with a healthy, enabled a: manual failback stays on b.
    time.sleep(1.5)
    assert served_by(proxy, password) == b.port
    assert status(proxy)["active"] == "b"
    assert backend_status(proxy, "a")["eligible"] is True
    assert [e for e in events(proxy, "switch") if e["to"] == "a" and e["from"] == "b"] == []


def test_enable_with_auto_failback_returns_to_the_preferred_backend(
        pair, proxy_factory, password):
    a, b = pair
    proxy = start_proxy(proxy_factory, [a, b], drain_timeout="2s", failback="auto",
                        failback_after="1s")
    enabled_at = disable_active_then_enable(proxy, password, a, b)
    assert wait_until(lambda: served_by(proxy, password) == a.port, 6)
    assert time.monotonic() - enabled_at >= 0.9
    back = [e for e in events(proxy, "switch") if e["from"] == "b" and e["to"] == "a"]
    assert len(back) == 1, events(proxy)
    assert back[0]["reason"].startswith("failback"), back[0]
    assert status(proxy)["active"] == "a"


def test_disabling_the_active_backend_with_no_other_to_take_over_is_refused(
        pair, proxy_factory, password):
    a, b = pair
    proxy = start_proxy(proxy_factory, [a, b], drain_timeout="2s")
    assert served_by(proxy, password) == a.port
    code, answer, _ = switchover(proxy, "b")
    assert code == 200 and answer["active"] == "b", answer
    epoch = answer["epoch"]
    # a is healthy but fenced after the switchover: the policy would route to nothing.
    code, answer = proxy.admin("POST", "/backends/b/disable", {"reason": "repair"})
    assert code == 409, answer
    assert "would leave no backend to route to" in answer["error"], answer
    assert "a: fenced" in answer["error"], answer
    state = status(proxy)
    assert (state["active"], state["epoch"], state["paused"]) == ("b", epoch, False), state
    assert backend_status(proxy, "b")["disabled"] is False
    assert served_by(proxy, password) == b.port
    refused = [e for e in events(proxy, "operator") if "disable b refused" in e["reason"]]
    assert len(refused) == 1, events(proxy)

    # force takes it out anyway: nothing is active, as asked.
    code, answer = proxy.admin("POST", "/backends/b/disable", {"force": True})
    assert code == 200 and answer["active"] is None, answer


# ---- pause and resume ----


def test_pause_holds_new_clients_until_pause_timeout_then_57P03_and_resume_serves(
        pair, proxy_factory, password):
    a, b = pair
    proxy = start_proxy(proxy_factory, [a, b], pause_timeout="2s")
    assert served_by(proxy, password) == a.port

    code, answer = proxy.admin("POST", "/pause", {"reason": "upgrade"})
    assert code == 200 and answer["paused"] is True, answer
    assert status(proxy)["paused"] is True

    by_asyncpg = Background(lambda: proxy.login_error(password))
    rc, out, err, took = psql_through(proxy, a, "SELECT 1")
    assert rc != 0, out
    assert "paused" in err and "pause_timeout" in err, err
    assert 1.5 <= took <= 6.0, took
    refused = by_asyncpg.result(15)
    assert refused is not None and refused[0] == "57P03", refused
    assert 1.5 <= by_asyncpg.took <= 6.0, by_asyncpg.took

    code, answer = proxy.admin("POST", "/resume", {"reason": "upgrade done"})
    assert code == 200 and answer["paused"] is False, answer
    rc, out, err, took = psql_through(proxy, a, "SELECT inet_server_port()")
    assert rc == 0 and out == str(a.port), err
    assert took < 3.0, took

    # Resumed before its pause_timeout: a held client is released and served.
    code, answer = proxy.admin("POST", "/pause")
    assert code == 200, answer
    held = Background(lambda: psql_through(proxy, a, "SELECT inet_server_port()"))
    time.sleep(0.5)
    assert held.thread.is_alive(), held.outcome
    code, answer = proxy.admin("POST", "/resume")
    assert code == 200, answer
    rc, out, err, took = held.result(15)
    assert rc == 0 and out == str(a.port), err
    assert 0.4 <= took < 4.0, took
    assert status(proxy)["paused"] is False
    kinds = [e["reason"] for e in events(proxy, "operator") if e["who"].startswith("admin:")]
    assert [r.split(":")[0] for r in kinds] == ["pause", "resume", "pause", "resume"], kinds


# ---- holds outlasting the login limits ----


def test_client_held_by_a_drain_longer_than_connect_timeout_is_served_by_the_target(
        pair, proxy_factory, password):
    a, b = pair
    proxy = start_proxy(proxy_factory, [a, b], {"connect_timeout": "1s"}, drain_timeout="2s")
    held = connect(proxy, password, HELD_APP)
    try:
        assert held.execute("SELECT 1").fetchone()[0] == 1
        move = Background(lambda: switchover(proxy, "b"))
        assert wait_until(lambda: status(proxy)["paused"], 1.5, interval=0.02)
        arriving = Background(lambda: served_by(proxy, password))
        code, answer, _ = move.result(30)
        assert code == 200 and answer["closed_sessions"] == 1, answer
        # Held for most of the 2 s drain, more than connect_timeout: the hold is a wait
        # for the operator's move, not time spent trying to reach a backend.
        assert arriving.result(20) == b.port
        assert arriving.took > 0.3, arriving.took
        assert_moved_error(query_error(held), "a", "b")
    finally:
        held.close()


@pytest.mark.parametrize("limit", ["connect_timeout", "startup_timeout"])
def test_client_held_by_a_pause_longer_than_login_limits_is_served_on_resume(
        pair, proxy_factory, password, limit):
    a, b = pair
    proxy = start_proxy(proxy_factory, [a, b], {limit: "1s"}, pause_timeout="10s")
    assert served_by(proxy, password) == a.port

    code, answer = proxy.admin("POST", "/pause", {"reason": "longer than %s" % limit})
    assert code == 200, answer
    held = Background(lambda: psql_through(proxy, a, "SELECT inet_server_port()"))
    time.sleep(1.6)
    assert held.thread.is_alive(), held.outcome
    code, answer = proxy.admin("POST", "/resume")
    assert code == 200, answer
    # pause_timeout (10 s) is what bounds a hold; the login limits start once it is over.
    rc, out, err, took = held.result(15)
    assert rc == 0 and out == str(a.port), err
    assert 1.5 <= took < 5.0, took
