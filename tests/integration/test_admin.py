"""The admin HTTP API against a running pgfailover with real backends: status, health and
readiness, Prometheus metrics, events, planned moves (switchover, disable, enable, pause)
and configuration reloads, and how every malformed or unauthorised request is refused.

Each request is real HTTP over loopback (http.client); each state change it reports is
checked against what clients of the proxy see.
"""
import http.client
import json
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from conftest import make_cluster
from pgfixture import Proxy, backend_entry, free_port, proxy_binary, render_toml, wait_until

# One password for every server, so that a client logs in through the proxy whichever
# backend serves it (passthrough authentication).
PASSWORD = "pw-admin-tests"
TOKEN = "admin-token-for-tests"
SECTIONS = {
    "health": {"interval": "100ms", "timeout": "400ms"},
    "failover": {"startup_wait": "300ms", "drain_timeout": "2s", "pause_timeout": "2s"},
}
WITH_TOKEN = dict(SECTIONS, admin={"listen": "127.0.0.1:0", "token": TOKEN})
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# ---- servers and proxies ----


@pytest.fixture(scope="module")
def pair():
    """pg1 and pg2: two healthy primaries that no test in this file stops."""
    made = []
    try:
        for name in ("pg1", "pg2"):
            made.append(make_cluster(name, password=PASSWORD))
        yield made[0], made[1]
    finally:
        for cluster in made:
            cluster.destroy()


@pytest.fixture(scope="module")
def spare():
    """pg3: a healthy server the reload tests add to a running proxy."""
    cluster = make_cluster("pg3", password=PASSWORD)
    yield cluster
    cluster.destroy()


def entries(*clusters):
    return [backend_entry(c.name, i + 1, c.port, password=c.password)
            for i, c in enumerate(clusters)]


def start(proxy_factory, clusters, sections=SECTIONS, **proxy_settings):
    """A proxy over clusters (priority in order) whose backends are all up and routed."""
    proxy_settings.setdefault("connect_timeout", "5s")
    proxy = proxy_factory(clusters[0], backends=entries(*clusters), sections=sections,
                          **proxy_settings)
    ready = wait_until(lambda: settled(status(proxy), len(clusters)), 10)
    assert ready, "backends not all up: %s\n%s" % (status(proxy), proxy.log_tail())
    return proxy


def settled(body, count):
    return (body["active"] is not None and len(body["backends"]) == count
            and all(b["state"] == "up" for b in body["backends"]))


# ---- HTTP ----


class Reply:
    def __init__(self, status, headers, text):
        self.status, self.headers, self.text = status, headers, text

    @property
    def json(self):
        return json.loads(self.text)

    def __repr__(self):
        return "HTTP %d %r" % (self.status, self.text)


def call(proxy, method, path, body=None, token=None, headers=None, source_port=None):
    """One request on a new connection. body: a dict (sent as JSON), str or bytes.
    source_port pins the client's port, which the proxy reports as who=admin:IP:PORT."""
    source = ("127.0.0.1", source_port) if source_port else None
    conn = http.client.HTTPConnection("127.0.0.1", proxy.admin_port, timeout=30,
                                      source_address=source)
    sent = dict(headers or {})
    if isinstance(body, dict):
        body = json.dumps(body)
        sent["Content-Type"] = "application/json"
    if token is not None:
        sent["Authorization"] = "Bearer " + token
    try:
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read().decode())
    finally:
        conn.close()


def get_json(proxy, path):
    reply = call(proxy, "GET", path)
    assert reply.status == 200, reply
    return reply.json


def status(proxy):
    return get_json(proxy, "/status")


def events(proxy):
    return get_json(proxy, "/events")["events"]


def backend(body, name):
    return next(b for b in body["backends"] if b["name"] == name)


def post(proxy, path, body=None, token=None, expect=200, **kwargs):
    reply = call(proxy, "POST", path, body, token, **kwargs)
    assert reply.status == expect, "%s %r\n%s" % (path, reply, proxy.log_tail(20))
    return reply.json


# ---- Prometheus text ----

SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(proxy):
    """{(name, frozenset of label pairs): value} of one /metrics answer."""
    reply = call(proxy, "GET", "/metrics")
    assert reply.status == 200, reply
    samples = {}
    for line in reply.text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, "not a Prometheus sample line: %r" % line
        labels = frozenset(LABEL.findall(match[2] or ""))
        samples[(match[1], labels)] = float(match[3])
    return samples


def sample(samples, name, **labels):
    """One sample's value, or None when the series does not exist."""
    return samples.get((name, frozenset(labels.items())))


# ---- clients ----


def served_port(proxy, timeout=10):
    """The server port a new client through the proxy lands on."""
    conninfo = ("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres "
                "sslmode=disable" % (proxy.port, PASSWORD))
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=timeout) as conn:
        return conn.execute("SELECT inet_server_port()").fetchone()[0]


def hold_session(proxy):
    """An open, idle client session through the proxy (session pooling keeps its server)."""
    conninfo = ("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres "
                "sslmode=disable" % (proxy.port, PASSWORD))
    conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
    conn.execute("SELECT 1")
    return conn


