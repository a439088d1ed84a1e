"""Client bad input sent as raw bytes: each is answered with a 4xx (or 505) by the proxy itself,
never forwarded (the origin counts every request it gets), never stored, and never sent anywhere
but the configured origin (a second origin proves no request reaches another host)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from support.client import fetch, raw_request
from support.origin import Origin
from support.proxy import Proxy

_n = itertools.count()

# (name, request with {p} for a fresh path and {other} for the other origin's port, statuses)
CASES: list[tuple[str, bytes, tuple[int, ...]]] = [
    ("garbage request line", b"GARBAGE {p}\r\n\r\n", (400,)),
    ("HTTP/0.9 line", b"GET {p}\r\n\r\n", (400,)),
    ("unknown version", b"GET {p} HTTP/9.9\r\nHost: a\r\n\r\n", (505,)),
    ("h2 preface over HTTP/1", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", (505,)),
    ("oversized request line", b"GET {p}?" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
     (414,)),
    ("oversized header line", b"GET {p} HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 100_000
     + b"\r\n\r\n", (431,)),
    ("too many header fields", b"GET {p} HTTP/1.1\r\nHost: a\r\n"
     + b"".join(b"X-%d: v\r\n" % i for i in range(500)) + b"\r\n", (431,)),
    ("header name with space", b"GET {p} HTTP/1.1\r\nHost: a\r\nBad Name: v\r\n\r\n", (400,)),
    ("header name with paren", b"GET {p} HTTP/1.1\r\nHost: a\r\nBad(: v\r\n\r\n", (400,)),
    ("space before colon", b"GET {p} HTTP/1.1\r\nHost: a\r\nContent-Length : 3\r\n\r\nabc",
     (400,)),
    ("NUL in header value", b"GET {p} HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", (400,)),
    ("CTL in header value", b"GET {p} HTTP/1.1\r\nHost: a\r\nX-A: a\x1bb\r\n\r\n", (400,)),
    ("NUL in target", b"GET {p}\x00y HTTP/1.1\r\nHost: a\r\n\r\n", (400,)),
    ("CR in target", b"GET {p}\ry HTTP/1.1\r\nHost: a\r\n\r\n", (400,)),
    ("LF in target", b"GET {p}\ny HTTP/1.1\r\nHost: a\r\n\r\n", (400,)),
    ("tab in target", b"GET {p}\ty HTTP/1.1\r\nHost: a\r\n\r\n", (400,)),
    ("Content-Length with Transfer-Encoding", b"POST {p} HTTP/1.1\r\nHost: a\r\n"
     b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", (400,)),
    ("two different Content-Length", b"POST {p} HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
     b"Content-Length: 5\r\n\r\nabcde", (400,)),
    ("negative Content-Length", b"POST {p} HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
     (400,)),
    ("signed Content-Length", b"POST {p} HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
     (400,)),
    ("obs-fold", b"GET {p} HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n\r\n", (400,)),
    ("Transfer-Encoding: chunked, x", b"POST {p} HTTP/1.1\r\nHost: a\r\n"
     b"Transfer-Encoding: chunked, x\r\n\r\n0\r\n\r\n", (400,)),
    ("Transfer-Encoding: x, chunked", b"POST {p} HTTP/1.1\r\nHost: a\r\n"
     b"Transfer-Encoding: x, chunked\r\n\r\n0\r\n\r\n", (400,)),
    ("Transfer-Encoding: identity", b"POST {p} HTTP/1.1\r\nHost: a\r\n"
     b"Transfer-Encoding: identity\r\n\r\n", (400,)),
    ("absolute-form naming another host", b"GET http://127.0.0.1:{other}{p} HTTP/1.1\r\n"
     b"Host: 127.0.0.1:{other}\r\n\r\n", (400,)),
    ("absolute-form naming another host, plain Host", b"GET http://127.0.0.1:{other}{p} HTTP/1.1"
     b"\r\nHost: a\r\n\r\n", (400,)),
    ("absolute-form naming a public host", b"GET http://example.com{p} HTTP/1.1\r\n"
     b"Host: example.com\r\n\r\n", (400,)),
    ("authority-form", b"GET 127.0.0.1:{other} HTTP/1.1\r\nHost: a\r\n\r\n", (400,)),
    ("CONNECT to another host", b"CONNECT 127.0.0.1:{other} HTTP/1.1\r\nHost: 127.0.0.1:{other}"
     b"\r\n\r\nGET {p} HTTP/1.1\r\nHost: a\r\n\r\n", (400, 405)),
]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Origin, Origin, Proxy]]:
    origin, other = Origin(), Origin()
    proxy = Proxy(origin.url, tmp_path_factory.mktemp("bad") / "cache").start()
    yield origin, other, proxy
    proxy.stop()
    origin.stop()
    other.stop()


def _status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer[9:12])


@pytest.mark.parametrize("name,data,statuses", CASES, ids=[c[0] for c in CASES])
def test_refused_never_forwarded_never_stored(
    servers: tuple[Origin, Origin, Proxy], name: str, data: bytes, statuses: tuple[int, ...]
) -> None:
    origin, other, proxy = servers
    path = f"/bad{next(_n)}"
    # Cacheable for a minute, so a request that did reach the origin would be stored.
    origin.route(path, 200, [("Cache-Control", "max-age=60")], b"plain " + path.encode())
    other.route(path, 200, [("Cache-Control", "max-age=60")], b"OTHER")
    before, before_other = len(origin.seen), len(other.seen)
    answer = raw_request("127.0.0.1", proxy.port, data.replace(b"{p}", path.encode()).replace(
        b"{other}", str(other.port).encode()))
    assert _status(answer) in statuses
    assert len(origin.seen) == before, "forwarded to the origin"
    assert len(other.seen) == before_other, "connected to another host"
    follow = fetch(proxy.url + path)
    assert (follow.status, follow.body, follow.x_cache) == (200, b"plain " + path.encode(), "MISS")
    assert origin.count(path) == 1


def test_absolute_form_naming_the_origin_is_sent_in_origin_form(
    servers: tuple[Origin, Origin, Proxy],
) -> None:
    origin, other, proxy = servers
    path = f"/bad{next(_n)}"
    origin.route(path, 200, [("Cache-Control", "max-age=60")], b"plain")
    answer = raw_request("127.0.0.1", proxy.port, f"GET {origin.url}{path} HTTP/1.1\r\n"
                         "Host: a\r\nConnection: close\r\n\r\n".encode())
    assert _status(answer) == 200 and answer.endswith(b"plain")
    # The origin saw the target the cache keys on, not the absolute form.
    assert [s.path for s in origin.requests_for(path)] == [path]
    assert fetch(proxy.url + path).x_cache == "HIT"
    assert not other.seen


def test_host_header_is_the_origins(servers: tuple[Origin, Origin, Proxy]) -> None:
    """Whatever Host the client sends, the origin gets its own (mitmproxy's reverse mode), so
    a Host variant can neither reach another virtual host nor split or poison the key."""
    origin, _, proxy = servers
    path = f"/bad{next(_n)}"
    origin.route(path, 200, [("Cache-Control", "max-age=60")], b"plain")
    for host in ("evil.example", "127.0.0.1:1", "EVIL.example."):
        assert fetch(proxy.url + path, headers={"Host": host}).body == b"plain"
    # An empty Host is refused (RFC 9112 3.2), before anything is looked up or forwarded.
    assert fetch(proxy.url + path, headers={"Host": ""}).status == 400
    assert {s.header("Host") for s in origin.requests_for(path)} == {f"127.0.0.1:{origin.port}"}
    assert origin.count(path) == 1
