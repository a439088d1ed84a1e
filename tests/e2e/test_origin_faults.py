"""Origin faults: the client gets a 502 (or a closed connection), nothing partial is ever stored
(a follow-up request reaches the origin again), and other clients are served meanwhile.

A raw TCP origin misbehaves on purpose per path; a good path on it is cached first and must go on
being served as a HIT during and after every fault.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from support.client import fetch, raw_request
from support.origin import free_port
from support.proxy import Proxy

GOOD = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=300\r\nContent-Length: 4\r\n\r\ngood"
Behaviour = Callable[[socket.socket], None]


def reset(conn: socket.socket) -> None:
    """Close with an RST instead of a FIN."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


class RawOrigin:
    """Accepts connections, reads one request head, then runs the behaviour of its path."""

    def __init__(self) -> None:
        self.behaviours: dict[str, Behaviour] = {}
        self.counts: Counter[str] = Counter()
        self.hold = threading.Event()  # released at stop, for behaviours that hang
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        # The proxy may reset a connection it gave up on; for this origin that is a hang-up.
        with conn, contextlib.suppress(ConnectionError):
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                path = head.split(b" ")[1].decode()
                self.counts[path] += 1
                self.behaviours.get(path, lambda c: c.sendall(GOOD))(conn)
                if conn.fileno() < 0:
                    return

    def stop(self) -> None:
        self.hold.set()
        self.sock.close()


