"""Limits and ends of a session: max_message_size, max_client_connections, a client that
vanishes mid-transaction, a server that dies or terminates the session."""
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time

import psycopg
import pytest

from conftest import TRUST_USER
from pgfixture import wait_until
from wire import RawClient, error_fields, query_message, startup_packet


def assert_still_serving(cluster, proxy):
    assert proxy.psql(cluster, "SELECT 'still serving'") == "still serving"


# ---- max_message_size ----


MB = 1024 * 1024


@pytest.fixture
def small_message_proxy(cluster, proxy_factory):
    return proxy_factory(cluster, max_message_size="1MB")


def test_message_claiming_over_max_message_size_gets_08P01(cluster, small_message_proxy):
    proxy = small_message_proxy
    with RawClient(proxy.port) as client:
        client.login(TRUST_USER)
        start = time.monotonic()

        client.send(b"Q" + struct.pack("!I", MB + 1))

        fields = client.expect_error()
        assert fields["C"] == "08P01"
        assert time.monotonic() - start < 1.0
        assert client.expect_closed()
    assert_still_serving(cluster, proxy)


def test_message_under_max_message_size_is_relayed(cluster, small_message_proxy):
    proxy = small_message_proxy
    sql = "SELECT length('%s')" % ("x" * (MB - 100))
    with RawClient(proxy.port, timeout=10) as client:
        client.login(TRUST_USER)
        rows, error = client.simple_query(sql)
        assert (rows, error) == ([[str(MB - 100)]], None)


def test_bogus_length_below_four_gets_08P01(cluster, proxy):
    with RawClient(proxy.port) as client:
        client.login(TRUST_USER)

        client.send(b"Q" + struct.pack("!I", 3))

        assert client.expect_error()["C"] == "08P01"
        assert client.expect_closed()
    assert_still_serving(cluster, proxy)


def test_over_a_gigabyte_is_refused_at_the_default_limit(cluster, proxy):
    with RawClient(proxy.port) as client:
        client.login(TRUST_USER)

        client.send(b"Q" + struct.pack("!I", 0x7FFFFFF0))

        assert client.expect_error()["C"] == "08P01"
        assert client.expect_closed()
    assert_still_serving(cluster, proxy)


# ---- max_client_connections ----


def test_client_over_max_client_connections_gets_53300(cluster, proxy_factory):
    proxy = proxy_factory(cluster, max_client_connections=3)
    held = [proxy.connect(cluster) for _ in range(3)]
    try:
        for conn in held:
            assert conn.execute("SELECT 1").fetchone() == (1,)

        with RawClient(proxy.port) as fourth:
            fourth.send(startup_packet({"user": TRUST_USER, "database": "postgres"}))
            fields = fourth.expect_error()
            assert fields["C"] == "53300"
            assert fourth.expect_closed()

        held.pop().close()

        def admitted():
            try:
                with proxy.connect(cluster) as conn:
                    return conn.execute("SELECT 'admitted'").fetchone()[0]
            except psycopg.OperationalError:
                return None
        assert wait_until(admitted, 5, interval=0.1) == "admitted"
    finally:
        for conn in held:
            conn.close()


# ---- a client that vanishes ----


HOLDER = textwrap.dedent("""
    import sys, time, psycopg
    conn = psycopg.connect(sys.argv[1], connect_timeout=10)
    conn.execute("INSERT INTO vanish VALUES (1)")
    conn.execute("LOCK TABLE vanish IN ACCESS EXCLUSIVE MODE")
    print(conn.execute("SELECT pg_backend_pid()").fetchone()[0], flush=True)
    time.sleep(60)
""")


def test_client_killed_mid_transaction_releases_its_server_session(cluster, proxy):
    cluster.psql("DROP TABLE IF EXISTS vanish; CREATE TABLE vanish (n int)")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, proxy.conninfo(cluster)],
                              stdout=subprocess.PIPE, text=True)
    try:
        backend_pid = int(holder.stdout.readline())
        assert cluster.psql("SELECT state FROM pg_stat_activity WHERE pid = %d"
                            % backend_pid) == "idle in transaction"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)

    def session_gone():
        return cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE pid = %d"
                            % backend_pid) == "0"
    assert wait_until(session_gone, 5)
    assert cluster.psql("SET lock_timeout = '1s'; LOCK TABLE vanish IN ACCESS EXCLUSIVE MODE;"
                        " SELECT count(*) FROM vanish") == "0"
    assert_still_serving(cluster, proxy)


