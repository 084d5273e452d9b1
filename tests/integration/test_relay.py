"""Session-mode relay through pgfailover with passthrough authentication: real clients (psql,
pgbench, psycopg, asyncpg) against a real PostgreSQL, each result checked exactly."""
import asyncio
import hashlib
import os
import re
import subprocess
import threading
import time

import psycopg
import pytest

from pgfixture import SUPERUSER, wait_until


def test_psql_query_reaches_the_backend(cluster, proxy):
    assert proxy.port != cluster.port

    out = proxy.psql(cluster, "SELECT inet_server_port(), current_user, 6 * 7")

    assert out == "%d|%s|42" % (cluster.port, SUPERUSER)


def test_psycopg_session_keeps_its_server_connection(cluster, proxy):
    with proxy.connect(cluster) as conn:
        first = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        conn.execute("SET application_name = 'relay-test'")
        for _ in range(20):
            assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == first
        assert conn.execute("SHOW application_name").fetchone()[0] == "relay-test"


def test_each_client_gets_its_own_backend_key(cluster, proxy):
    with proxy.connect(cluster) as a, proxy.connect(cluster) as b:
        seen = [c.info.backend_pid for c in (a, b)]
        server = [c.execute("SELECT pg_backend_pid()").fetchone()[0] for c in (a, b)]

    assert seen[0] != seen[1]
    assert server[0] != server[1]
    # The key a client holds is the proxy's, not the server's.
    assert not set(seen) & set(server)


# ---- pgbench ----