@pytest.fixture(scope="module")
def raw_origin() -> Iterator[RawOrigin]:
    server = RawOrigin()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy_raw(raw_origin: RawOrigin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    with Proxy(raw_origin.url, tmp_path_factory.mktemp("faults") / "cache") as p:
        # A cached page that must stay served while the faults happen.
        assert fetch(p.url + "/good").x_cache == "MISS"
        yield p


def _then_good(first: Behaviour) -> Behaviour:
    """Misbehave once, then answer well (and cacheably): the follow-up proves nothing was
    stored from the broken answer."""
    calls = Counter[str]()

    def behaviour(conn: socket.socket) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            first(conn)
        else:
            conn.sendall(GOOD)

    return behaviour


def _close_after(data: bytes) -> Behaviour:
    def behaviour(conn: socket.socket) -> None:
        conn.sendall(data)
        reset(conn)

    return behaviour


FAULTS: dict[str, Behaviour] = {
    "reset before headers": reset,
    "closed before headers": lambda c: c.close(),
    "reset mid-body, short Content-Length": _close_after(
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=300\r\nContent-Length: 100\r\n\r\nhalf"),
    "closed mid-body, short Content-Length": lambda c: (c.sendall(
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=300\r\nContent-Length: 100\r\n\r\nhalf"),
        c.shutdown(socket.SHUT_WR), c.close())[-1],
    "broken chunked stream": _close_after(
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=300\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\nhalf\r\n10\r\nshort"),
    "chunked stream without last chunk": lambda c: (c.sendall(
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=300\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\nhalf\r\n"), c.shutdown(socket.SHUT_WR), c.close())[-1],
    "garbage instead of HTTP": _close_after(b"\x00\x01garbage, not HTTP at all\r\n\r\n"),
    "garbage status line": _close_after(b"HTTP/1.1 abc\r\n\r\n"),
    "headers cut off": _close_after(b"HTTP/1.1 200 OK\r\nCache-Control: max-age=300\r\nConte"),
}


@pytest.mark.parametrize("name", FAULTS)
def test_fault_gives_502_and_nothing_is_stored(
    raw_origin: RawOrigin, proxy_raw: Proxy, name: str
) -> None:
    path = f"/f{list(FAULTS).index(name)}"
    raw_origin.behaviours[path] = _then_good(FAULTS[name])
    answer = fetch(proxy_raw.url + path)
    assert answer.status == 502, answer
    assert answer.x_cache == "MISS"
    assert fetch(proxy_raw.url + "/good").x_cache == "HIT"
    again = fetch(proxy_raw.url + path)
    assert (again.status, again.body, again.x_cache) == (200, b"good", "MISS")
    assert raw_origin.counts[path] == 2
    assert "Traceback" not in proxy_raw.output


def test_connection_refused_gives_502(tmp_path: Path) -> None:
    with Proxy(f"http://127.0.0.1:{free_port()}", tmp_path / "cache") as proxy:
        for _ in range(3):
            answer = fetch(proxy.url + "/x")
            assert answer.status == 502
            assert answer.x_cache == "MISS"
            assert b"502" in answer.body


def test_headers_that_never_finish_do_not_stall_others(
    raw_origin: RawOrigin, proxy_raw: Proxy
) -> None:
    """The origin sends half a head and then nothing. Within the first-byte timeout (60 s by
    default; the test below shortens it) the client waits: it gets no wrong answer, and
    everyone else is served meanwhile."""

    def hang(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nCache-Control: max-age=300\r\n")
        raw_origin.hold.wait(60)

    raw_origin.behaviours["/hang"] = hang
    port = proxy_raw.port
    with ThreadPoolExecutor(4) as pool:
        stuck = [pool.submit(raw_request, "127.0.0.1", port,
                             b"GET /hang HTTP/1.1\r\nHost: a\r\n\r\n", 4.0) for _ in range(2)]
        time.sleep(0.3)
        for _ in range(20):
            assert fetch(proxy_raw.url + "/good", timeout=5).x_cache == "HIT"
        answers = [f.result(10) for f in stuck]
    # Either nothing (still waiting when the client gave up) or a 5xx, never a 200.
    for answer in answers:
        assert answer == b"" or answer.startswith(b"HTTP/1.1 50"), answer[:100]


def test_storm_of_5xx(raw_origin: RawOrigin, proxy_raw: Proxy) -> None:
    """500/502/503/504 without freshness from the origin, 300 of them at 20 at a time: each is
    passed on as it came, none is stored, and the cached page is served throughout."""
    statuses = (500, 502, 503, 504)
    for status in statuses:
        body = b"err%d" % status
        raw_origin.behaviours[f"/e{status}"] = lambda c, s=status, b=body: c.sendall(
            b"HTTP/1.1 %d Oops\r\nContent-Length: %d\r\n\r\n%s" % (s, len(b), b))

    def one(i: int) -> tuple[bool, bool]:
        status = statuses[i % 4]
        answer = fetch(proxy_raw.url + f"/e{status}", timeout=10)
        good = fetch(proxy_raw.url + "/good", timeout=10)
        return (answer.status == status and answer.body == b"err%d" % status,
                good.body == b"good" and good.x_cache == "HIT")

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, range(300)))
    assert all(a for a, _ in results)
    assert all(g for _, g in results)
    assert sum(raw_origin.counts[f"/e{s}"] for s in statuses) == 300
    assert raw_origin.counts["/good"] == 1


def _good_then(fault: Behaviour, cache_control: bytes) -> Behaviour:
    """Answer well once (stored, with `cache_control`), then misbehave every time."""
    calls = Counter[str]()

    def behaviour(conn: socket.socket) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            conn.sendall(b"HTTP/1.1 200 OK\r\nCache-Control: " + cache_control
                         + b"\r\nContent-Length: 5\r\n\r\nstale")
        else:
            fault(conn)

    return behaviour


def test_stale_if_error_answers_every_fault(raw_origin: RawOrigin, tmp_path: Path) -> None:
    """A stored response whose stale-if-error window is open answers instead of the 502, with
    the stored bytes, whatever the fault; without the window (and with --use-stale off) the
    client gets the 502."""
    faults = {**FAULTS, "503": lambda c: c.sendall(
        b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy")}
    with Proxy(raw_origin.url, tmp_path / "cache", "--use-stale", "off") as proxy:
        for i, fault in enumerate(faults.values()):
            for prefix, cache_control in (("/sie", b"max-age=1, stale-if-error=600"),
                                          ("/nosie", b"max-age=1")):
                raw_origin.behaviours[f"{prefix}{i}"] = _good_then(fault, cache_control)
                assert fetch(proxy.url + f"{prefix}{i}").body == b"stale"
        time.sleep(1.2)
        for i, name in enumerate(faults):
            answer = fetch(proxy.url + f"/sie{i}")
            assert (answer.status, answer.body, answer.x_cache) == (200, b"stale", "HIT"), name
            assert "fwd=stale" in (answer.header("Cache-Status") or ""), name
            assert "detail=stale-on-" in (answer.header("Cache-Status") or ""), name
            plain = fetch(proxy.url + f"/nosie{i}")
            assert plain.status in (502, 503) and plain.body != b"stale", name


def test_by_default_every_connection_fault_answers_stale(
    raw_origin: RawOrigin, proxy_raw: Proxy
) -> None:
    """The default --use-stale error,timeout: a stale stored response without stale-if-error
    answers each fault of the connection (RFC 9111 4.2.4 allows it while disconnected), unless
    a directive forbids serving it stale; an origin's 503 still passes."""
    for i, fault in enumerate(FAULTS.values()):
        for prefix, cache_control in (("/d", b"max-age=1"), ("/dmr", b"max-age=1, must-revalidate"),
                                      ("/dnc", b"max-age=0, no-cache")):
            raw_origin.behaviours[f"{prefix}{i}"] = _good_then(fault, cache_control)
            assert fetch(proxy_raw.url + f"{prefix}{i}").body == b"stale"
    raw_origin.behaviours["/d503"] = _good_then(
        lambda c: c.sendall(b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy"), b"max-age=1")
    assert fetch(proxy_raw.url + "/d503").body == b"stale"
    time.sleep(1.2)
    for i, name in enumerate(FAULTS):
        answer = fetch(proxy_raw.url + f"/d{i}")
        assert (answer.status, answer.body, answer.x_cache) == (200, b"stale", "HIT"), name
        status = answer.header("Cache-Status") or ""
        assert "fwd=stale" in status and status.endswith("detail=stale-on-error"), name
        for forbidden in ("/dmr", "/dnc"):
            refused = fetch(proxy_raw.url + f"{forbidden}{i}")
            assert (refused.status, refused.x_cache) == (502, "MISS"), (name, forbidden)
            assert refused.body != b"stale", (name, forbidden)
    passed = fetch(proxy_raw.url + "/d503")
    assert (passed.status, passed.body, passed.x_cache) == (503, b"busy", "MISS")


def test_headers_that_never_finish_get_504_at_the_first_byte_timeout(
    raw_origin: RawOrigin, tmp_path: Path
) -> None:
    def hang(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nCache-Control: max-age=300\r\n")
        raw_origin.hold.wait(60)

    raw_origin.behaviours["/hang2"] = _then_good(hang)
    with Proxy(raw_origin.url, tmp_path / "cache", "--first-byte-timeout", "1") as proxy:
        started = time.monotonic()
        answer = fetch(proxy.url + "/hang2", timeout=10)
        assert answer.status == 504 and answer.x_cache == "MISS"
        assert time.monotonic() - started < 5
        again = fetch(proxy.url + "/hang2")
        assert (again.status, again.body) == (200, b"good")  # nothing stored from the hang
    assert raw_origin.counts["/hang2"] == 2


def test_a_body_dripping_past_the_response_timeout_gets_504_and_is_not_stored(
    raw_origin: RawOrigin, tmp_path: Path
) -> None:
    def drip(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nCache-Control: max-age=300\r\nContent-Length: 20\r\n\r\n")
        for _ in range(20):
            if raw_origin.hold.wait(0.5):
                return
            try:
                conn.sendall(b"x")
            except OSError:
                return

    raw_origin.behaviours["/drip"] = _then_good(drip)
    with Proxy(raw_origin.url, tmp_path / "cache", "--response-timeout", "2") as proxy:
        started = time.monotonic()
        answer = fetch(proxy.url + "/drip", timeout=15)
        # The body is held until complete (it is small), so the client has had nothing yet.
        assert answer.status == 504 and answer.x_cache == "MISS"
        assert time.monotonic() - started < 6
        again = fetch(proxy.url + "/drip")
        assert (again.status, again.body) == (200, b"good")
    assert raw_origin.counts["/drip"] == 2
