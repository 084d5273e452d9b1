"""Real PostgreSQL clusters and pgfailover processes for the integration and client tests.

A `Cluster` is a PostgreSQL 15 server initialised in a temporary folder and listening on a
free loopback port, with the `postgres` superuser logging in by SCRAM over TCP. A `Proxy` is
a pgfailover process with a configuration written for the test. Both are stopped by process
id, never by name, and every wait is bounded.

initdb and postgres refuse to run as root, so when the tests run as root the server runs as
a dedicated system user, created once, and its folder belongs to that user.
"""
import collections
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time

PG_BIN = "/usr/lib/postgresql/15/bin"
SERVER_USER = "pgfailover-test"
SUPERUSER = "postgres"

# Lines a sanitizer prints when it finds a bug; a proxy log holding one fails its test.
SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
)


# ---- processes ----


def free_port():
    """A loopback port nothing listens on right now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_root():
    return os.geteuid() == 0


def ensure_server_user():
    """The unprivileged account PostgreSQL runs as under root: Debian's `postgres` account
    (the postgresql package creates it), else SERVER_USER, created once. Several test
    processes start at once on a new machine, so the creation is serialised by a lock."""
    for name in ("postgres", SERVER_USER):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    import fcntl
    with open("/tmp/pgfailover-test-user.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return pwd.getpwnam(SERVER_USER)
        except KeyError:
            pass
        result = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", SERVER_USER],
            capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise RuntimeError("useradd %s failed: %s" % (SERVER_USER, result.stderr.strip()))
        return pwd.getpwnam(SERVER_USER)


def as_server_user(argv):
    """The command line that runs argv as the user PostgreSQL may run as."""
    if is_root():
        return ["runuser", "-u", ensure_server_user().pw_name, "--"] + argv
    return argv


def chown_tree(path, entry):
    os.chown(path, entry.pw_uid, entry.pw_gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


def process_alive(pid):
    """True while pid runs; a zombie counts as gone, since it will never answer again."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def wait_gone(pids, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(process_alive(p) for p in pids):
            return True
        time.sleep(0.02)
    return not any(process_alive(p) for p in pids)


def signal_pid(pid, signo):
    try:
        os.kill(pid, signo)
    except ProcessLookupError:
        pass


