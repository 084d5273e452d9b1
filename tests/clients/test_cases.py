"""The failure cases from the field (cases/, see cases/README.md), each run as its own process
against pgfailover in session mode with passthrough authentication, in front of one real
PostgreSQL. A case exits 0 (PASS), 77 (SKIP: its environment is missing) or anything else
(FAIL). Every case must PASS except those listed in EXPECTED_SKIPS, which must SKIP for the
stated reason, and those in NOT_RUN, which would pass without testing anything.
"""
import os
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(HERE, "cases")
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from pgfixture import SUPERUSER, Cluster, Proxy, backend_entry, free_port  # noqa: E402

CASE_TIMEOUT = 180
SKIP_EXIT = 77

# Case id -> text its SKIP line must contain.
EXPECTED_SKIPS = {
    # Client TLS is not supported yet: there is no certificate to give PGSSLROOTCERT.
    "C22": "PGSSLROOTCERT",
    # Direct TLS needs client TLS; what can run (a prompt refusal, the classic path) runs.
    "C23": "direct TLS refused promptly",
    # In session mode every client holds its own server connection: there is no pool
    # limit for MAX_SERVER_CONNS to name. The hang check before the skip still runs.
    "C35": "none hung",
}

# Case id -> why running it against the shared endpoint would prove nothing. Each runs in
# a test of its own below, with what it needs.
NOT_RUN = {
    "C33": "needs a failover during the run: test_c33_during_a_real_failover",
}

# The roles 00-setup-direct.sql creates, and replication for PGUSER (C28).
HBA_LINES = [
    "host all c27_md5 127.0.0.1/32 md5",
    "host all c25_scram 127.0.0.1/32 scram-sha-256",
    "host replication %s 127.0.0.1/32 scram-sha-256" % SUPERUSER,
]

# Environment a case could pick up from the caller and that would change what it tests.
FOREIGN_ENV = ("PGSERVICE", "PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY",
               "PGOPTIONS", "PGAPPNAME", "PGTARGETSESSIONATTRS", "PGCHANNELBINDING",
               "PGGSSENCMODE", "PGREQUIREAUTH", "EXPECT_DIRECT_TLS", "MAX_SERVER_CONNS",
               "ALLOW_LISTEN_REJECT", "DURATION", "GRACE", "CHURN", "IDLE", "BURST")


def case_files():
    return sorted(f for f in os.listdir(CASES)
                  if f[:1] == "C" and f[1:3].isdigit() and f.endswith((".py", ".sh")))


def case_id(name):
    return name.split("-", 1)[0]


class Endpoint:
    def __init__(self, cluster, proxy, blackhole_port):
        self.cluster = cluster
        self.proxy = proxy
        self.blackhole_port = blackhole_port

    def env(self, case):
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
        env.update(PGHOST="127.0.0.1", PGPORT=str(self.proxy.port), PGUSER=SUPERUSER,
                   PGPASSWORD=self.cluster.password, PGDATABASE="postgres",
                   REQUIRE_PROXY="1", PYTHONDONTWRITEBYTECODE="1")
        if case == "C34":
            env["BLACKHOLE_PORT"] = str(self.blackhole_port)
        if case == "C36":
            env["PROXY_PID"] = str(self.proxy.pid)
        return env


@pytest.fixture(scope="module")
def endpoint():
    cluster = Cluster(hba_lines=HBA_LINES, name="clients")
    proxy = None
    try:
        cluster.init().start()
        cluster.psql_file(os.path.join(CASES, "00-setup-direct.sql"))
        # A second backend at a port where C34 runs its black hole: a server that accepts
        # TCP and never answers, which the proxy's health checks must see through.
        blackhole_port = free_port()
        backends = [backend_entry("pg1", 1, cluster.port, password=cluster.password),
                    backend_entry("blackhole", 2, blackhole_port)]
        # C36 compares the proxy's memory between two identical rounds: ASan's quarantine of
        # freed blocks (256 MB by default) would grow in between and hide what it looks for.
        proxy = Proxy(backends, log_level="info", name="clients").start(
            asan_options="detect_leaks=1:abort_on_error=0:quarantine_size_mb=4")
        yield Endpoint(cluster, proxy, blackhole_port)
    finally:
        problems = proxy.destroy() if proxy else []
        if problems:
            print("---- pgfailover log (%s) ----\n%s" % (proxy.base, proxy.log_tail(200)))
        cluster.destroy()
        assert not problems, problems


