"""Cache poisoning: whatever a request carries outside the cache key, a later plain request gets
the plain response. The origin reflects the tempting inputs into a cacheable body without Vary
(the worst origin a cache can sit in front of); the plain answer is its body for a plain request.
"""

from __future__ import annotations

import http.client
import itertools
from collections.abc import Iterator

import pytest

from support.client import fetch, raw_request
from support.origin import Origin, Reply, Seen
from support.proxy import Proxy

_n = itertools.count()
UNKEYED = ["X-Forwarded-Host", "X-Host", "X-Original-URL", "X-Rewrite-URL",
           "X-HTTP-Method-Override", "X-Forwarded-Scheme", "X-Forwarded-Server",
           "X-Original-Host", "X-HTTP-Method", "X-Method-Override"]


def reflect(seen: Seen) -> Reply:
    parts = [f"path={seen.path}", f"method={seen.method}", f"body={seen.body!r}"]
    parts += [f"{k}={v}" for k, v in seen.headers
              if k.lower() in {u.lower() for u in UNKEYED} | {"cookie", "host"}]
    return Reply(200, [("Cache-Control", "max-age=60")], "\n".join(parts).encode())


def plain(origin: Origin, path: str) -> bytes:
    return reflect(Seen("GET", path, [("Host", f"127.0.0.1:{origin.port}")], b"")).body


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    server = Origin()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(origin: Origin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    with Proxy(origin.url, tmp_path_factory.mktemp("poison") / "cache") as p:
        yield p


@pytest.fixture
def path(origin: Origin) -> str:
    p = f"/p{next(_n)}"
    origin.route(p, handler=reflect)
    return p


@pytest.mark.parametrize("name", UNKEYED)
def test_unkeyed_header_never_poisons(origin: Origin, proxy: Proxy, path: str, name: str) -> None:
    evil = fetch(proxy.url + path, headers={name: "evil.example"})
    assert b"evil.example" in evil.body  # forwarded: the origin may need it
    assert evil.x_cache == "MISS"
    first = fetch(proxy.url + path)
    assert first.body == plain(origin, path) and first.x_cache == "MISS"
    # ... and with a plain response stored, the header still reaches the origin, never the store.
    again = fetch(proxy.url + path, headers={name: "evil2.example"})
    assert b"evil2.example" in again.body
    assert fetch(proxy.url + path).x_cache == "HIT"
    assert fetch(proxy.url + path).body == plain(origin, path)
    assert origin.count(path) == 3


def test_host_variants_share_the_origins_host(origin: Origin, proxy: Proxy, path: str) -> None:
    for host in ("evil.example", "EVIL.example", "127.0.0.1", f"127.0.0.1:{origin.port}.evil"):
        assert fetch(proxy.url + path, headers={"Host": host}).body == plain(origin, path)
    assert fetch(proxy.url + path).body == plain(origin, path)
    assert origin.count(path) == 1


@pytest.mark.parametrize("variant", ["/a/../{p}", "/{p}/../{p}", "/%2e%2e/{p}", "//{p}",
                                     "/{p}%2F", "/{p}%2f", "/{p}/.", "/{p}?", "/{p}#frag"])
def test_path_forms_are_their_own_keys(origin: Origin, proxy: Proxy, path: str, variant: str) -> None:
    """The key is the target exactly as forwarded (no normalizing), so each form gets what the
    origin says for that very form and never lands under the plain path."""
    target = variant.replace("/{p}", path)
    origin.route(target.split("?")[0], handler=reflect)
    before = len(origin.seen)
    answer = raw_request("127.0.0.1", proxy.port,
                         f"GET {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 "), answer
    # Forwarded as sent (Python's http.server itself collapses a leading "//").
    sent = "/" + target.lstrip("/") if target.startswith("//") else target
    assert [s.path for s in origin.seen[before:]] == [sent]
    assert fetch(proxy.url + path).body == plain(origin, path)
    assert fetch(proxy.url + path).x_cache == "HIT"


def test_fat_get_body_is_dropped(origin: Origin, proxy: Proxy, path: str) -> None:
    """A GET body is not in the key: it is dropped before forwarding (as Varnish does), so the
    stored answer is the plain one."""
    fat = fetch(proxy.url + path, body=b"evil=1")
    assert fat.body == plain(origin, path)
    assert origin.requests_for(path)[0].body == b""
    assert fetch(proxy.url + path).body == plain(origin, path)
    chunked = raw_request("127.0.0.1", proxy.port, (
        f"GET {path}x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
        "\r\n6\r\nevil=1\r\n0\r\n\r\n").encode())
    assert b"evil" not in chunked


def test_fat_get_keeps_the_connection_in_step(origin: Origin, proxy: Proxy, path: str) -> None:
    """The dropped body is still read from the client: the next request on the same connection
    is parsed where it starts (no smuggled request hidden in the body)."""
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        smuggled = f"GET {path}-smuggled HTTP/1.1\r\nHost: a\r\n\r\n".encode()
        conn.request("GET", path, body=smuggled, headers={"Content-Length": str(len(smuggled))})
        first = conn.getresponse()
        assert first.read() == plain(origin, path)
        conn.request("GET", path)
        assert conn.getresponse().read() == plain(origin, path)
    finally:
        conn.close()
    assert origin.count(f"{path}-smuggled") == 0


def test_cookie_requests_are_not_answered_from_another_cookie(
    origin: Origin, proxy: Proxy, path: str
) -> None:
    alice = fetch(proxy.url + path, headers={"Cookie": "session=alice"})
    assert b"session=alice" in alice.body
    bob = fetch(proxy.url + path, headers={"Cookie": "session=bob"})
    assert b"session=bob" in bob.body and b"alice" not in bob.body
    assert fetch(proxy.url + path).body == plain(origin, path)
    # The plain answer, now stored, is not handed to a request with a cookie either.
    assert fetch(proxy.url + path).x_cache == "HIT"
    carol = fetch(proxy.url + path, headers={"Cookie": "session=carol"})
    assert b"session=carol" in carol.body and carol.x_cache == "MISS"
    assert origin.count(path) == 4


def test_method_is_in_the_key(origin: Origin, proxy: Proxy, path: str) -> None:
    """A POST to the URL is forwarded and never answers a later GET."""
    post = fetch(proxy.url + path, method="POST", body=b"x")
    assert b"method=POST" in post.body
    assert fetch(proxy.url + path).body == plain(origin, path)