def wait_until(predicate, timeout, interval=0.05):
    """Polls predicate until it returns a true value or timeout passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# ---- PostgreSQL ----


class Cluster:
    """One PostgreSQL server in its own temporary folder.

    hba_lines go before the catch-all `host all all 127.0.0.1/32 scram-sha-256`, in order;
    settings are extra postgresql.conf lines.
    """

    def __init__(self, hba_lines=(), settings=None, name="pg", password=None):
        self.name = name
        self.password = password or "pw-" + secrets.token_hex(8)
        self.hba_lines = list(hba_lines)
        self.settings = dict(settings or {})
        self.base = tempfile.mkdtemp(prefix="pgf-%s-" % name)
        os.chmod(self.base, 0o700)
        self.data = os.path.join(self.base, "data")
        self.socket_dir = os.path.join(self.base, "sockets")
        self.log_path = os.path.join(self.base, "postgres.log")
        self.port = None
        self._owner = ensure_server_user() if is_root() else None

    # -- life cycle --

    def init(self):
        os.mkdir(self.socket_dir)
        pwfile = os.path.join(self.base, "pwfile")
        with open(pwfile, "w") as f:
            f.write(self.password + "\n")
        if self._owner:
            chown_tree(self.base, self._owner)
        self._run(as_server_user([
            PG_BIN + "/initdb", "-D", self.data, "-U", SUPERUSER, "--pwfile", pwfile,
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
            "--locale=C", "--no-sync"]), timeout=120)
        os.unlink(pwfile)
        self.write_hba()
        return self

    def init_standby_of(self, primary):
        """A streaming-replication standby of `primary` (which must run and let the
        superuser in for replication), made with pg_basebackup -R. Same password."""
        os.mkdir(self.socket_dir)
        if self._owner:
            chown_tree(self.base, self._owner)
        env = dict(os.environ, PGPASSWORD=primary.password)
        result = subprocess.run(
            as_server_user([PG_BIN + "/pg_basebackup", "-h", "127.0.0.1", "-p",
                            str(primary.port), "-U", SUPERUSER, "-D", self.data, "-R",
                            "-X", "stream", "--no-sync"]),
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError("pg_basebackup failed: %s" % result.stdout)
        # _write_conf rewrites postgresql.auto.conf, where -R put primary_conninfo.
        with open(os.path.join(self.data, "postgresql.auto.conf")) as f:
            for line in f:
                key, _, value = line.partition("=")
                if key.strip() == "primary_conninfo":
                    self.settings["primary_conninfo"] = value.strip()
        self.password = primary.password
        self.hba_lines = list(primary.hba_lines)
        return self

    def write_hba(self):
        lines = ["local all all trust"] + self.hba_lines + [
            "host all all 127.0.0.1/32 scram-sha-256"]
        self._write_owned(os.path.join(self.data, "pg_hba.conf"), "\n".join(lines) + "\n")

    def _write_conf(self):
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": "'%s'" % self.socket_dir,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "32MB",
            "logging_collector": "off",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
        }
        conf.update(self.settings)
        text = "".join("%s = %s\n" % (k, v) for k, v in conf.items())
        self._write_owned(os.path.join(self.data, "postgresql.auto.conf"), text)

    def start(self, attempts=3):
        """Starts on a free port (a new one if another process took it meanwhile)."""
        for attempt in range(attempts):
            if self.port is None or attempt > 0:
                self.port = free_port()
            self._write_conf()
            result = subprocess.run(
                as_server_user([PG_BIN + "/pg_ctl", "-D", self.data, "-l", self.log_path,
                                "-w", "-t", "60", "start"]),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, timeout=90)
            if result.returncode == 0:
                return self
            if "could not bind" not in self.log_tail() and "in use" not in self.log_tail():
                break
        raise RuntimeError("pg_ctl start failed for %s:\n%s\n%s"
                           % (self.name, result.stdout, self.log_tail()))

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline())
        except (FileNotFoundError, ValueError):
            return None

    def is_running(self):
        pid = self.postmaster_pid()
        return pid is not None and process_alive(pid)

    def stop(self, timeout=20):
        """Fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL of the postmaster
        and every process it started."""
        pid = self.postmaster_pid()
        if pid is None or not process_alive(pid):
            return
        family = [pid] + children_of(pid)
        for signo, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5)):
            signal_pid(pid, signo)
            if wait_gone([pid], wait):
                break
        else:
            for p in family + children_of(pid):
                signal_pid(p, signal.SIGKILL)
        wait_gone(family, 10)

    def stop_immediate(self):
        """What `pg_ctl stop -m immediate` does: SIGQUIT to the postmaster, no checkpoint."""
        pid = self.postmaster_pid()
        assert pid is not None and process_alive(pid), "%s is not running" % self.name
        family = [pid] + children_of(pid)
        signal_pid(pid, signal.SIGQUIT)
        if not wait_gone(family, 10):
            for p in family:
                signal_pid(p, signal.SIGKILL)
            wait_gone(family, 5)

    def restart(self):
        self.stop()
        return self.start(attempts=1)

    def freeze(self):
        """SIGSTOP the postmaster and its children: a server that accepts TCP but answers
        nothing."""
        pid = self.postmaster_pid()
        self._frozen = [pid] + children_of(pid)
        for p in self._frozen:
            signal_pid(p, signal.SIGSTOP)

    def thaw(self):
        for p in getattr(self, "_frozen", []):
            signal_pid(p, signal.SIGCONT)
        self._frozen = []

    def kill_backend(self, pid):
        """kill -9 of one backend: the postmaster then restarts every session."""
        assert pid in children_of(self.postmaster_pid()), \
            "%d is not a process of %s" % (pid, self.name)
        signal_pid(pid, signal.SIGKILL)

    def destroy(self):
        self.thaw()
        self.stop()
        if os.environ.get("PGF_KEEP_TMP") != "1":
            shutil.rmtree(self.base, ignore_errors=True)

    # -- clients --

    def env(self, user=SUPERUSER, password=None, database="postgres"):
        """libpq environment for a direct TCP connection."""
        env = dict(os.environ)
        env.update(PGHOST="127.0.0.1", PGPORT=str(self.port), PGUSER=user,
                   PGDATABASE=database, PGPASSWORD=self.password if password is None
                   else password, PGCONNECT_TIMEOUT="10")
        env.pop("PGSERVICE", None)
        return env

    def conninfo(self, user=SUPERUSER, password=None, database="postgres"):
        return conninfo("127.0.0.1", self.port, user,
                        self.password if password is None else password, database)

    def connect(self, **kwargs):
        """A direct psycopg connection as the superuser, autocommit."""
        import psycopg
        return psycopg.connect(self.conninfo(), autocommit=True, connect_timeout=10, **kwargs)

    def psql(self, sql, database="postgres", check=True, timeout=120):
        """Runs sql directly over the Unix socket as the superuser; returns unaligned rows."""
        result = subprocess.run(
            ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.socket_dir,
             "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-c", sql],
            capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError("psql on %s failed: %s" % (self.name, result.stderr.strip()))
        return result.stdout.strip()

    def psql_file(self, path, database="postgres"):
        result = subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.socket_dir,
             "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-f", path],
            capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError("psql -f %s failed: %s" % (path, result.stderr.strip()))
        return result.stdout

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except FileNotFoundError:
            return ""

    # -- internals --

    def _run(self, argv, timeout):
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError("%s failed (%d): %s%s" % (
                os.path.basename(argv[-1] if argv[0] != "runuser" else argv[4]),
                result.returncode, result.stdout, result.stderr))
        return result

    def _write_owned(self, path, text):
        with open(path, "w") as f:
            f.write(text)
        if self._owner:
            os.chown(path, self._owner.pw_uid, self._owner.pw_gid)


def conninfo(host, port, user, password, database):
    def quote(value):
        return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
    return "host=%s port=%d user=%s password=%s dbname=%s sslmode=disable" % (
        quote(host), port, quote(user), quote(password), quote(database))


# ---- pgfailover ----


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{" + ", ".join("%s = %s" % (k, toml_value(v)) for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError("no TOML form for %r" % (value,))


def render_toml(doc):
    """doc: {section: {key: value}} or {section: [{key: value}, ...]} for arrays of tables."""
    out = []
    for section, body in doc.items():
        tables = body if isinstance(body, list) else [body]
        header = "[[%s]]" if isinstance(body, list) else "[%s]"
        for table in tables:
            out.append(header % section)
            out.extend("%s = %s" % (k, toml_value(v)) for k, v in table.items())
            out.append("")
    return "\n".join(out)


def backend_entry(name, priority, port, user=SUPERUSER, **extra):
    entry = {"name": name, "priority": priority,
             "url": "postgresql://%s@127.0.0.1:%d/postgres?sslmode=disable" % (user, port)}
    entry.update(extra)
    return entry


def read_log(path):
    """A log file's text so far; empty until the process has created it."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def proxy_binary():
    path = os.environ.get("PGFAILOVER_BIN")
    if not path:
        source = os.environ.get("PGFAILOVER_SOURCE_DIR") or os.path.abspath(
            os.path.join(os.path.dirname(__file__), "..", ".."))
        path = os.path.join(source, "build", "test", "proxy", "pgfailover")
    if not os.access(path, os.X_OK):
        raise RuntimeError("pgfailover binary not found at %s (set PGFAILOVER_BIN)" % path)
    return path


