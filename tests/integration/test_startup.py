"""The first packets a client sends, byte for byte: encryption requests, the startup packet's
limits and malformations, protocol version negotiation, cancel requests and the startup
deadline. After every bad client, a normal client must still be served."""
import struct
import time

import pytest

from conftest import TRUST_USER
from pgfixture import SUPERUSER
from wire import (GSSENC_REQUEST, SSL_REQUEST, TERMINATE, RawClient, cancel_packet,
                  error_fields, query_message, request_packet, startup_packet)


def assert_still_serving(cluster, proxy):
    assert proxy.psql(cluster, "SELECT 'still serving'") == "still serving"
    assert proxy.running()


def login_and_query(client):
    client.login(TRUST_USER)
    rows, error = client.simple_query("SELECT current_user, 40 + 2")
    assert error is None
    assert rows == [[TRUST_USER, "42"]]
    client.send(TERMINATE)
    assert client.expect_closed()


# ---- encryption requests ----


@pytest.mark.parametrize("code", [SSL_REQUEST, GSSENC_REQUEST], ids=["ssl", "gssenc"])
def test_encryption_request_is_refused_and_startup_continues(cluster, proxy, code):
    with RawClient(proxy.port) as client:
        client.send(request_packet(code))

        assert client.read_byte() == b"N"
        login_and_query(client)
    assert_still_serving(cluster, proxy)


def test_gssenc_then_ssl_requests_both_refused(cluster, proxy):
    # libpq with gssencmode=prefer and sslmode=prefer asks for GSS first, then TLS.
    with RawClient(proxy.port) as client:
        client.send(request_packet(GSSENC_REQUEST))
        assert client.read_byte() == b"N"
        client.send(request_packet(SSL_REQUEST))
        assert client.read_byte() == b"N"
        login_and_query(client)


def test_libpq_sslmode_prefer_falls_back_to_plaintext(cluster, proxy):
    import psycopg
    with psycopg.connect(proxy.conninfo(cluster).replace("sslmode=disable", "sslmode=prefer"),
                         autocommit=True, connect_timeout=10) as conn:
        assert conn.pgconn.ssl_in_use is False
        assert conn.execute("SELECT 1").fetchone() == (1,)


# ---- startup packet limits and malformations ----


def padded_startup(total_length):
    """A valid startup packet of exactly total_length bytes."""
    base = startup_packet({"user": TRUST_USER, "database": "postgres", "application_name": ""})
    pad = total_length - len(base)
    packet = startup_packet({"user": TRUST_USER, "database": "postgres",
                             "application_name": "a" * pad})
    assert len(packet) == total_length
    return packet


def test_startup_packet_of_10000_bytes_is_accepted(cluster, proxy):
    with RawClient(proxy.port) as client:
        client.send(padded_startup(10000))
        client.finish_login()
        rows, error = client.simple_query("SELECT 1")
        assert (rows, error) == ([["1"]], None)
    assert_still_serving(cluster, proxy)


@pytest.mark.parametrize("send_body", [False, True], ids=["header-only", "whole-packet"])
def test_startup_packet_over_10000_bytes_gets_08P01(cluster, proxy, send_body):
    packet = padded_startup(10001)
    with RawClient(proxy.port) as client:
        client.send(packet if send_body else packet[:8])

        fields = client.expect_error()
        assert fields["C"] == "08P01"
        assert fields["S"] == "FATAL"
        assert client.expect_closed()
    assert_still_serving(cluster, proxy)


def framed(body):
    """An untyped packet: the length, counting itself, then body."""
    return struct.pack("!I", len(body) + 4) + body


V3 = struct.pack("!I", 3 << 16)

MALFORMED = {
    "length-below-8": struct.pack("!I", 7) + b"\0\3\0",
    "length-zero": struct.pack("!I", 0),
    "no-final-terminator": framed(V3 + b"user\0pgf_trust\0"),
    "parameter-without-value": framed(V3 + b"user\0pgf_trust\0database\0"),
    "no-user": startup_packet({"database": "postgres"}),
    "empty-user": startup_packet({"user": "", "database": "postgres"}),
    "unknown-request-code": framed(struct.pack("!I", 1234 << 16 | 9999)),
    "short-cancel-request": framed(struct.pack("!II", 80877102, 7)),
    "http-request": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
}


