"""The admin API's HTTP layer, hardened against hostile clients (admin.py has the endpoints).

- Cross-site requests and DNS rebinding: a request must name this server in Host, carry no
  foreign Origin, and send anything but GET/HEAD as Content-Type: application/json, which a web
  page can send only after a CORS preflight this server never approves. These checks come before
  anything else, with or without a secret, and a check that fails in any way refuses.
- Thread exhaustion: a request's head and body must arrive within HEAD_TIMEOUT (a deadline, not
  a timeout per recv), a kept-alive connection may idle IDLE_TIMEOUT, and at most
  MAX_CONNECTIONS are open at once (each is a thread).
- One write per answer: head and body leave in one sendall. As two sends, Nagle held the body
  until the client's delayed ACK of the head: ~40 ms for every kept-alive request.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, cast

from caching_proxy.edge.purge import is_loopback

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

log = logging.getLogger(__name__)

# A script sends its head and body at once; 10 s is ample over a slow link, and is all a client
# that trickles bytes (slowloris) can hold a thread for.
HEAD_TIMEOUT = 10.0
# A kept-alive connection's wait for its next request: enough for a script's next call, short
# enough that idle connections do not sit on the slots below for long.
IDLE_TIMEOUT = 15.0
# For an answer (a 1000-entry page at most) to be taken by a client that does not read.
WRITE_TIMEOUT = 10.0
# Open connections, so threads, at once: the API serves a few scripts and people, 32 threads
# are nothing next to the proxy, and 300 held ones were what the security review found.
MAX_CONNECTIONS = 32
# Connects the kernel queues until accepted: past the default 5, a burst's SYNs were dropped
# and retried a second later.
ACCEPT_BACKLOG = 64
# Closing with unread request bytes makes the kernel send RST, which can destroy the answer
# before the client reads it; so a closed connection is drained this long (and this much) first.
LINGER_TIMEOUT = 2.0
LINGER_BYTES = 256 * 1024
SAFE_METHODS = ("GET", "HEAD")
JSON = "application/json"
# The argument type socketserver hands these methods; a TCP server's is always a socket.
Request = socket.socket | tuple[bytes, socket.socket]


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def json_error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


_BUSY = json_error(f"the admin API has {MAX_CONNECTIONS} busy connections; retry shortly")
BUSY_ANSWER = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\nCache-Control: no-store\r\nRetry-After: 1\r\n"
               b"Connection: close\r\n\r\n%s" % (len(_BUSY), _BUSY))


def split_authority(value: str) -> tuple[str, int | None]:
    """`host[:port]`, as in Host or an Origin after `http://`: the host lowercased (IPv6 without
    its brackets) and the port if given. ValueError for anything else (userinfo, a path, ...)."""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise ValueError("no ] after [")
        host, rest = value[1:end], value[end + 1:]
        ipaddress.IPv6Address(host)
    else:
        end = value.find(":")
        host, rest = (value, "") if end < 0 else (value[:end], value[end:])
        if not host or not all(c.isascii() and (c.isalnum() or c in ".-") for c in host):
            raise ValueError(f"not a host name: {host!r}")
    if not rest:
        return host.lower(), None
    digits = rest[1:]
    if rest[0] != ":" or not (digits.isascii() and digits.isdigit()) or len(digits) > 5:
        raise ValueError(f"not a port: {rest!r}")
    return host.lower(), int(digits)


def names_this_server(host: str, admin_host: str, local_address: str) -> bool:
    """Whether `host` (from split_authority) is a name this server answers to: a loopback
    address, `localhost`, the --admin-host, or the address the client connected to (an IP
    literal cannot be rebound by DNS; it is how a client names a server on 0.0.0.0)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a name: any but these may be an attacker's, resolving here
        return host in ("localhost", admin_host.lower())
    if address.is_unspecified:  # a wildcard to listen on, not this server's name (0.0.0.0-day)
        return False
    if is_loopback(host):
        return True
    for own in (admin_host, local_address):
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(own) == address:
                return True
    return False


def origin_is_own(origin: str, admin_host: str, local_address: str, port: int) -> bool:
    """Whether an Origin header is this server's own, `http://HOST:PORT` with HOST as for Host.
    `null`, another scheme or port, and anything unparsable are foreign."""
    scheme, sep, authority = origin.partition("://")
    if not sep or scheme.lower() != "http":
        return False
    try:
        host, given = split_authority(authority)
    except ValueError:
        return False
    return (80 if given is None else given) == port and names_this_server(
        host, admin_host, local_address)


def is_json(content_type: str) -> bool:
    """`application/json`, with any parameters (`; charset=utf-8`), in any case."""
    return content_type.split(";", 1)[0].strip(" \t").lower() == JSON