LISTENING = re.compile(r"\] listening (?:\S+ )*?proto=tcp (?:\S+ )*?address=(\S+):(\d+)")
ADMIN_LISTENING = re.compile(r"admin_listening address=(\S+):(\d+) token=")


# What a refused login said: its SQLSTATE and its message with the detail, as asyncpg reads
# them from the ErrorResponse (libpq-based drivers drop the SQLSTATE of a failed connection).
LoginError = collections.namedtuple("LoginError", "sqlstate text")
LoginError.__str__ = lambda self: "%s %s" % (self.sqlstate, self.text)


class Proxy:
    """A pgfailover process. `proxy` and `sections` override the minimal test config:
    passthrough auth, session mode, ports picked by the kernel."""

    def __init__(self, backends, proxy=None, sections=None, log_level="debug", name="proxy"):
        self.base = tempfile.mkdtemp(prefix="pgf-%s-" % name)
        self.config_path = os.path.join(self.base, "pgfailover.toml")
        self.log_path = os.path.join(self.base, "pgfailover.log")
        settings = {"listen": "127.0.0.1:0", "auth": "passthrough", "pool_mode": "session",
                    "state_file": os.path.join(self.base, "state")}
        settings.update(proxy or {})
        doc = {"proxy": settings, "admin": {"listen": "127.0.0.1:0"}}
        doc.update(sections or {})
        doc["backend"] = list(backends)
        self.config_text = render_toml(doc)
        with open(self.config_path, "w") as f:
            f.write(self.config_text)
        self.log_level = log_level
        self.proc = None
        self.port = None
        self.killed = False
        self.returncode = None

    @property
    def pid(self):
        return self.proc.pid

    def start(self, timeout=30, asan_options="detect_leaks=1:abort_on_error=0"):
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", asan_options)
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [proxy_binary(), "run", "-c", self.config_path, "--log-level", self.log_level],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = LISTENING.search(self.log())
            if match:
                self.port = int(match.group(2))
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("pgfailover exited with %d before listening:\n%s"
                                   % (self.proc.returncode, self.log()))
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("pgfailover did not log a listening line in %ds:\n%s"
                           % (timeout, self.log()))

    @property
    def admin_port(self):
        """The admin HTTP port, from the `admin_listening address=HOST:PORT` log line (logged
        just after the client listener's, so it is waited for briefly)."""
        match = wait_until(lambda: ADMIN_LISTENING.search(self.log()), 5, interval=0.01)
        if not match:
            raise AssertionError("no admin_listening line in the proxy log:\n%s"
                                 % self.log_tail())
        return int(match.group(2))

    def admin(self, method, path, body=None, token=None, timeout=30):
        """One admin API request; returns (HTTP status, parsed JSON body or None)."""
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=timeout)
        headers = {}
        payload = None
        if body is not None:
            payload = body if isinstance(body, (str, bytes)) else json.dumps(body)
            headers["Content-Type"] = "application/json"
        if token is not None:
            headers["Authorization"] = "Bearer " + token
        try:
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            text = response.read().decode("utf-8", errors="replace")
        finally:
            conn.close()
        try:
            parsed = json.loads(text) if text.strip() else None
        except ValueError:
            parsed = None
        return response.status, parsed

    def log(self):
        return read_log(self.log_path)

    def log_tail(self, lines=60):
        return "\n".join(self.log().splitlines()[-lines:])

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signo):
        self.proc.send_signal(signo)

    def wait(self, timeout):
        """The exit status, or None if it still runs after timeout seconds."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, timeout=15):
        """SIGTERM, then SIGKILL after timeout seconds; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                self.killed = True
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.returncode = self.proc.returncode
        return self.returncode

    def problems(self):
        """What makes this run a failure: a non-zero exit, a kill, a sanitizer report."""
        found = []
        if self.killed:
            found.append("pgfailover ignored SIGTERM and was killed")
        elif self.returncode not in (0, None):
            found.append("pgfailover exited with status %d" % self.returncode)
        text = self.log()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                found.append("sanitizer report in the proxy log: %r" % marker)
        return found

    def destroy(self):
        self.stop()
        problems = self.problems()
        if not problems and os.environ.get("PGF_KEEP_TMP") != "1":
            shutil.rmtree(self.base, ignore_errors=True)
        return problems

    def env(self, cluster, user=SUPERUSER, password=None, database="postgres"):
        """libpq environment for a connection through this proxy to cluster's server."""
        env = cluster.env(user, password, database)
        env["PGPORT"] = str(self.port)
        return env

    def conninfo(self, cluster, user=SUPERUSER, password=None, database="postgres"):
        return conninfo("127.0.0.1", self.port, user,
                        cluster.password if password is None else password, database)

    def connect(self, cluster, autocommit=True, **kwargs):
        import psycopg
        return psycopg.connect(self.conninfo(cluster), autocommit=autocommit,
                               connect_timeout=10, **kwargs)

    def login_error(self, password, user=SUPERUSER, timeout=30):
        """None when a new client logs in through the proxy and runs a query, else the
        LoginError the proxy (or the backend) answered."""
        import asyncio
        import asyncpg

        async def attempt():
            conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user=user,
                                         password=password, database="postgres", ssl=False,
                                         timeout=timeout)
            try:
                await conn.fetchval("SELECT 1")
            finally:
                await conn.close()

        try:
            asyncio.run(asyncio.wait_for(attempt(), timeout))
        except asyncpg.PostgresError as e:
            return LoginError(e.sqlstate, "%s %s" % (e.args[0] if e.args else "", e.detail or ""))
        return None

    def psql(self, cluster, sql, check=True, timeout=60):
        """Runs sql through the proxy with the psql binary; returns unaligned rows."""
        result = subprocess.run(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
                                 "-c", sql], env=self.env(cluster), capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError("psql through the proxy failed (%d): %s\n%s" % (
                result.returncode, result.stderr.strip(), self.log_tail()))
        return result.stdout.strip()