def login_error(proxy, timeout=30):
    """(SQLSTATE, message) of a refused login, or None when the login and a query work."""
    return proxy.login_error(PASSWORD, timeout=timeout)


def rewrite_config(proxy, text):
    with open(proxy.config_path, "w") as f:
        f.write(text)


# ---- status, health, readiness ----


def test_status_describes_both_backends_and_the_active_one(pair, proxy_factory):
    pg1, pg2 = pair
    proxy = start(proxy_factory, [pg1, pg2])
    body = status(proxy)

    assert body["active"] == "pg1"
    assert body["epoch"] == 1
    assert (body["deciding"], body["paused"], body["pause_reason"]) == (False, False, "")
    assert body["moving"] is None
    assert body["last_switch"]["reason"] == "startup"
    assert "pg1" in body["last_switch"]["detail"]
    assert (body["fenced"], body["disabled"], body["clients"]) == ([], [], 0)
    assert [(b["name"], b["priority"]) for b in body["backends"]] == [("pg1", 1), ("pg2", 2)]
    for entry, cluster in zip(body["backends"], pair):
        assert entry["address"] == "127.0.0.1:%d" % cluster.port
        assert (entry["state"], entry["role"]) == ("up", "primary")
        assert (entry["read_only"], entry["ready"], entry["eligible"]) == (False, True, True)
        assert (entry["fenced"], entry["disabled"]) == (False, False)
        assert (entry["route_status"], entry["why_not"], entry["last_error"]) == \
            ("eligible", "", "")
        assert isinstance(entry["latency_ms"], float) and 0 < entry["latency_ms"] < 1000
        assert entry["probes"] >= 1 and entry["failed_probes"] == 0
        assert entry["consecutive_failures"] == 0
        assert entry["seconds_in_state"] >= 0
        assert entry["server_connections"] == {"login": 0, "active": 0, "idle": 0}
    assert [b["active"] for b in body["backends"]] == [True, False]


def test_status_counts_a_held_client_and_its_server_connection(pair, proxy_factory):
    pg1, pg2 = pair
    proxy = start(proxy_factory, [pg1, pg2])
    conn = hold_session(proxy)
    try:
        body = status(proxy)
        assert body["clients"] == 1
        assert sum(backend(body, "pg1")["server_connections"].values()) == 1
        assert sum(backend(body, "pg2")["server_connections"].values()) == 0
    finally:
        conn.close()
    assert wait_until(lambda: status(proxy)["clients"] == 0, 5)


def test_healthz_and_readyz_answer_while_a_backend_is_active(pair, proxy_factory):
    proxy = start(proxy_factory, list(pair))

    healthz = call(proxy, "GET", "/healthz")
    assert (healthz.status, healthz.text) == (200, "ok\n")
    assert healthz.headers["Content-Type"].startswith("text/plain")

    readyz = call(proxy, "GET", "/readyz")
    assert readyz.status == 200
    assert readyz.headers["Content-Type"] == "application/json"
    assert readyz.json == {"ready": True}


def test_readyz_is_503_once_the_only_backend_is_down(cluster_factory, proxy_factory):
    lone = cluster_factory("lone", password=PASSWORD)
    proxy = start(proxy_factory, [lone])
    assert call(proxy, "GET", "/readyz").status == 200

    lone.stop()
    assert wait_until(lambda: call(proxy, "GET", "/readyz").status == 503, 10), \
        proxy.log_tail()
    assert call(proxy, "GET", "/readyz").json == {"ready": False, "error": "no active backend"}
    body = status(proxy)
    assert body["active"] is None
    entry = backend(body, "lone")
    assert (entry["state"], entry["route_status"], entry["eligible"]) == ("down", "down", False)
    assert entry["last_error"] != "" and entry["failed_probes"] >= 1
    # The liveness probe is about the proxy, not its backends.
    assert call(proxy, "GET", "/healthz").status == 200


def test_one_connection_serves_several_requests(pair, proxy_factory):
    proxy = start(proxy_factory, list(pair))
    conn = http.client.HTTPConnection("127.0.0.1", proxy.admin_port, timeout=10)
    try:
        answers = []
        for method, path, body in [("GET", "/status?verbose=1", None), ("GET", "/nope", None),
                                   ("POST", "/pause", '{"reason": "keep-alive"}'),
                                   ("GET", "/metrics", None), ("POST", "/resume", None)]:
            conn.request(method, path, body=body)
            response = conn.getresponse()
            answers.append((response.status, response.read()))
    finally:
        conn.close()
    assert [a[0] for a in answers] == [200, 404, 200, 200, 200]
    assert json.loads(answers[0][1])["active"] == "pg1"
    assert json.loads(answers[2][1])["changed"] is True
    assert b"pgfailover_paused 1" in answers[3][1]
    assert json.loads(answers[4][1])["paused"] is False


# ---- refused requests ----


def test_unknown_paths_are_404(pair, proxy_factory):
    proxy = start(proxy_factory, list(pair), sections=WITH_TOKEN)
    for method, path in [("GET", "/nope"), ("GET", "/"), ("POST", "/backends/pg1/frobnicate"),
                         ("POST", "/backends//disable"), ("GET", "/status/extra")]:
        reply = call(proxy, method, path, token=TOKEN)
        assert reply.status == 404, (method, path, reply)
        assert reply.json == {"error": "no such path"}


