"""Raw requests from hypothesis against a running proxy: whatever arrives, the proxy answers with
a well-formed HTTP/1.1 status line (or closes), never a 500, never sends anything to another host
or a non-origin-form target to the origin, never stores anything over a cached page, and keeps
running. Bounded for CI; scripts/soak runs it longer (CACHING_PROXY_FUZZ_EXAMPLES)."""

from __future__ import annotations

import contextlib
import os
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.client import fetch
from support.origin import Origin
from support.proxy import Proxy

EXAMPLES = int(os.environ.get("CACHING_PROXY_FUZZ_EXAMPLES", "300"))
CANARY = b"canary body"
# Status codes seen over the run (b"" for a closed connection), to show it reached both sides.
STATUSES: Counter[bytes] = Counter()


@pytest.fixture(scope="module")
def fuzz_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Origin, Origin, Proxy]]:
    origin, other = Origin(), Origin()
    origin.route("/canary", 200, [("Cache-Control", "max-age=600")], CANARY)
    for path in ("/", "/a", "/a/b"):
        origin.route(path, 200, [("Cache-Control", "max-age=600")], b"page " + path.encode())
    proxy = Proxy(origin.url, Path(tmp_path_factory.mktemp("fuzz")) / "cache").start()
    assert fetch(proxy.url + "/canary").x_cache == "MISS"
    yield origin, other, proxy
    proxy.stop()
    origin.stop()
    other.stop()


junk = st.binary(max_size=40)


def mostly(likely: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Nine draws in ten from the likely shapes, one from junk: enough well-formed requests to
    reach the origin and the cache, enough junk for the parsers."""
    return st.integers(0, 9).flatmap(lambda i: junk if i == 0 else likely)


token = mostly(st.sampled_from([b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"CONNECT",
                         b"TRACE", b"PATCH", b"PURGE", b"PRI", b"get", b"G ET", b""]))
targets = mostly(st.sampled_from([
    b"/", b"/a", b"/a/b", b"*", b"/a/../b", b"/%2e%2e/a", b"//a", b"/a%2F", b"/a?x=1",
    b"http://{other}/a", b"http://{origin}/a", b"https://{other}/a", b"{other}", b"//{other}/a",
    b"/a\x00", b"/a b", b"", b"/" + b"x" * 9000,
]))
versions = mostly(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.1 x",
                            b"http/1.1", b""]))
names = mostly(st.sampled_from([b"Host", b"Content-Length", b"Transfer-Encoding", b"Cache-Control",
                         b"Connection", b"Upgrade", b"Expect", b"X-Forwarded-Host", b"Cookie",
                         b"Range", b"If-None-Match", b"Pragma", b"Bad Name", b""]))
field_values = mostly(st.sampled_from([b"{other}", b"chunked", b"0", b"5", b"-1", b"chunked, x",
                                b"max-age=0", b"no-cache", b"100-continue", b"close",
                                b"bytes=0-1", b"*", b"a\r\n b", b"h2c", b""]))
bodies = mostly(st.sampled_from([b"", b"hello", b"0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n",
                          b"GET /canary HTTP/1.1\r\nHost: x\r\n\r\n"]))


@st.composite
def raw_requests(draw: st.DrawFn) -> bytes:
    line = draw(token) + b" " + draw(targets) + b" " + draw(versions)
    if draw(st.integers(0, 3)) == 0:
        line = draw(st.sampled_from([b"", b" ", b"\t"])).join(line.split(b" "))
    fields = [draw(names) + draw(st.sampled_from([b": ", b":", b": \t", b": ", b" : "]))
              + draw(field_values) for _ in range(draw(st.integers(0, 4)))]
    eol = draw(st.sampled_from([b"\r\n", b"\r\n", b"\n"]))
    return eol.join([line, *fields, b"Connection: close", b"", b""]) + draw(bodies)


def exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
        with contextlib.suppress(OSError):  # the proxy may close before reading everything
            s.sendall(data)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except OSError:  # quiet (waiting for more body) or reset
            pass
        return b"".join(chunks)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(raw_requests())
def test_raw_request_fuzz(fuzz_servers: tuple[Origin, Origin, Proxy], data: bytes) -> None:
    origin, other, proxy = fuzz_servers
    data = data.replace(b"{other}", f"127.0.0.1:{other.port}".encode()).replace(
        b"{origin}", f"127.0.0.1:{origin.port}".encode())
    before = len(origin.seen)
    answer = exchange(proxy.port, data)
    STATUSES[answer[9:12]] += 1
    if answer:
        assert answer.startswith(b"HTTP/1.1 "), answer[:100]
        assert answer[9:12] != b"500", answer[:300]
    assert not other.seen, "a request reached another host"
    for seen in origin.seen[before:]:
        assert seen.path.startswith(("/", "*")), seen.path
        assert seen.header("Host") == f"127.0.0.1:{origin.port}"
    assert proxy.proc is not None and proxy.proc.poll() is None
    canary = fetch(proxy.url + "/canary", timeout=5)
    assert (canary.status, canary.body) == (200, CANARY)
    assert "Traceback" not in proxy.output


def test_fuzz_reached_origin_and_refusals() -> None:
    """Runs after the fuzz: its inputs were both forwarded and refused, so it tested both."""
    print(dict(STATUSES))
    assert STATUSES[b"200"] > 0
    assert sum(n for code, n in STATUSES.items() if code.startswith(b"4")) > 0