@pytest.fixture(scope="module")
def pgbench_db(cluster):
    """pgbench -i run once, through a proxy of its own."""
    from pgfixture import Proxy, backend_entry
    backends = [backend_entry("pg1", 1, cluster.port, password=cluster.password)]
    proxy = Proxy(backends, name="pgbench-init").start()
    try:
        result = subprocess.run(["pgbench", "-i", "-s", "2", "-q"], env=proxy.env(cluster),
                                capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stderr
        assert "done in" in result.stderr, result.stderr
    finally:
        problems = proxy.destroy()
    assert not problems, problems
    assert cluster.psql("SELECT count(*) FROM pgbench_accounts") == "200000"
    return cluster


def run_pgbench(proxy, cluster, mode, select_only):
    argv = ["pgbench", "-n", "-M", mode, "-c", "4", "-j", "2", "-T", "3"]
    if select_only:
        argv.append("-S")
    result = subprocess.run(argv, env=proxy.env(cluster), capture_output=True, text=True,
                            timeout=60)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
@pytest.mark.parametrize("select_only", [True, False], ids=["select-only", "tpcb"])
def test_pgbench_runs_without_failed_transactions(pgbench_db, proxy, mode, select_only):
    rc, out = run_pgbench(proxy, pgbench_db, mode, select_only)

    assert rc == 0, out
    assert "query mode: %s" % mode in out, out
    assert "number of failed transactions: 0 (0.000%)" in out, out
    processed = re.search(r"number of transactions actually processed: (\d+)", out)
    assert processed and int(processed.group(1)) > 0, out


# ---- COPY ----


def copy_payload(rows):
    lines = []
    for i in range(rows):
        digest = hashlib.sha256(str(i).encode()).hexdigest()
        lines.append("%d\t%s%s\n" % (i, digest, "x" * (i % 97)))
    return "".join(lines).encode()


def test_copy_in_and_out_round_trip(cluster, proxy):
    data = copy_payload(40000)
    assert len(data) > 3 * 1024 * 1024

    with proxy.connect(cluster) as conn:
        conn.execute("DROP TABLE IF EXISTS copy_rt")
        conn.execute("CREATE TABLE copy_rt (id int PRIMARY KEY, payload text NOT NULL)")
        with conn.cursor() as cur:
            with cur.copy("COPY copy_rt FROM STDIN") as copy:
                for offset in range(0, len(data), 65536):
                    copy.write(data[offset:offset + 65536])
            assert cur.rowcount == 40000

        server_md5 = conn.execute(
            "SELECT md5(string_agg(id || E'\\t' || payload || E'\\n', '' ORDER BY id))"
            " FROM copy_rt").fetchone()[0]

        out = bytearray()
        with conn.cursor() as cur:
            with cur.copy("COPY (SELECT * FROM copy_rt ORDER BY id) TO STDOUT") as copy:
                for chunk in copy:
                    out += chunk

    assert server_md5 == hashlib.md5(data).hexdigest()
    assert hashlib.md5(out).hexdigest() == hashlib.md5(data).hexdigest()
    assert len(out) == len(data)


def test_copy_error_midstream_leaves_the_session_usable(cluster, proxy):
    with proxy.connect(cluster) as conn:
        conn.execute("DROP TABLE IF EXISTS copy_bad")
        conn.execute("CREATE TABLE copy_bad (id int)")
        with pytest.raises(psycopg.errors.InvalidTextRepresentation) as err:
            with conn.cursor() as cur:
                with cur.copy("COPY copy_bad FROM STDIN") as copy:
                    copy.write(b"1\n2\nnot-a-number\n4\n")

        assert err.value.sqlstate == "22P02"
        assert conn.execute("SELECT count(*) FROM copy_bad").fetchone()[0] == 0
        assert conn.execute("SELECT 1").fetchone()[0] == 1


# ---- cancel ----


def test_cancel_stops_a_running_query(cluster, proxy):
    with proxy.connect(cluster) as conn:
        cancel_at = []

        def cancel_soon():
            time.sleep(0.5)
            cancel_at.append(time.monotonic())
            conn.cancel()

        thread = threading.Thread(target=cancel_soon)
        thread.start()
        with pytest.raises(psycopg.errors.QueryCanceled) as err:
            conn.execute("SELECT pg_sleep(10)")
        returned_at = time.monotonic()
        thread.join(5)

        assert err.value.sqlstate == "57014"
        assert returned_at - cancel_at[0] < 1.0
        assert conn.execute("SELECT 7").fetchone()[0] == 7


def test_cancel_reaches_only_its_own_client(cluster, proxy):
    with proxy.connect(cluster) as victim, proxy.connect(cluster) as bystander:
        outcome = {}

        def bystander_sleeps():
            try:
                bystander.execute("SELECT pg_sleep(2)")
                outcome["bystander"] = "finished"
            except psycopg.Error as e:
                outcome["bystander"] = e.sqlstate

        thread = threading.Thread(target=bystander_sleeps)
        thread.start()
        timer = threading.Timer(0.5, victim.cancel)
        timer.start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            victim.execute("SELECT pg_sleep(10)")
        thread.join(10)
        timer.join(5)

    assert outcome == {"bystander": "finished"}


def test_cancel_while_idle_changes_nothing(cluster, proxy):
    with proxy.connect(cluster) as conn:
        conn.cancel()
        time.sleep(0.2)
        assert conn.execute("SELECT pg_sleep(0.3), 5").fetchone()[1] == 5


# ---- LISTEN / NOTIFY ----


def test_listen_notify_between_two_clients(cluster, proxy):
    with proxy.connect(cluster) as listener, proxy.connect(cluster) as sender:
        received = []
        listener.add_notify_handler(received.append)
        listener.execute("LISTEN relay_channel")
        sender_pid = sender.execute("SELECT pg_backend_pid()").fetchone()[0]

        sender.execute("NOTIFY relay_channel, 'hello through the proxy'")

        def arrived():
            listener.execute("SELECT 1")
            return received
        assert wait_until(arrived, 5)

    assert [(n.channel, n.payload, n.pid) for n in received] == [
        ("relay_channel", "hello through the proxy", sender_pid)]


# ---- large values ----


def test_fifty_megabyte_value_round_trips(cluster, proxy):
    value = os.urandom(25 * 1024 * 1024).hex()
    expected = hashlib.md5(value.encode()).hexdigest()

    with proxy.connect(cluster) as conn:
        conn.execute("DROP TABLE IF EXISTS big_value")
        conn.execute("CREATE TABLE big_value (v text)")
        conn.execute("INSERT INTO big_value VALUES (%s)", (value,))
        server_md5, length = conn.execute(
            "SELECT md5(v), length(v) FROM big_value").fetchone()
        back = conn.execute("SELECT v FROM big_value").fetchone()[0]
        conn.execute("DROP TABLE big_value")

    assert length == 50 * 1024 * 1024
    assert server_md5 == expected
    assert hashlib.md5(back.encode()).hexdigest() == expected


# ---- authentication passthrough ----


def test_wrong_password_gets_the_backends_28P01(cluster, proxy):
    import asyncpg

    async def attempt():
        return await asyncpg.connect(host="127.0.0.1", port=proxy.port, user=SUPERUSER,
                                     password="not-" + cluster.password, database="postgres",
                                     ssl=False, timeout=10)

    with pytest.raises(asyncpg.exceptions.InvalidPasswordError) as err:
        asyncio.run(attempt())

    assert err.value.sqlstate == "28P01"
    assert 'password authentication failed for user "postgres"' in str(err.value)


def test_right_password_through_asyncpg(cluster, proxy):
    import asyncpg

    async def attempt():
        conn = await asyncpg.connect(host="127.0.0.1", port=proxy.port, user=SUPERUSER,
                                     password=cluster.password, database="postgres",
                                     ssl=False, timeout=10)
        try:
            return await conn.fetchval("SELECT inet_server_port()")
        finally:
            await conn.close()

    assert asyncio.run(attempt()) == cluster.port