def run_case(name, env):
    path = os.path.join(CASES, name)
    argv = ["/usr/bin/python3", path] if name.endswith(".py") else ["sh", path]
    try:
        result = subprocess.run(argv, cwd=CASES, env=env, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=CASE_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        pytest.fail("%s hung for more than %ds:\n%s" % (name, CASE_TIMEOUT, e.stdout or ""))
    return result.returncode, (result.stdout + result.stderr).strip()


def test_every_listed_case_exists():
    ids = {case_id(name) for name in case_files()}
    assert set(EXPECTED_SKIPS) <= ids
    assert set(NOT_RUN) <= ids


@pytest.mark.parametrize("name", case_files())
def test_case(endpoint, name):
    case = case_id(name)
    if case in NOT_RUN:
        pytest.skip(NOT_RUN[case])

    rc, out = run_case(name, endpoint.env(case))

    last = out.splitlines()[-1] if out else ""
    if case in EXPECTED_SKIPS:
        assert rc == SKIP_EXIT, "%s was expected to SKIP, got rc=%d:\n%s" % (name, rc, out)
        assert last.startswith("SKIP: ") and EXPECTED_SKIPS[case] in last, out
    else:
        assert rc == 0, "%s failed (rc=%d):\n%s\n---- proxy log ----\n%s" % (
            name, rc, out, endpoint.proxy.log_tail(30))
        assert last.startswith("PASS"), out
    assert endpoint.proxy.running(), "the proxy died during %s:\n%s" % (
        name, endpoint.proxy.log_tail(60))


def test_c33_during_a_real_failover():
    """C33's writer runs through the proxy while the preferred backend turns read-only (a
    provider's read-only mode, as a demoted primary would be): the proxy must leave it,
    and no write may keep reaching it."""
    import secrets
    import threading
    from pgfixture import wait_until

    password = "pw-" + secrets.token_hex(8)
    clusters, proxy = [], None
    try:
        for name in ("c33a", "c33b"):
            clusters.append(Cluster(name=name, password=password).init().start())
        a, b = clusters
        backends = [backend_entry("a", 1, a.port, password=password),
                    backend_entry("b", 2, b.port, password=password)]
        proxy = Proxy(backends, name="c33", sections={
            "health": {"interval": "100ms", "timeout": "300ms"}}).start()
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
        env.update(PGHOST="127.0.0.1", PGPORT=str(proxy.port), PGUSER=SUPERUSER,
                   PGPASSWORD=password, PGDATABASE="postgres", REQUIRE_PROXY="1",
                   DURATION="12", GRACE="4", PYTHONDONTWRITEBYTECODE="1")
        for c in clusters:
            c.psql("CREATE TABLE c33_probe(ts timestamptz default now(), n int)")

        outcome = {}
        runner = threading.Thread(target=lambda: outcome.update(
            result=run_case("C33-failover-readonly-probe.py", env)))
        runner.start()
        time.sleep(3)
        a.psql("ALTER SYSTEM SET default_transaction_read_only = on")
        a.psql("SELECT pg_reload_conf()")
        runner.join(60)

        rc, out = outcome["result"]
        assert rc == 0 and out.splitlines()[-1].startswith("PASS"), out
        assert wait_until(lambda: "switch from=a to=b" in proxy.log(), 5), proxy.log_tail()
        assert int(b.psql("SELECT count(*) FROM c33_probe")) > 0
    finally:
        problems = proxy.destroy() if proxy else []
        for c in clusters:
            c.destroy()
        assert not problems, problems
