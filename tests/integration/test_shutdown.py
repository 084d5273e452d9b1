"""Graceful shutdown: on SIGTERM or SIGINT the proxy stops accepting, gives sessions
shutdown_timeout to finish, then ends the rest with 57P01 and exits 0."""
import signal
import socket
import time

import pytest

from conftest import TRUST_USER
from wire import TERMINATE, RawClient, query_message


def refuses_connections(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_idle_client_gets_57P01_after_shutdown_timeout(cluster, proxy_factory, signo):
    proxy = proxy_factory(cluster, shutdown_timeout="1s")
    with RawClient(proxy.port, timeout=5) as client:
        client.login(TRUST_USER)
        start = time.monotonic()

        proxy.signal(signo)

        fields = client.expect_error()
        elapsed = time.monotonic() - start
        assert fields["C"] == "57P01"
        assert fields["S"] == "FATAL"
        assert 0.8 <= elapsed <= 2.0
        assert client.expect_closed()
        assert proxy.wait(2.5 - (time.monotonic() - start)) == 0


def test_new_connections_are_refused_once_shutdown_starts(cluster, proxy_factory):
    proxy = proxy_factory(cluster, shutdown_timeout="5s")
    with RawClient(proxy.port, timeout=5) as client:
        client.login(TRUST_USER)

        proxy.signal(signal.SIGTERM)

        def refused():
            return refuses_connections(proxy.port)
        from pgfixture import wait_until
        assert wait_until(refused, 2)
        rows, error = client.simple_query("SELECT 'still in session'")
        assert (rows, error) == ([["still in session"]], None)
        client.send(TERMINATE)
    assert proxy.wait(3) == 0


def test_proxy_exits_as_soon_as_the_last_client_leaves(cluster, proxy_factory):
    proxy = proxy_factory(cluster, shutdown_timeout="20s")
    with RawClient(proxy.port, timeout=5) as client:
        client.login(TRUST_USER)
        proxy.signal(signal.SIGTERM)
        time.sleep(0.3)

        client.send(query_message("SELECT pg_sleep(0.5), 'finished'"))
        rows = [kind for kind, _ in client.read_until((b"Z",))]
        assert b"E" not in rows and b"D" in rows
        client.send(TERMINATE)
        left = time.monotonic()

    assert proxy.wait(3) == 0
    assert time.monotonic() - left < 1.5


def test_shutdown_with_no_clients_is_immediate(cluster, proxy_factory):
    proxy = proxy_factory(cluster, shutdown_timeout="30s")
    assert proxy.psql(cluster, "SELECT 1") == "1"
    start = time.monotonic()

    proxy.signal(signal.SIGTERM)

    assert proxy.wait(3) == 0
    assert time.monotonic() - start < 1.5
