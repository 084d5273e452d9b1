"""Exact bytes of the PostgreSQL v3 protocol, for tests that must send what no client library
would: encryption requests, oversized or malformed packets, lengths that lie.

https://www.postgresql.org/docs/current/protocol-message-formats.html
"""
import socket
import struct
import time

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102


def version(major, minor):
    return (major << 16) | minor


def startup_packet(params, major=3, minor=0):
    body = struct.pack("!I", version(major, minor))
    for key, value in params.items():
        body += key.encode() + b"\0" + value.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def request_packet(code):
    return struct.pack("!II", 8, code)


def cancel_packet(pid, key):
    return struct.pack("!IIii", 16, CANCEL_REQUEST, pid, key)


def message(kind, body=b""):
    return kind + struct.pack("!I", len(body) + 4) + body


def query_message(sql):
    return message(b"Q", sql.encode() + b"\0")


TERMINATE = message(b"X")


def error_fields(body):
    """ErrorResponse/NoticeResponse body -> {field code: text}, e.g. {'C': '08P01'}."""
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return fields


class Closed(Exception):
    """The peer closed the connection."""


class RawClient:
    """A TCP connection that reads whole messages with a deadline on every read."""

    def __init__(self, port, timeout=5.0, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.backend_key = None
        self.parameters = {}

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def recv_exact(self, n):
        chunks = []
        while n > 0:
            chunk = self.sock.recv(n)
            if not chunk:
                raise Closed()
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def read_byte(self):
        return self.recv_exact(1)

    def read_message(self):
        """(type byte, body); raises Closed at end of stream."""
        header = self.recv_exact(5)
        kind, length = header[:1], struct.unpack("!I", header[1:])[0]
        assert length >= 4, "message %r with length %d" % (kind, length)
        return kind, self.recv_exact(length - 4)

    def read_until(self, kinds):
        """Messages up to and including the first whose type is in kinds."""
        seen = []
        while True:
            kind, body = self.read_message()
            seen.append((kind, body))
            if kind in kinds:
                return seen

    def expect_error(self):
        """Reads until an ErrorResponse and returns its fields."""
        for kind, body in self.read_until((b"E",)):
            if kind == b"E":
                return error_fields(body)

    def expect_closed(self, timeout=None):
        """True when the peer closes (EOF or reset) within timeout seconds without sending
        anything more."""
        self.sock.settimeout(timeout or self.timeout)
        try:
            data = self.sock.recv(1)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(self.timeout)
        return data == b""

    def login(self, user, database="postgres", extra=None, major=3, minor=0):
        """Startup for a user pg_hba trusts; returns the messages up to ReadyForQuery."""
        params = {"user": user, "database": database}
        params.update(extra or {})
        self.send(startup_packet(params, major, minor))
        return self.finish_login()

    def finish_login(self):
        seen = self.read_until((b"Z", b"E"))
        for kind, body in seen:
            if kind == b"E":
                raise AssertionError("login failed: %r" % error_fields(body))
            if kind == b"R":
                code = struct.unpack("!i", body[:4])[0]
                assert code == 0, "trust login asked for authentication %d" % code
            if kind == b"K":
                self.backend_key = struct.unpack("!ii", body[:8])
            if kind == b"S":
                name, value = body.split(b"\0")[:2]
                self.parameters[name.decode()] = value.decode()
        return seen

    def simple_query(self, sql):
        """Rows as lists of text (None for NULL), and the ErrorResponse fields or None."""
        self.send(query_message(sql))
        rows, error = [], None
        for kind, body in self.read_until((b"Z",)):
            if kind == b"D":
                rows.append(decode_data_row(body))
            elif kind == b"E":
                error = error_fields(body)
        return rows, error


def decode_data_row(body):
    count = struct.unpack("!H", body[:2])[0]
    offset, values = 2, []
    for _ in range(count):
        length = struct.unpack("!i", body[offset:offset + 4])[0]
        offset += 4
        if length < 0:
            values.append(None)
            continue
        values.append(body[offset:offset + length].decode())
        offset += length
    return values


def timed(fn):
    """(result, seconds) of fn()."""
    start = time.monotonic()
    result = fn()
    return result, time.monotonic() - start