@pytest.mark.parametrize("packet", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_startup_gets_08P01_and_close(cluster, proxy, packet):
    with RawClient(proxy.port) as client:
        client.send(packet)

        fields = client.expect_error()
        assert fields["C"] == "08P01"
        assert client.expect_closed()
    assert_still_serving(cluster, proxy)


def test_client_closing_mid_startup_leaves_the_proxy_serving(cluster, proxy):
    packet = startup_packet({"user": TRUST_USER, "database": "postgres"})
    for cut in (1, 3, 4, 8, len(packet) - 1):
        with RawClient(proxy.port) as client:
            client.send(packet[:cut])
    assert_still_serving(cluster, proxy)


# ---- protocol versions ----


def read_negotiate(client):
    """(newest minor version offered, unsupported options) from a NegotiateProtocolVersion.
    PostgreSQL and libpq carry the whole version number in the field (3 << 16 | minor),
    although the protocol documentation calls it the minor version."""
    kind, body = client.read_message()
    assert kind == b"v", "expected NegotiateProtocolVersion, got %r %r" % (kind, body)
    version, count = struct.unpack("!II", body[:8])
    assert version >> 16 == 3, "major version %d" % (version >> 16)
    newest_minor = version & 0xFFFF
    names = [n.decode() for n in body[8:].split(b"\0")[:count]]
    return newest_minor, names


def test_protocol_3_2_is_negotiated_down_to_3_0(cluster, proxy):
    with RawClient(proxy.port) as client:
        client.send(startup_packet({"user": TRUST_USER, "database": "postgres"}, 3, 2))

        assert read_negotiate(client) == (0, [])
        client.finish_login()
        rows, error = client.simple_query("SELECT 'at 3.0'")
        assert (rows, error) == ([["at 3.0"]], None)
    assert_still_serving(cluster, proxy)


def test_unknown_protocol_option_is_named_in_the_negotiation(cluster, proxy):
    with RawClient(proxy.port) as client:
        client.send(startup_packet({"user": TRUST_USER, "database": "postgres",
                                    "_pq_.no_such_option": "on"}, 3, 0))

        assert read_negotiate(client) == (0, ["_pq_.no_such_option"])
        client.finish_login()
        rows, error = client.simple_query("SELECT 3")
        assert (rows, error) == ([["3"]], None)


def test_protocol_3_0_gets_no_negotiation(cluster, proxy):
    with RawClient(proxy.port) as client:
        seen = client.login(TRUST_USER)
        kinds = [kind for kind, _ in seen]
        assert b"v" not in kinds
        assert kinds[0] == b"R" and kinds[-1] == b"Z"
        assert kinds.count(b"K") == 1


# ---- cancel requests ----


def test_cancel_with_a_wrong_secret_cancels_nothing(cluster, proxy):
    with RawClient(proxy.port, timeout=10) as client:
        client.login(TRUST_USER)
        pid, secret = client.backend_key
        client.send(query_message("SELECT pg_sleep(1.5), 'slept'"))
        time.sleep(0.3)

        with RawClient(proxy.port) as canceller:
            canceller.send(cancel_packet(pid, secret ^ 0x5A5A))
            assert canceller.expect_closed()
        rows = []
        for kind, body in client.read_until((b"Z",)):
            assert kind != b"E", error_fields(body)
            if kind == b"D":
                rows.append(body)
        assert len(rows) == 1 and rows[0].endswith(b"slept")

        client.send(query_message("SELECT pg_sleep(10)"))
        time.sleep(0.3)
        with RawClient(proxy.port) as canceller:
            canceller.send(cancel_packet(pid, secret))
            assert canceller.expect_closed()
        start = time.monotonic()
        fields = client.expect_error()
        assert fields["C"] == "57014"
        assert time.monotonic() - start < 1.0


def test_cancel_for_an_unknown_key_is_closed_silently(cluster, proxy):
    with RawClient(proxy.port) as canceller:
        canceller.send(cancel_packet(0x7FFFFFF0, 12345))
        assert canceller.expect_closed()
    assert_still_serving(cluster, proxy)


# ---- startup deadline ----


def test_silent_client_is_closed_after_startup_timeout(cluster, proxy_factory):
    proxy = proxy_factory(cluster, startup_timeout="1s")
    with RawClient(proxy.port, timeout=5) as client:
        start = time.monotonic()

        fields = client.expect_error()
        elapsed = time.monotonic() - start
        assert fields["C"] == "08P01"
        assert "startup_timeout" in fields["M"]
        assert 0.8 <= elapsed <= 1.5
        assert client.expect_closed()
    assert_still_serving(cluster, proxy)


def test_half_sent_startup_is_closed_after_startup_timeout(cluster, proxy_factory):
    proxy = proxy_factory(cluster, startup_timeout="1s")
    packet = startup_packet({"user": TRUST_USER, "database": "postgres"})
    with RawClient(proxy.port, timeout=5) as client:
        client.send(packet[:10])
        start = time.monotonic()

        fields = client.expect_error()
        assert fields["C"] == "08P01"
        assert time.monotonic() - start <= 1.5
        assert client.expect_closed()


def test_client_stalling_in_authentication_is_closed_after_startup_timeout(cluster,
                                                                           proxy_factory):
    proxy = proxy_factory(cluster, startup_timeout="1s")
    with RawClient(proxy.port, timeout=5) as client:
        client.send(startup_packet({"user": SUPERUSER, "database": "postgres"}))
        start = time.monotonic()
        kind, body = client.read_message()
        assert kind == b"R"
        assert struct.unpack("!i", body[:4])[0] == 10  # AuthenticationSASL from the backend

        fields = client.expect_error()
        assert fields["C"] == "08P01"
        assert time.monotonic() - start <= 1.5
        assert client.expect_closed()

    # The server connection the stalled login held is gone too.
    def gone():
        return cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'postgres'"
                            " AND state IS NULL AND backend_type = 'client backend'"
                            " AND pid <> pg_backend_pid()") == "0"
    from pgfixture import wait_until
    assert wait_until(gone, 5)


def test_logged_in_client_is_not_cut_by_startup_timeout(cluster, proxy_factory):
    proxy = proxy_factory(cluster, startup_timeout="1s")
    with RawClient(proxy.port, timeout=5) as client:
        client.login(TRUST_USER)
        time.sleep(1.5)
        rows, error = client.simple_query("SELECT 'alive'")
        assert (rows, error) == ([["alive"]], None)