def test_client_reset_mid_query_releases_its_server_session(cluster, proxy):
    with RawClient(proxy.port) as client:
        client.login(TRUST_USER)
        rows, _ = client.simple_query("SELECT pg_backend_pid()")
        backend_pid = int(rows[0][0])
        client.send(query_message("SELECT pg_sleep(30)"))
        time.sleep(0.2)
        # SO_LINGER 0: the close sends a reset, as a crashed client's kernel would.
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def session_gone():
        return cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE pid = %d"
                            % backend_pid) == "0"
    assert wait_until(session_gone, 5)


# ---- a server that goes away ----


def test_killed_backend_gets_an_idle_client_08006(cluster_factory, proxy_factory):
    cluster = cluster_factory("crash")
    proxy = proxy_factory(cluster)
    with RawClient(proxy.port) as client:
        client.login(TRUST_USER)
        rows, _ = client.simple_query("SELECT pg_backend_pid()")

        cluster.kill_backend(int(rows[0][0]))

        fields = client.expect_error()
        assert fields["C"] == "08006"
        assert fields["S"] == "FATAL"
        assert client.expect_closed()

    def recovered():
        try:
            return proxy.psql(cluster, "SELECT 'recovered'", check=False) == "recovered"
        except subprocess.TimeoutExpired:
            return False
    assert wait_until(recovered, 30, interval=0.5)


def test_killed_backend_fails_a_running_query_with_08006(cluster_factory, proxy_factory):
    cluster = cluster_factory("crash-busy")
    proxy = proxy_factory(cluster)
    with RawClient(proxy.port, timeout=10) as client:
        client.login(TRUST_USER)
        rows, _ = client.simple_query("SELECT pg_backend_pid()")
        client.simple_query("BEGIN")
        client.send(query_message("SELECT pg_sleep(10)"))
        time.sleep(0.3)
        start = time.monotonic()

        cluster.kill_backend(int(rows[0][0]))

        fields = client.expect_error()
        assert fields["C"] == "08006"
        assert fields["M"].startswith("server connection to backend pg1 lost")
        assert fields["D"] == "The outcome of the transaction in progress is unknown."
        assert time.monotonic() - start < 1.0
        assert client.expect_closed()


def test_killed_backend_ends_a_psycopg_query_promptly(cluster_factory, proxy_factory):
    cluster = cluster_factory("crash-psycopg")
    proxy = proxy_factory(cluster)
    with proxy.connect(cluster) as conn:
        backend_pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        killer = threading.Timer(0.5, cluster.kill_backend, (backend_pid,))
        killer.start()
        start = time.monotonic()

        with pytest.raises(psycopg.OperationalError) as err:
            conn.execute("SELECT pg_sleep(10)")
        killer.join(5)

        # libpq drops the error's SQLSTATE when the close follows it; the text remains.
        assert "server connection to backend pg1 lost" in str(err.value)
        assert time.monotonic() - start < 1.5
        assert conn.closed


def test_terminated_backend_relays_the_servers_own_error(cluster, proxy):
    with RawClient(proxy.port) as client:
        client.login(TRUST_USER)
        rows, _ = client.simple_query("SELECT pg_backend_pid()")

        assert cluster.psql("SELECT pg_terminate_backend(%s)" % rows[0][0]) == "t"

        fields = client.expect_error()
        assert fields["C"] == "57P01"
        assert fields["S"] == "FATAL"
        # The server's FATAL said it all: no second error from the proxy.
        assert client.expect_closed()
    assert_still_serving(cluster, proxy)


def test_stopped_server_gets_an_idle_client_08006(cluster_factory, proxy_factory):
    cluster = cluster_factory("stopped")
    proxy = proxy_factory(cluster)
    with RawClient(proxy.port) as client:
        client.login(TRUST_USER)

        cluster.stop_immediate()

        # An immediate shutdown sends only a WARNING (57P01) before the server goes away;
        # the error comes from the proxy. When the health checks mark the backend down
        # before the relay has read the WARNING, the session ends on the router's word
        # and the WARNING is not relayed.
        seen = client.read_until((b"E",))
        assert [kind for kind, _ in seen[:-1]] in ([b"N"], [])
        if len(seen) == 2:
            assert error_fields(seen[0][1])["C"] == "57P01"
        assert error_fields(seen[-1][1])["C"] == "08006"
        assert "backend pg1" in error_fields(seen[-1][1])["M"]
        assert client.expect_closed()
