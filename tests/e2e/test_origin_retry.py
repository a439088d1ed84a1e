"""One retry on a dead reused origin connection (nginx `proxy_next_upstream error`), end to end: a
real proxy process, a raw-socket origin that answers the first request on each connection with
keep-alive and closes the connection right after reading the next request on it, before any byte
of answer (the keep-alive race, made deterministic), raw client sockets.

The proxy reuses its origin connection for the requests of one client connection, so the second
request a client sends meets the closed connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.proxy import Proxy
from support.scripted_origin import CLOSE, RawClient, ScriptedOrigin, Seen, get

EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"


def ok(body: bytes, cache_control: str = "max-age=300") -> list[bytes | float]:
    return [b"HTTP/1.1 200 OK\r\nCache-Control: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (cache_control.encode(), len(body), body)]


def script(seen: Seen) -> list[bytes | float] | None:
    if seen.path.startswith("/always-dead") or seen.path.startswith("/fresh-dead"):
        return None  # never answers, on any connection
    if seen.path.startswith("/hints-dead") and seen.index > 0:
        return [EARLY_HINTS, CLOSE]  # a byte of response arrived before the close
    if seen.path.startswith("/hangs") and seen.index > 0:
        return [30.0]  # past the proxy's first-byte timeout
    if seen.index > 0:
        return None  # the keep-alive race: the connection dies under the second request
    if seen.method == "POST":
        return ok(b"posted %d" % len(seen.body), "no-store")
    return ok(b"body of " + seen.path.encode())


@pytest.fixture(scope="module")
def origin() -> Iterator[ScriptedOrigin]:
    server = ScriptedOrigin(script)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(origin: ScriptedOrigin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    cache: Path = tmp_path_factory.mktemp("retry") / "cache"
    with Proxy(origin.url, cache) as p:
        yield p


def attempts(origin: ScriptedOrigin, path: str, first: int) -> list[tuple[int, int]]:
    """(connection, request index on it) of each request for `path`, connections counted from
    `first` (1: the client's first origin connection)."""
    return [(s.connection - first + 1, s.index) for s in origin.requests_for(path)]


def warm(client: RawClient, origin: ScriptedOrigin, path: str) -> int:
    """A first exchange, so that the proxy's origin connection is a reused one afterwards; the
    number the origin gave that connection."""
    (response,) = client.exchange(get(f"/warm{path}"))
    assert response.status == 200
    (seen,) = origin.requests_for(f"/warm{path}")
    assert seen.index == 0
    return seen.connection


def test_a_get_on_a_dead_reused_connection_is_sent_again_on_a_new_one(
        origin: ScriptedOrigin, proxy: Proxy) -> None:
    with RawClient(proxy.port) as client:
        first = warm(client, origin, "/page")
        (response,) = client.exchange(get("/page"))
        assert response.status == 200, response
        assert response.body == b"body of /page"
        assert response.header("X-Cache") == "MISS"
        assert "stored" in (response.header("Cache-Status") or "")
        # Asked on the dead connection (its second request), then on a new one (its first).
        assert attempts(origin, "/page", first) == [(1, 1), (2, 0)]
        (hit,) = client.exchange(get("/page"))  # handled like any other: stored
    assert hit.header("X-Cache") == "HIT" and hit.body == b"body of /page"
    assert len(origin.requests_for("/page")) == 2
    assert "sending it again on a new connection" in proxy.output


def test_a_head_is_retried_too(origin: ScriptedOrigin, proxy: Proxy) -> None:
    with RawClient(proxy.port) as client:
        warm(client, origin, "/head")
        client.send(b"HEAD /head HTTP/1.1\r\nHost: origin\r\n\r\n")
        head = client.read_head()
    assert head.status == 200
    assert len(origin.requests_for("/head")) == 2


def test_a_post_with_a_body_is_not_retried(origin: ScriptedOrigin, proxy: Proxy) -> None:
    with RawClient(proxy.port) as client:
        first = warm(client, origin, "/submit")
        (response,) = client.exchange(
            b"POST /submit HTTP/1.1\r\nHost: origin\r\nContent-Length: 4\r\n\r\ndata")
    assert response.status == 502
    assert response.header("X-Cache") == "MISS"
    assert attempts(origin, "/submit", first) == [(1, 1)]


def test_a_get_is_retried_at_most_once(origin: ScriptedOrigin, proxy: Proxy) -> None:
    with RawClient(proxy.port) as client:
        first = warm(client, origin, "/always-dead")
        (response,) = client.exchange(get("/always-dead"))
    assert response.status == 502
    # Exactly two attempts: the dead reused connection, then one new connection.
    assert attempts(origin, "/always-dead", first) == [(1, 1), (2, 0)]


def test_a_fresh_connection_that_closes_unanswered_is_not_retried(
        origin: ScriptedOrigin, proxy: Proxy) -> None:
    # Nothing was reused: closing is the origin's answer, not a race (nginx retries it on
    # another upstream; with one origin there is none).
    with RawClient(proxy.port) as client:
        (response,) = client.exchange(get("/fresh-dead"))
    assert response.status == 502
    assert len(origin.requests_for("/fresh-dead")) == 1


def test_no_retry_once_an_interim_response_reached_the_client(
        origin: ScriptedOrigin, proxy: Proxy) -> None:
    with RawClient(proxy.port) as client:
        first = warm(client, origin, "/hints-dead")
        hints, response = client.exchange(get("/hints-dead"))
    assert hints.status == 103
    assert response.status == 502  # the final answer after the interim one, as HTTP allows
    assert attempts(origin, "/hints-dead", first) == [(1, 1)]


def test_no_retry_after_an_origin_timeout_cut_the_reused_connection(
        origin: ScriptedOrigin, tmp_path: Path) -> None:
    with Proxy(origin.url, tmp_path / "cache", "--first-byte-timeout", "1") as proxy, \
            RawClient(proxy.port) as client:
        first = warm(client, origin, "/hangs")
        (response,) = client.exchange(get("/hangs"))
    assert response.status == 504
    assert attempts(origin, "/hangs", first) == [(1, 1)]
