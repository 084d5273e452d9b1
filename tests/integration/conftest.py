"""pytest fixtures: one PostgreSQL server per test file, a pgfailover per test.

A proxy that exits non-zero, has to be killed, or whose log holds a sanitizer report fails
the test that started it.
"""
import pytest

from pgfixture import Cluster, Proxy, backend_entry

# A role pg_hba lets in without a password, for the raw-protocol tests: they check the
# proxy's own handling of packets, not the server's authentication.
TRUST_USER = "pgf_trust"


def make_cluster(name="pg", hba_lines=(), settings=None, password=None):
    cluster = Cluster(hba_lines=["host all %s 127.0.0.1/32 trust" % TRUST_USER] + list(hba_lines),
                      settings=settings, name=name, password=password)
    try:
        cluster.init().start()
        cluster.psql("CREATE ROLE %s LOGIN" % TRUST_USER)
    except Exception:
        cluster.destroy()
        raise
    return cluster


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "report_" + report.when, report)


def call_failed(request):
    report = getattr(request.node, "report_call", None)
    return report is not None and report.failed


@pytest.fixture(scope="module")
def cluster():
    cluster = make_cluster()
    yield cluster
    cluster.destroy()


@pytest.fixture
def cluster_factory():
    """Servers a test may break (kill -9, stop -m immediate) without harming the others."""
    made = []

    def make(name="pg", hba_lines=(), settings=None, password=None):
        made.append(make_cluster(name, hba_lines, settings, password))
        return made[-1]

    def make_standby(primary, name="standby"):
        """A streaming standby of primary, started and caught up."""
        standby = Cluster(name=name).init_standby_of(primary)
        made.append(standby)
        standby.start()
        return standby

    make.standby = make_standby
    yield make
    for cluster in made:
        cluster.destroy()


@pytest.fixture
def proxy_factory(request):
    """make(cluster, backends=None, sections=None, **proxy_settings) -> a started Proxy.

    Without backends, the proxy has one backend, pg1, at cluster's port.
    """
    made = []

    def make(cluster, backends=None, sections=None, **proxy_settings):
        if backends is None:
            backends = [backend_entry("pg1", 1, cluster.port, password=cluster.password)]
        proxy = Proxy(backends, proxy=proxy_settings, sections=sections)
        made.append(proxy)
        return proxy.start()

    yield make
    problems = []
    for proxy in made:
        proxy.stop()
        # Read before destroy(), which removes the folder of a run that had no problems.
        tail = proxy.log_tail(200)
        found = proxy.destroy()
        if found or call_failed(request):
            print("---- pgfailover log (%s) ----\n%s" % (proxy.base, tail))
        problems += found
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture
def proxy(cluster, proxy_factory):
    return proxy_factory(cluster)
