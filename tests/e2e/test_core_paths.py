"""The less-trodden paths through the core, end to end (a real proxy process, a counting origin,
real sockets): HEAD answers never carry a body, invalidation whatever the origin's host case, a
PURGE never reaches the origin, a client leaving is no origin error."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

from support.client import fetch
from support.origin import Origin, Reply
from support.proxy import Proxy, cli

BIG = b"y" * 40_000


def read_response(sock: socket.socket, head_only: bool) -> tuple[bytes, bytes]:
    """One response from `sock`: its head, and its body by Content-Length (none for HEAD)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    if head_only:
        return head, rest
    if b"transfer-encoding: chunked" in head.lower():
        while not rest.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            assert chunk
            rest += chunk
        body = b""
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                return head, body
            body, rest = body + rest[:size], rest[size + 2:]
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk
        rest += chunk
    return head, rest


def pipelined_head_then_get(port: int, path: str) -> tuple[bytes, bytes, bytes, bytes]:
    """HEAD then GET on one kept-alive connection: (HEAD head, bytes after it, GET head, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head, extra = read_response(sock, head_only=True)
        # Whatever arrives now, before the GET is sent, can only be a body the HEAD answer had.
        sock.settimeout(1.0)
        with contextlib.suppress(TimeoutError):
            extra += sock.recv(65536)
        sock.settimeout(10)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        get_head, body = read_response(sock, head_only=False)
        return head, extra, get_head, body


def test_head_of_a_streamed_response_has_no_body(
    origin: Origin, make_proxy: Callable[..., Proxy],
) -> None:
    origin.route("/big", headers=[("Cache-Control", "max-age=60")], body=BIG)
    origin.route("/bigchunked", handler=lambda _: Reply(
        200, [("Cache-Control", "max-age=60")], parts=[BIG[:20_000], BIG[20_000:]], chunked=True))
    proxy = make_proxy("--max-object-size", "1k")
    for path in ("/big", "/bigchunked"):
        head, extra, get_head, body = pipelined_head_then_get(proxy.port, path)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert extra == b"", f"{path}: the HEAD answer was followed by {len(extra)} bytes"
        assert get_head.startswith(b"HTTP/1.1 200"), get_head
        assert body == BIG


def test_head_of_a_small_chunked_response_is_stored_for_the_get(
    origin: Origin, proxy: Proxy,
) -> None:
    origin.route("/small", handler=lambda _: Reply(
        200, [("Cache-Control", "max-age=60")], b"tiny", chunked=True))
    head, extra, get_head, body = pipelined_head_then_get(proxy.port, "/small")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert extra == b""
    assert b"X-Cache: HIT" in get_head and body == b"tiny"
    assert origin.count("/small") == 1


def test_a_post_invalidates_whatever_the_case_of_the_origin_host(
    origin: Origin, make_proxy: Callable[..., Proxy], tmp_path: Path,
) -> None:
    origin.route("/p", headers=[("Cache-Control", "max-age=60")], body=b"v1")
    proxy = Proxy(f"http://LocalHost:{origin.port}", tmp_path / "c").start()
    try:
        assert fetch(proxy.url + "/p").x_cache == "MISS"
        assert fetch(proxy.url + "/p").x_cache == "HIT"
        assert fetch(proxy.url + "/p", method="POST", body=b"x").status == 200
        assert fetch(proxy.url + "/p").x_cache == "MISS"
        assert origin.count("/p") == 3
    finally:
        proxy.stop()


def test_purge_while_the_store_fails_is_never_forwarded(
    origin: Origin, make_proxy: Callable[..., Proxy], tmp_path: Path,
) -> None:
    origin.route("/q", headers=[("Cache-Control", "max-age=60")], body=b"q")
    cache = tmp_path / "cache"
    proxy = make_proxy(cache_dir=cache)
    fetch(proxy.url + "/q")
    # The index replaced by garbage: every SQLite call raises sqlite3.DatabaseError.
    for name in ("cache.db", "cache.db-wal", "cache.db-shm"):
        path = cache / name
        if path.exists():
            path.write_bytes(b"not a database" * 1000)
    answer = fetch(proxy.url + "/q", method="PURGE")
    assert answer.status in (500, 503), answer.status
    assert origin.requests_for("/q") == [s for s in origin.requests_for("/q")
                                         if s.method != "PURGE"]


def test_a_client_that_leaves_is_not_an_origin_error(
    origin: Origin, make_proxy: Callable[..., Proxy], tmp_path: Path,
) -> None:
    origin.route("/slow", handler=lambda _: Reply(200, [("Cache-Control", "no-store")], b"s",
                                                  delay=1.0))
    cache = tmp_path / "cache"
    proxy = make_proxy(cache_dir=cache)
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.2)  # forwarded; then the client hangs up before the answer
    time.sleep(2.5)  # the origin answers into closed connections; counters are written each second
    stats = json.loads(cli("--stats", "--json", "--cache-dir", str(cache)).stdout)["stats"]
    assert stats["origin_errors"] == 0, stats
    assert origin.count("/slow") == 3