def test_wrong_method_is_405_with_allow(pair, proxy_factory):
    proxy = start(proxy_factory, list(pair), sections=WITH_TOKEN)
    for method, path, allowed in [("GET", "/switchover", "POST"), ("POST", "/status", "GET"),
                                  ("GET", "/backends/pg1/disable", "POST"),
                                  ("DELETE", "/pause", "POST"), ("PUT", "/metrics", "GET")]:
        reply = call(proxy, method, path, token=TOKEN)
        assert reply.status == 405, (method, path, reply)
        assert reply.headers["Allow"] == allowed, (method, path, reply.headers)
        assert allowed in reply.json["error"]


@pytest.mark.parametrize("path,body,message", [
    ("/pause", "{not json", "not valid JSON"),
    ("/pause", "[1, 2]", "must be a JSON object"),
    ("/pause", '"pause"', "must be a JSON object"),
    ("/pause", {"reason": "x", "until": "later"}, 'unknown field "until"'),
    ("/pause", {"reason": 42}, '"reason" must be a string'),
    ("/backends/pg2/disable", {"to": "pg2"}, 'unknown field "to"'),
    ("/switchover", None, '"to"'),
    ("/switchover", {}, '"to" must name the target backend'),
    ("/switchover", {"reason": "no target"}, '"to" must name the target backend'),
    ("/switchover", {"to": 2}, '"to" must be a string'),
    ("/switchover", {"to": None}, '"to" must be a string'),
    ("/switchover", {"to": "pg2", "force": "yes"}, '"force" must be true or false'),
    ("/switchover", {"to": "pg2", "force": 1}, '"force" must be true or false'),
], ids=["bad-json", "array", "string", "unknown-field", "reason-number", "disable-with-to",
        "switchover-no-body", "switchover-empty", "switchover-no-to", "to-number", "to-null",
        "force-string", "force-number"])
def test_bad_bodies_are_400_and_change_nothing(pair, proxy_factory, path, body, message):
    proxy = start(proxy_factory, list(pair), sections=WITH_TOKEN)
    reply = call(proxy, "POST", path, body, token=TOKEN)
    assert reply.status == 400, reply
    assert message in reply.json["error"], reply
    after = status(proxy)
    assert (after["epoch"], after["active"], after["paused"], after["disabled"]) == \
        (1, "pg1", False, [])
    assert re.search(r'admin_action who=admin:127\.0\.0\.1:\d+ path="%s" reason="" '
                     r'status=400 result=refused' % re.escape(path), proxy.log()), \
        proxy.log_tail()


def test_body_over_64k_is_413_and_logged_as_refused(pair, proxy_factory):
    proxy = start(proxy_factory, list(pair), sections=WITH_TOKEN)
    reason = "x" * (64 * 1024 + 1)
    reply = call(proxy, "POST", "/pause", '{"reason": "%s"}' % reason, token=TOKEN)
    assert reply.status == 413, reply
    assert "65536" in reply.json["error"]
    assert status(proxy)["paused"] is False
    # A refused mutating call is logged like any other, with its path.
    assert wait_until(lambda: re.search(r'admin_action who=admin:127\.0\.0\.1:\d+ '
                                        r'path="/pause" reason="" status=413 result=refused',
                                        proxy.log()), 2), proxy.log_tail(5)


def test_connections_over_the_admin_limit_get_503_and_sql_goes_on(pair, proxy_factory):
    proxy = start(proxy_factory, [pair[0]])
    idle = [socket.create_connection(("127.0.0.1", proxy.admin_port), timeout=5)
            for _ in range(64)]
    try:
        assert wait_until(lambda: "too many admin connections" in call_raw(proxy), 5)
        assert served_port(proxy) == pair[0].port
        assert "admin_connection_refused reason=too_many_connections limit=64" in proxy.log()
    finally:
        for s in idle:
            s.close()
    assert wait_until(lambda: call_raw(proxy).startswith("HTTP/1.1 200"), 5)


def call_raw(proxy):
    """GET /healthz on a raw socket; the whole answer as text (empty when reset)."""
    try:
        with socket.create_connection(("127.0.0.1", proxy.admin_port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    return data.decode(errors="replace")
                data += chunk
    except OSError:
        return ""


def test_posts_need_the_token_and_gets_do_not(pair, proxy_factory):
    proxy = start(proxy_factory, list(pair), sections=WITH_TOKEN)
    refusals = [
        ("/switchover", {"to": "pg2"}, {}),
        ("/pause", None, {}),
        ("/backends/pg1/disable", None, {"Authorization": "Bearer wrong-" + TOKEN}),
        ("/reload", None, {"Authorization": "Bearer " + TOKEN[:-1]}),
        ("/pause", None, {"Authorization": "Basic " + TOKEN}),
        ("/pause", None, {"Authorization": "Bearer "}),
        ("/pause", None, {"Authorization": TOKEN}),
    ]
    for path, body, headers in refusals:
        reply = call(proxy, "POST", path, body, headers=headers)
        assert reply.status == 401, (path, headers, reply)
        assert reply.headers["WWW-Authenticate"].startswith("Bearer"), reply.headers
        assert "Authorization" in reply.json["error"]

    after = status(proxy)
    assert (after["epoch"], after["active"], after["paused"], after["disabled"]) == \
        (1, "pg1", False, [])
    assert [e["kind"] for e in events(proxy)].count("operator") == 0
    assert len(re.findall(r"status=401 result=refused", proxy.log())) == len(refusals)

    for path in ("/status", "/events", "/metrics", "/healthz", "/readyz"):
        assert call(proxy, "GET", path).status == 200, path
    accepted = post(proxy, "/pause", {"reason": "with the token"}, token=TOKEN)
    assert (accepted["ok"], accepted["paused"], accepted["changed"]) == (True, True, True)
    assert status(proxy)["paused"] is True


def test_switchover_refusals_are_404_and_409(pair, proxy_factory):
    proxy = start(proxy_factory, list(pair))
    unknown = post(proxy, "/switchover", {"to": "pg9"}, expect=404)
    assert "pg9" in unknown["error"]
    active = post(proxy, "/switchover", {"to": "pg1"}, expect=409)
    assert "already the active backend" in active["error"]
    for action in ("disable", "enable"):
        missing = post(proxy, "/backends/pg9/%s" % action, expect=404)
        assert "pg9" in missing["error"]
    assert (status(proxy)["epoch"], status(proxy)["active"]) == (1, "pg1")


def test_switchover_to_a_stopped_backend_is_409_not_eligible(pair, cluster_factory,
                                                             proxy_factory):
    pg1 = pair[0]
    stopped = cluster_factory("stopped", password=PASSWORD)
    proxy = start(proxy_factory, [pg1, stopped])
    stopped.stop()
    assert wait_until(lambda: backend(status(proxy), "stopped")["state"] == "down", 10)

    refused = post(proxy, "/switchover", {"to": "stopped", "reason": "try"}, expect=409)
    assert refused["error"].startswith("stopped is not eligible: down"), refused
    assert (status(proxy)["epoch"], status(proxy)["active"]) == (1, "pg1")
    assert served_port(proxy) == pg1.port


def check_config(cluster, admin):
    proxy = Proxy(entries(cluster), sections={"admin": admin}, name="check")
    try:
        return subprocess.run([proxy_binary(), "check-config", proxy.config_path],
                              capture_output=True, text=True, timeout=30)
    finally:
        proxy.destroy()


def test_a_non_loopback_admin_address_without_a_token_refuses_to_start(pair):
    pg1 = pair[0]
    proxy = Proxy(entries(pg1), sections={"admin": {"listen": "0.0.0.0:0"}}, name="open-admin")
    try:
        with pytest.raises(RuntimeError) as failure:
            proxy.start(timeout=15)
        assert "exited with" in str(failure.value)
        assert proxy.proc.returncode not in (0, None)
        assert "admin.token" in proxy.log(), proxy.log()
        assert "] listening " not in proxy.log() and "admin_listening" not in proxy.log()
    finally:
        problems = proxy.destroy()
        # The refused start is the expected outcome, so nothing is kept for debugging.
        shutil.rmtree(proxy.base, ignore_errors=True)
        assert [p for p in problems if "exited with status" not in p] == []

    refused = check_config(pg1, {"listen": "0.0.0.0:0"})
    assert refused.returncode != 0 and "admin.token" in refused.stdout + refused.stderr
    accepted = check_config(pg1, {"listen": "0.0.0.0:0", "token": TOKEN})
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr


# ---- metrics ----


def test_promtool_accepts_the_metrics(pair, proxy_factory):
    pg1, pg2 = pair
    proxy = start(proxy_factory, [pg1, pg2])
    proxy.psql(pg1, "SELECT 1")
    post(proxy, "/switchover", {"to": "pg2"})
    assert served_port(proxy) == pg2.port

    reply = call(proxy, "GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    for family in ("backend_up", "backend_state", "backend_role", "backend_fenced",
                   "backend_disabled", "probe_duration_seconds", "active_backend", "epoch",
                   "paused", "failovers_total", "failover_duration_seconds",
                   "client_connections", "client_connections_total",
                   "server_connections", "received_bytes_total", "sent_bytes_total",
                   "errors_total", "hook_runs_total", "admin_requests_total"):
        assert "# TYPE pgfailover_%s " % family in reply.text, family
    checked = subprocess.run(["/usr/bin/promtool", "check", "metrics"], input=reply.text,
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, "promtool:\n%s%s" % (checked.stdout, checked.stderr)


def test_backend_gauges_follow_health(pair, proxy_factory):
    pg1, pg2 = pair
    proxy = start(proxy_factory, [pg1, pg2])
    m = scrape(proxy)
    for name in ("pg1", "pg2"):
        assert sample(m, "pgfailover_backend_up", backend=name) == 1
        assert sample(m, "pgfailover_backend_state", backend=name, state="up") == 1
        assert sample(m, "pgfailover_backend_state", backend=name, state="down") == 0
        assert sample(m, "pgfailover_backend_role", backend=name, role="primary") == 1
        assert sample(m, "pgfailover_backend_fenced", backend=name) == 0
        assert sample(m, "pgfailover_backend_disabled", backend=name) == 0
        assert sample(m, "pgfailover_probe_duration_seconds_count", backend=name) >= 1
    assert sample(m, "pgfailover_active_backend", backend="pg1") == 1
    assert sample(m, "pgfailover_active_backend", backend="pg2") == 0
    assert sample(m, "pgfailover_epoch") == 1
    assert sample(m, "pgfailover_paused") == 0
    assert sample(m, "pgfailover_failovers_total", **{"from": "none", "to": "pg1",
                                                      "reason": "startup"}) == 1

    post(proxy, "/pause", {"reason": "gauge"})
    post(proxy, "/backends/pg2/disable")
    m = scrape(proxy)
    assert sample(m, "pgfailover_paused") == 1
    assert sample(m, "pgfailover_backend_disabled", backend="pg2") == 1


def test_client_counters_grow_with_connections(pair, proxy_factory):
    pg1, pg2 = pair
    proxy = start(proxy_factory, [pg1, pg2])
    before = scrape(proxy)
    connections = 4
    for i in range(connections):
        assert proxy.psql(pg1, "SELECT %d" % i) == str(i)
    after = scrape(proxy)

    def grew(name):
        return sample(after, name) - sample(before, name)

    assert grew("pgfailover_client_connections_total") >= connections
    # Each client sent at least a startup packet (8 bytes and more) and a Terminate (5);
    # each got at least AuthenticationOk (9) and ReadyForQuery (6).
    assert grew("pgfailover_received_bytes_total") >= connections * 13
    assert grew("pgfailover_sent_bytes_total") >= connections * 15

    def clients_now():
        m = scrape(proxy)
        return [sample(m, "pgfailover_client_connections", state=s)
                for s in ("login", "active", "waiting")]

    assert wait_until(lambda: clients_now() == [0, 0, 0], 5), clients_now()

    conn = hold_session(proxy)
    try:
        held = scrape(proxy)
        in_use = sum(sample(held, "pgfailover_server_connections", backend="pg1", state=s)
                     for s in ("login", "active", "idle"))
        assert in_use == 1
        assert sum(sample(held, "pgfailover_client_connections", state=s)
                   for s in ("login", "active", "waiting")) == 1
    finally:
        conn.close()


def test_switchover_moves_the_failover_metrics(pair, proxy_factory):
    pg1, pg2 = pair
    proxy = start(proxy_factory, [pg1, pg2])
    assert sample(scrape(proxy), "pgfailover_failover_duration_seconds_count") == 0

    post(proxy, "/switchover", {"to": "pg2", "reason": "metrics"})
    m = scrape(proxy)
    switched = {"from": "pg1", "to": "pg2", "reason": "switchover"}
    assert sample(m, "pgfailover_failovers_total", **switched) == 1
    assert sample(m, "pgfailover_epoch") == 2
    assert sample(m, "pgfailover_active_backend", backend="pg2") == 1
    assert sample(m, "pgfailover_active_backend", backend="pg1") == 0
    assert sample(m, "pgfailover_backend_fenced", backend="pg1") == 1
    # The outage is measured to the first client served after the switch.
    assert sample(m, "pgfailover_failover_duration_seconds_count") == 0

    assert served_port(proxy) == pg2.port
    m = scrape(proxy)
    assert sample(m, "pgfailover_failover_duration_seconds_count") == 1
    assert 0 <= sample(m, "pgfailover_failover_duration_seconds_sum") < 5
    assert sample(m, "pgfailover_failovers_total", **switched) == 1


def test_errors_sent_by_the_proxy_are_counted_by_class(pair, proxy_factory):
    pg1 = pair[0]
    proxy = start(proxy_factory, [pg1], connect_timeout="1s")
    before = sample(scrape(proxy), "pgfailover_errors_total", sqlstate_class="57")

    refused = call(proxy, "POST", "/backends/pg1/disable", {"reason": "errors test"})
    assert refused.status == 409, refused
    assert "would leave no backend to route to" in refused.json["error"], refused
    disabled = post(proxy, "/backends/pg1/disable", {"reason": "errors test", "force": True})
    assert (disabled["active"], disabled["epoch"]) == (None, 2)
    assert call(proxy, "GET", "/readyz").status == 503
    error = login_error(proxy)
    assert error is not None and error[0] == "57P03", error
    assert "disabled" in error[1], error

    m = scrape(proxy)
    assert sample(m, "pgfailover_errors_total", sqlstate_class="57") == before + 1
    assert sample(m, "pgfailover_backend_disabled", backend="pg1") == 1
    assert sample(m, "pgfailover_active_backend", backend="pg1") == 0


def test_admin_requests_are_counted_by_route_and_code(pair, proxy_factory):
    proxy = start(proxy_factory, list(pair))
    before = scrape(proxy)
    for _ in range(3):
        status(proxy)
    call(proxy, "GET", "/nope")
    call(proxy, "GET", "/switchover")
    post(proxy, "/backends/pg9/disable", expect=404)
    after = scrape(proxy)

    def grew(path, code):
        name = "pgfailover_admin_requests_total"
        return (sample(after, name, path=path, code=code) or 0) - \
            (sample(before, name, path=path, code=code) or 0)

    assert grew("/status", "200") == 3
    assert grew("other", "404") == 1
    assert grew("/switchover", "405") == 1
    assert grew("/backends/{name}/disable", "404") == 1
    # The scrape that made `before` is counted once it has been answered.
    assert grew("/metrics", "200") == 1


# ---- events and the action log ----


def test_operator_calls_appear_in_events_with_who_and_reason(pair, proxy_factory):
    pg1, pg2 = pair
    proxy = start(proxy_factory, [pg1, pg2])
    ports = {}
    for step, path, body in [("pause", "/pause", {"reason": "migration 42"}),
                             ("resume", "/resume", {"reason": "migration done"}),
                             ("switchover", "/switchover",
                              {"to": "pg2", "reason": "kernel update"})]:
        ports[step] = free_port()
        post(proxy, path, body, source_port=ports[step])

    found = events(proxy)
    operator = [e for e in found if e["kind"] == "operator"]
    assert [(e["who"], e["reason"]) for e in operator] == [
        ("admin:127.0.0.1:%d" % ports["pause"], "pause: migration 42"),
        ("admin:127.0.0.1:%d" % ports["resume"], "resume: migration done"),
        ("admin:127.0.0.1:%d" % ports["switchover"], "switchover to pg2: kernel update"),
    ]
    assert operator[-1]["backend"] == "pg2"
    assert [e["epoch"] for e in operator] == [1, 1, 2]

    switch = [e for e in found if e["kind"] == "switch"]
    assert [(e["from"], e["to"], e["epoch"]) for e in switch] == [(None, "pg1", 1),
                                                                  ("pg1", "pg2", 2)]
    who = "admin:127.0.0.1:%d" % ports["switchover"]
    assert switch[1]["who"] == who
    assert switch[1]["reason"] == "switchover: switchover to pg2 by %s: kernel update" % who
    fenced = [e for e in found if e["kind"] == "fenced"]
    assert [(e["backend"], e["epoch"]) for e in fenced] == [("pg1", 2)]

    now = datetime.now(timezone.utc)
    times = [e["time"] for e in found]
    assert all(RFC3339_MS.match(t) for t in times), times
    assert times == sorted(times)
    parsed = [datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
              for t in times]
    assert now - timedelta(seconds=60) < parsed[0] <= parsed[-1] <= now + timedelta(seconds=1)


def test_every_mutating_call_is_logged_with_its_result(pair, proxy_factory):
    proxy = start(proxy_factory, list(pair))
    port = free_port()
    post(proxy, "/pause", {"reason": "migration 42"}, source_port=port)
    refused_port = free_port()
    post(proxy, "/switchover", {"to": "pg1", "reason": "again"}, expect=409,
         source_port=refused_port)
    log = proxy.log()
    assert ('admin_action who=admin:127.0.0.1:%d path="/pause" reason="migration 42" '
            'status=200 result=ok' % port) in log, proxy.log_tail()
    assert ('admin_action who=admin:127.0.0.1:%d path="/switchover" reason="again" '
            'status=409 result=refused' % refused_port) in log, proxy.log_tail()


# ---- planned moves ----


def test_switchover_moves_new_clients_and_fences_the_old_backend(pair, proxy_factory):
    pg1, pg2 = pair
    proxy = start(proxy_factory, [pg1, pg2])
    assert served_port(proxy) == pg1.port

    answer = post(proxy, "/switchover", {"to": "pg2", "reason": "planned"})
    assert (answer["ok"], answer["epoch"], answer["active"]) == (True, 2, "pg2")
    assert (answer["closed_sessions"], answer["forced"]) == (0, False)
    assert 0 <= answer["drain_ms"] < 1000
    assert served_port(proxy) == pg2.port
    body = status(proxy)
    assert (body["active"], body["epoch"], body["fenced"]) == ("pg2", 2, ["pg1"])
    assert body["last_switch"]["reason"] == "switchover"
    assert backend(body, "pg1")["route_status"] == "fenced"

    # Switching back to a fenced backend is allowed: the operator chose it.
    back = post(proxy, "/switchover", {"to": "pg1", "force": True})
    assert (back["epoch"], back["active"], back["forced"], back["drain_ms"]) == \
        (3, "pg1", True, 0)
    assert served_port(proxy) == pg1.port


def test_switchover_waits_for_a_session_to_finish_within_drain_timeout(pair, proxy_factory):
    pg1, pg2 = pair
    proxy = start(proxy_factory, [pg1, pg2])
    conn = hold_session(proxy)
    closer = threading.Timer(0.6, conn.close)
    closer.start()
    try:
        began = time.monotonic()
        answer = post(proxy, "/switchover", {"to": "pg2"})
        took = time.monotonic() - began
    finally:
        closer.join()
    assert answer["closed_sessions"] == 0, answer
    assert 300 <= answer["drain_ms"] < 1900, answer
    assert 0.4 <= took < 1.9
    assert served_port(proxy) == pg2.port


def test_a_second_planned_move_during_a_drain_is_409(pair, proxy_factory):
    pg1, pg2 = pair
    proxy = start(proxy_factory, [pg1, pg2])
    conn = hold_session(proxy)
    answers = []
    mover = threading.Thread(target=lambda: answers.append(
        post(proxy, "/switchover", {"to": "pg2", "reason": "first"})))
    mover.start()
    try:
        assert wait_until(lambda: status(proxy)["moving"] is not None, 2)
        assert status(proxy)["moving"] == "a switchover to pg2"
        second = post(proxy, "/backends/pg2/disable", expect=409)
        assert "under way" in second["error"], second
        third = post(proxy, "/switchover", {"to": "pg2"}, expect=409)
        assert "under way" in third["error"], third
        mover.join(10)
        # The held session outlived drain_timeout: it was counted, closed, and the move
        # went ahead.
        assert answers and answers[0]["active"] == "pg2", answers
        assert answers[0]["closed_sessions"] == 1
        assert answers[0]["drain_ms"] >= 1900
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    finally:
        mover.join(10)
        conn.close()
    body = status(proxy)
    assert (body["moving"], body["epoch"], body["active"]) == (None, 2, "pg2")
    assert body["disabled"] == []


def test_disabling_the_active_backend_moves_to_the_next_and_enable_unfences(pair,
                                                                           proxy_factory):
    pg1, pg2 = pair
    proxy = start(proxy_factory, [pg1, pg2])
    disabled = post(proxy, "/backends/pg1/disable", {"reason": "maintenance"})
    assert (disabled["ok"], disabled["epoch"], disabled["active"]) == (True, 2, "pg2")
    body = status(proxy)
    assert (body["active"], body["disabled"]) == ("pg2", ["pg1"])
    entry = backend(body, "pg1")
    assert (entry["disabled"], entry["eligible"], entry["route_status"]) == \
        (True, False, "disabled")
    assert served_port(proxy) == pg2.port

    enabled = post(proxy, "/backends/pg1/enable", {"reason": "maintenance over"})
    assert (enabled["ok"], enabled["epoch"], enabled["active"]) == (True, 2, "pg2")
    body = status(proxy)
    assert (body["disabled"], body["fenced"]) == ([], [])
    entry = backend(body, "pg1")
    assert (entry["disabled"], entry["fenced"], entry["route_status"]) == \
        (False, False, "eligible")
    # Enabling makes pg1 usable again; it does not take traffic back by itself.
    assert served_port(proxy) == pg2.port


def test_enable_unfences_the_backend_a_switchover_left(pair, proxy_factory):
    pg1, pg2 = pair
    proxy = start(proxy_factory, [pg1, pg2])
    post(proxy, "/switchover", {"to": "pg2"})
    assert status(proxy)["fenced"] == ["pg1"]

    enabled = post(proxy, "/backends/pg1/enable")
    assert (enabled["epoch"], enabled["active"]) == (2, "pg2")
    body = status(proxy)
    assert (body["fenced"], body["disabled"]) == ([], [])
    assert backend(body, "pg1")["route_status"] == "eligible"
    assert [(e["kind"], e["backend"]) for e in events(proxy)
            if e["kind"] in ("fenced", "unfenced")] == [("fenced", "pg1"), ("unfenced", "pg1")]


def test_pause_holds_new_clients_until_resume(pair, proxy_factory):
    proxy = start(proxy_factory, list(pair))
    port = free_port()
    paused = post(proxy, "/pause", {"reason": "vacuum full"}, source_port=port)
    assert (paused["paused"], paused["changed"]) == (True, True)
    body = status(proxy)
    assert body["paused"] is True
    assert body["pause_reason"] == "traffic is paused by admin:127.0.0.1:%d: vacuum full" % port
    again = post(proxy, "/pause")
    assert (again["paused"], again["changed"]) == (True, False)

    outcome = {}

    def connect():
        began = time.monotonic()
        outcome["port"] = served_port(proxy)
        outcome["took"] = time.monotonic() - began

    client = threading.Thread(target=connect)
    client.start()
    time.sleep(0.8)
    assert "port" not in outcome, "a client got through while paused"
    resumed = post(proxy, "/resume", {"reason": "vacuum done"})
    assert (resumed["paused"], resumed["changed"]) == (False, True)
    client.join(10)
    assert outcome["port"] == pair[0].port
    assert 0.6 <= outcome["took"] < 1.9
    assert status(proxy)["paused"] is False


def test_a_client_paused_past_pause_timeout_gets_57P03(pair, proxy_factory):
    proxy = start(proxy_factory, list(pair))
    post(proxy, "/pause", {"reason": "migration 42"})
    began = time.monotonic()
    error = login_error(proxy)
    took = time.monotonic() - began
    assert error is not None and error[0] == "57P03", error
    assert "paused" in error[1] and "migration 42" in error[1], error
    assert 1.8 <= took < 4, took
    post(proxy, "/resume")
    assert login_error(proxy) is None


# ---- reload ----


def test_reload_of_a_broken_file_is_422_and_keeps_serving(pair, proxy_factory):
    pg1, pg2 = pair
    proxy = start(proxy_factory, [pg1, pg2])
    before = status(proxy)

    rewrite_config(proxy, proxy.config_text + "\n[failover\n")
    broken = post(proxy, "/reload", expect=422)
    assert broken["error"] == "the configuration file has errors; nothing changed"
    assert len(broken["issues"]) >= 1
    assert re.match(re.escape(proxy.config_path) + r":\d+: ", broken["issues"][0]), broken

    rewrite_config(proxy, proxy.config_text.replace("[failover]", "[failover]\nretries = 3"))
    unknown = post(proxy, "/reload", expect=422)
    assert unknown["issues"] == [
        "%s:%d: failover.retries: unknown key 'retries'" % (
            proxy.config_path, proxy.config_text.splitlines().index("[failover]") + 2)]

    after = status(proxy)
    assert (after["active"], after["epoch"]) == (before["active"], before["epoch"])
    assert [(b["name"], b["address"]) for b in after["backends"]] == \
        [(b["name"], b["address"]) for b in before["backends"]]
    assert proxy.psql(pg1, "SELECT inet_server_port()") == str(pg1.port)
    assert proxy.log().count("reload_refused") == 2
    assert "reloaded who=" not in proxy.log()


def test_reload_adds_a_backend_without_a_switch(pair, spare, proxy_factory):
    pg1, pg2 = pair
    proxy = start(proxy_factory, [pg1, pg2])
    third = render_toml({"backend": [backend_entry("pg3", 3, spare.port, password=PASSWORD)]})
    rewrite_config(proxy, proxy.config_text + "\n" + third)

    answer = post(proxy, "/reload", {"reason": "add pg3"})
    assert answer["backends"] == ["pg1", "pg2", "pg3"]
    assert (answer["restart_required"], answer["epoch"], answer["active"]) == ([], 1, "pg1")
    assert wait_until(lambda: backend(status(proxy), "pg3")["state"] == "up", 5), \
        proxy.log_tail()
    body = status(proxy)
    entry = backend(body, "pg3")
    assert (entry["priority"], entry["address"], entry["route_status"]) == \
        (3, "127.0.0.1:%d" % spare.port, "eligible")
    assert (body["active"], body["epoch"]) == ("pg1", 1)
    assert [e for e in events(proxy) if e["kind"] == "switch"][1:] == []
    assert sample(scrape(proxy), "pgfailover_backend_up", backend="pg3") == 1
    assert served_port(proxy) == pg1.port


def test_reload_names_settings_that_need_a_restart_and_keeps_them(pair, proxy_factory):
    pg1, pg2 = pair
    proxy = start(proxy_factory, [pg1, pg2])
    new_port, new_admin_port = free_port(), free_port()
    text = proxy.config_text.replace('[proxy]\nlisten = "127.0.0.1:0"',
                                     '[proxy]\nlisten = "127.0.0.1:%d"\nworkers = 1' % new_port)
    text = text.replace('[admin]\nlisten = "127.0.0.1:0"',
                        '[admin]\nlisten = "127.0.0.1:%d"' % new_admin_port)
    assert text.count(str(new_port)) == 1 and text.count(str(new_admin_port)) == 1
    rewrite_config(proxy, text)

    answer = post(proxy, "/reload")
    assert sorted(answer["restart_required"]) == ["admin.listen", "proxy.listen",
                                                  "proxy.workers"], answer
    assert (answer["epoch"], answer["active"]) == (1, "pg1")
    # The running listeners stay where they were.
    assert proxy.psql(pg1, "SELECT 1") == "1"
    assert call(proxy, "GET", "/healthz").status == 200
    for port in (new_port, new_admin_port):
        with pytest.raises(OSError):
            http.client.HTTPConnection("127.0.0.1", port, timeout=2).connect()
    assert "reload_needs_restart key=proxy.listen" in proxy.log()


def test_reload_removes_a_backend_and_its_series(pair, proxy_factory):
    pg1, pg2 = pair
    proxy = start(proxy_factory, [pg1, pg2])
    assert sample(scrape(proxy), "pgfailover_backend_up", backend="pg2") == 1
    text = proxy.config_text
    rewrite_config(proxy, text[:text.rindex("[[backend]]")])

    answer = post(proxy, "/reload")
    assert (answer["backends"], answer["epoch"], answer["active"]) == (["pg1"], 1, "pg1")
    assert [b["name"] for b in status(proxy)["backends"]] == ["pg1"]
    m = scrape(proxy)
    assert sample(m, "pgfailover_backend_up", backend="pg1") == 1
    assert [key for key in m if ("backend", "pg2") in key[1]] == []
    assert served_port(proxy) == pg1.port


def test_sighup_reloads_the_file(pair, spare, proxy_factory):
    pg1, pg2 = pair
    proxy = start(proxy_factory, [pg1, pg2])
    third = render_toml({"backend": [backend_entry("pg3", 3, spare.port, password=PASSWORD)]})
    rewrite_config(proxy, proxy.config_text + "\n" + third)

    proxy.signal(signal.SIGHUP)
    assert wait_until(lambda: len(status(proxy)["backends"]) == 3, 5), proxy.log_tail()
    assert wait_until(lambda: backend(status(proxy), "pg3")["state"] == "up", 5)
    assert "reloaded who=signal:SIGHUP" in proxy.log()
    reloads = [e for e in events(proxy) if e["kind"] == "operator"]
    assert [(e["who"], e["reason"]) for e in reloads] == [("signal:SIGHUP", "reload")]
    body = status(proxy)
    assert (body["active"], body["epoch"]) == ("pg1", 1)