class DeadlineReader(io.RawIOBase):
    """A connection's reads, each allowed only what is left until `deadline`: a timeout per recv
    alone lets a client that sends a byte every few seconds hold its thread for ever."""

    def __init__(self, conn: socket.socket, deadline: float) -> None:
        super().__init__()
        self.conn = conn
        self.deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the client did not send its request in time")
        self.conn.settimeout(left)
        return self.conn.recv_into(buffer)


class BoundedServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer with at most `max_connections` open connections (so threads).

    A connection past the cap sheds the one that has waited longest for a request head (a
    half-sent head or an idle keep-alive: neither is doing work), so held connections cannot
    lock out a real request; only when every connection is busy answering is it answered 503."""

    daemon_threads = True
    request_queue_size = ACCEPT_BACKLOG
    max_connections = MAX_CONNECTIONS

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 admin_host: str) -> None:
        super().__init__(address, handler)
        self.admin_host = admin_host
        self._lock = threading.Lock()
        # Each open connection: since when it has waited for a request head (monotonic), or
        # None while one of its requests is being answered.
        self._open: dict[socket.socket, float | None] = {}

    def process_request(self, request: Request, client_address: Any) -> None:
        conn = cast(socket.socket, request)
        with self._lock:
            admitted = len(self._open) < self.max_connections or self._shed_one()
            if admitted:
                self._open[conn] = time.monotonic()
        if not admitted:
            self._refuse(conn)
            return
        super().process_request(request, client_address)  # on failure, shutdown_request

    def _shed_one(self) -> bool:
        """Close the connection waiting longest for a head; False if none is waiting. Locked."""
        waiting = [(since, conn) for conn, since in self._open.items() if since is not None]
        if not waiting:
            return False
        conn = min(waiting, key=lambda pair: pair[0])[1]
        del self._open[conn]
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)  # its thread's read ends; that thread closes it
        return True

    def _refuse(self, conn: socket.socket) -> None:
        """503 without a thread: best effort, as the accept loop must never wait on a client."""
        with contextlib.suppress(OSError):
            conn.setblocking(False)
            conn.send(BUSY_ANSWER)
            conn.recv(65536)  # what has arrived, so that closing does not send RST
        with contextlib.suppress(OSError):
            conn.close()

    def waiting(self, conn: socket.socket) -> None:
        """`conn` now waits for its next request head (so may be shed)."""
        with self._lock:
            if conn in self._open:
                self._open[conn] = time.monotonic()

    def busy(self, conn: socket.socket) -> bool:
        """Mark `conn` as answering; False if it was shed meanwhile (then answer nothing)."""
        with self._lock:
            if conn not in self._open:
                return False
            self._open[conn] = None
            return True

    def shutdown_request(self, request: Request) -> None:
        conn = cast(socket.socket, request)
        with self._lock:
            if conn in self._open:
                self._open[conn] = 0.0  # still counted, but the first to shed
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)
            deadline, drained = time.monotonic() + LINGER_TIMEOUT, 0
            while drained < LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
                conn.settimeout(left)
                chunk = conn.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        with self._lock:
            self._open.pop(conn, None)
        self.close_request(conn)

    def handle_error(self, request: Request, client_address: Any) -> None:
        # A client gone mid-answer, mostly (handlers turn their own failures into a 500): not
        # worth socketserver's traceback on stderr.
        log.debug(f"caching-proxy admin: connection from {client_address} failed", exc_info=True)


class GuardedHandler(BaseHTTPRequestHandler):
    """Reads under deadlines, refuses cross-site and foreign-Host requests, answers in one
    write. Subclasses route in do_* methods, calling check_safety first and answer() once."""

    server: BoundedServer
    protocol_version = "HTTP/1.1"
    timeout = HEAD_TIMEOUT  # socketserver's per-socket timeout; each read narrows it further
    disable_nagle_algorithm = True  # a large answer's last segment need not wait for an ACK
    head_timeout: float = HEAD_TIMEOUT
    idle_timeout: float = IDLE_TIMEOUT
    write_timeout: float = WRITE_TIMEOUT
    _headers_buffer: list[bytes]  # BaseHTTPRequestHandler's own, made on the first header
    body_read = False

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # replaced: each of its reads would get the whole timeout anew
        self.reader = DeadlineReader(self.connection, time.monotonic() + self.head_timeout)
        self.buffered = io.BufferedReader(self.reader)
        self.rfile = self.buffered
        self.served = 0

    def handle_one_request(self) -> None:
        if self.served:  # kept alive: the next request may take IDLE_TIMEOUT to start
            self.server.waiting(self.connection)
            self.reader.deadline = time.monotonic() + self.idle_timeout
            try:
                started = bool(self.buffered.peek(1))
            except OSError:  # the idle timeout, a reset, or shed
                started = False
            if not started:
                self.close_connection = True
                return
            self.reader.deadline = time.monotonic() + self.head_timeout
        self.served += 1
        super().handle_one_request()

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if not self.server.busy(self.connection):  # shed as its head arrived: answer nothing
            self.close_connection = True
            return False
        self.body_read = False
        return True

    def handle_expect_100(self) -> bool:
        self.send_response_only(HTTPStatus.CONTINUE)
        self.end_headers()
        self.flush_headers()  # an interim answer goes at once; end_headers keeps the rest
        return True

    def end_headers(self) -> None:
        # Keep the head: answer() writes it together with the body.
        if self.request_version != "HTTP/0.9":
            self._headers_buffer.append(b"\r\n")

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        # The standard library's own refusals (a bad request line, a header too long, an
        # unknown method): JSON like every other error, in one write, closing as it does.
        self.log_error("code %d, message %s", code, message)
        self.close_connection = True
        text = message or self.responses.get(code, ("error", ""))[0]
        self.answer(code, json_error(text), JSON)

    def answer(self, status: int, payload: bytes, content_type: str,
               headers: dict[str, str] | None = None) -> None:
        """The whole answer in one write."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        head = b"".join(getattr(self, "_headers_buffer", ()))
        self._headers_buffer = []
        self.connection.settimeout(self.write_timeout)
        self.wfile.write(head + (b"" if self.command == "HEAD" else payload))

    def checked(self, check: Callable[[], None]) -> None:
        """Run an authorization or safety check: one that fails in any way refuses, never lets
        the request through. A refused client gets no kept-alive connection to try again on."""
        try:
            check()
        except ApiError:
            self.close_connection = True
            raise
        except Exception as e:
            self.close_connection = True
            log.warning(f"caching-proxy admin: refused a request its check failed on: {e!r}")
            raise ApiError(403, "refused: the request could not be checked") from None

    def check_safety(self) -> None:
        """Host, Origin and Content-Type; ApiError unless the request may go on."""
        port, admin_host = self.server.server_port, self.server.admin_host
        local = str(self.connection.getsockname()[0])
        hosts = self.headers.get_all("Host") or []
        if len(hosts) > 1:
            raise ApiError(400, "more than one Host header")
        if not hosts:
            if self.request_version not in ("HTTP/0.9", "HTTP/1.0"):
                raise ApiError(400, "send a Host header")
            if not is_loopback(self.client_address[0]):
                raise ApiError(400, "send a Host header (only loopback clients may omit it)")
        else:
            try:
                host, given_port = split_authority(hosts[0].strip(" \t"))
            except ValueError:
                raise ApiError(400, f"bad Host header {hosts[0]!r}") from None
            if given_port not in (None, port) or not names_this_server(host, admin_host, local):
                # 421 Misdirected Request (RFC 9110 15.5.20): this server does not answer for
                # that name, which is exactly the case; Django's and nginx's 400 reads as a
                # malformed request, which it is not.
                raise ApiError(421, f"this admin API does not answer for Host {hosts[0]!r}; "
                                    f"use 127.0.0.1:{port} or localhost:{port}")
        if self.command not in SAFE_METHODS:
            types = self.headers.get_all("Content-Type") or []
            if len(types) != 1 or not is_json(types[0]):
                raise ApiError(415, f"send {self.command} requests with Content-Type: "
                                    "application/json (an empty body too)")
        origins = self.headers.get_all("Origin") or []
        if origins and (len(origins) > 1 or not origin_is_own(
                origins[0].strip(" \t"), admin_host, local, port)):
            raise ApiError(403, f"cross-origin requests are refused (Origin: {origins[0]!r})")

    def has_body(self) -> bool:
        """Whether the request says it has a body (read or not)."""
        length = (self.headers.get("Content-Length") or "0").strip(" \t")
        return bool(self.headers.get("Transfer-Encoding")) or length != "0"

    def read_body(self, limit: int) -> bytes:
        """The request body, by its Content-Length, within the head's deadline."""
        if self.headers.get("Transfer-Encoding"):
            raise ApiError(411, "send the body with a Content-Length")
        lengths = self.headers.get_all("Content-Length") or ["0"]
        field = lengths[0].strip(" \t") or "0"
        if len(lengths) > 1 or not (field.isascii() and field.isdigit()):
            raise ApiError(400, "bad Content-Length")
        length = int(field)
        if length > limit:
            raise ApiError(413, f"the body is over {limit // 1024} KiB")
        try:
            raw = self.buffered.read(length) if length else b""
        except OSError:  # the deadline, or a reset
            raise ApiError(408, f"the body did not arrive within {self.head_timeout:g} s") \
                from None
        if len(raw) < length:
            raise ApiError(400, "the body ended before its Content-Length")
        self.body_read = True
        return raw
