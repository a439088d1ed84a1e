"""Slow and idle clients (issue 13, item 3): --header-timeout, --keepalive-timeout and
--max-connections, end to end with real sockets against a real proxy process."""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import pytest

from support.client import fetch
from support.origin import Origin, Reply
from support.proxy import Proxy, cli

HEAD_START = b"GET /slow HTTP/1.1\r\nHost: origin\r\nX-Trickle: "


def connect(proxy: Proxy, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One HTTP/1.1 response with a Content-Length (head, body) from a kept-alive socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the body")
        body += chunk
    return head, body


def get(sock: socket.socket, path: str) -> tuple[bytes, bytes]:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: origin\r\n\r\n".encode())
    return read_response(sock)


def read_to_close(sock: socket.socket) -> bytes:
    """Everything the proxy sends until it closes the connection (a reset counts as a close)."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def trickle_until_closed(sock: socket.socket, limit: float = 20.0) -> bytes:
    """Send one byte of a never-ending header field every 0.2 s, as a slowloris does, until the
    proxy closes the connection; what it sent. Fails if it is still open after `limit`."""
    sock.settimeout(0.2)
    received = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            sock.sendall(b"a")
        except (BrokenPipeError, ConnectionResetError):
            break
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    else:
        pytest.fail("the proxy kept a trickling connection open")
    return received


@pytest.fixture
def cached(origin: Origin) -> Origin:
    origin.route("/c", 200, [("Cache-Control", "max-age=600")], b"cached body")
    origin.route("/slow", handler=lambda _: Reply(200, [("Cache-Control", "no-store")], b"late",
                                                   delay=2.5))
    return origin


def test_a_trickled_head_gets_408_and_close_at_the_header_timeout(
        cached: Origin, make_proxy: object) -> None:
    proxy = make_proxy("--header-timeout", "1")  # type: ignore[operator]
    with connect(proxy) as sock:
        started = time.monotonic()
        sock.sendall(HEAD_START)
        answer = trickle_until_closed(sock)
        assert time.monotonic() - started >= 0.9  # not before the timeout
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert b"Connection: close" in answer
    assert cached.count("/slow") == 0
    # The proxy goes on serving.
    assert fetch(proxy.url + "/c").body == b"cached body"


def test_a_slowloris_of_200_connections_is_not_held(cached: Origin, make_proxy: object) -> None:
    # 3 s, not 1: opening 200 connections on a loaded 2-core machine can take over a second,
    # and the first one's timer runs from its accept.
    proxy = make_proxy("--header-timeout", "3")  # type: ignore[operator]
    socks = [connect(proxy) for _ in range(200)]
    try:
        for sock in socks:
            sock.sendall(HEAD_START)
        for sock in socks:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(b"x")  # still trickling (unless its time is already up)
        # Meanwhile a well-behaved client is served.
        assert fetch(proxy.url + "/c").status == 200
        answers = [read_to_close(sock) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), {a[:20] for a in answers}
    assert fetch(proxy.url + "/c").x_cache == "HIT"


def test_a_connection_that_sends_nothing_is_closed_silently(make_proxy: object) -> None:
    proxy = make_proxy("--header-timeout", "1")  # type: ignore[operator]
    with connect(proxy) as sock:
        assert read_to_close(sock) == b""


def test_the_next_heads_timeout_runs_from_its_first_byte(
        cached: Origin, make_proxy: object) -> None:
    # A kept-alive connection may idle for the keep-alive timeout; once the next head has begun,
    # it has the header timeout to finish (nginx: keepalive_timeout, then client_header_timeout).
    proxy = make_proxy("--header-timeout", "1", "--keepalive-timeout", "30")  # type: ignore[operator]
    with connect(proxy) as sock:
        assert get(sock, "/c")[1] == b"cached body"
        time.sleep(1.5)  # idle past the header timeout: still open
        assert get(sock, "/c")[1] == b"cached body"
        sock.sendall(HEAD_START)
        assert trickle_until_closed(sock).startswith(b"HTTP/1.1 408 ")


def test_an_idle_kept_alive_connection_is_closed_and_an_active_one_is_not(
        cached: Origin, make_proxy: object) -> None:
    proxy = make_proxy("--keepalive-timeout", "1")  # type: ignore[operator]
    with connect(proxy) as idle, connect(proxy) as active, connect(proxy) as waiting:
        assert get(idle, "/c")[1] == b"cached body"
        # A request in progress for longer than the keep-alive timeout (a slow origin).
        waiting.sendall(b"GET /slow HTTP/1.1\r\nHost: origin\r\n\r\n")
        # Requests every 0.4 s for 2.4 s on one connection: never idle for 1 s.
        for _ in range(6):
            head, body = get(active, "/c")
            assert head.startswith(b"HTTP/1.1 200 ") and body == b"cached body"
            time.sleep(0.4)
        assert read_response(waiting)[1] == b"late"
        assert read_to_close(idle) == b""
        assert get(active, "/c")[1] == b"cached body"
        assert read_to_close(active) == b""  # in turn closed once idle


def test_past_max_connections_new_ones_are_closed_and_held_ones_served(
        cached: Origin, make_proxy: object) -> None:
    proxy = make_proxy("--max-connections", "5")  # type: ignore[operator]
    held = [connect(proxy) for _ in range(5)]
    try:
        for sock in held:
            assert get(sock, "/c")[1] == b"cached body"
        with connect(proxy) as sixth:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sixth.sendall(b"GET /c HTTP/1.1\r\nHost: origin\r\n\r\n")
            assert read_to_close(sixth) == b""
        for sock in held:
            assert get(sock, "/c")[1] == b"cached body"
        held.pop().close()
        # Once one has gone, a new connection is served again.
        assert retry_until_served(proxy) == b"cached body"
    finally:
        for sock in held:
            sock.close()
    assert "client connections held" in proxy.output


def retry_until_served(proxy: Proxy, attempts: int = 50) -> bytes:
    for _ in range(attempts):
        with connect(proxy) as sock, contextlib.suppress(ConnectionError):
            return get(sock, "/c")[1]
        time.sleep(0.1)
    pytest.fail("no new connection was served")


@pytest.mark.parametrize(("args", "message"), [
    (["--header-timeout", "-1"], "argument --header-timeout: invalid seconds -1"),
    (["--keepalive-timeout", "soon"], "argument --keepalive-timeout: invalid seconds 'soon'"),
    (["--max-connections", "-3"], "argument --max-connections: invalid connection count '-3'"),
    (["--max-connections", "lots"], "argument --max-connections: invalid connection count"),
    (["--set", "cache_max_connections=lots"], "cache_max_connections must be auto or"),
    (["--set", "cache_header_timeout=-2"], "cache_header_timeout must not be negative"),
])
def test_bad_values_exit_2_with_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    result = cli(*args, "--origin", "http://127.0.0.1:9", "--cache-dir", str(tmp_path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr

