"""Interim 1xx responses from the origin (RFC 9110 15.2), end to end: a real proxy process, a
raw-socket origin that sends `103 Early Hints` or `102 Processing` before its final response,
raw client sockets that see every head.

An HTTP/1.1 client gets the interim head, then the final response, handled like any other
(stored, X-Cache, Cache-Status); an HTTP/1.0 client gets only the final one; the interim head is
never stored and none of its fields reach the final response; `Expect: 100-continue` still works.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.proxy import Proxy
from support.scripted_origin import RawClient, ScriptedOrigin, Seen, get

EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
PROCESSING = b"HTTP/1.1 102 Processing\r\n\r\n"


def final(body: bytes, *fields: str) -> bytes:
    head = "".join(f"{f}\r\n" for f in fields)
    return (b"HTTP/1.1 200 OK\r\nCache-Control: max-age=300\r\n" + head.encode()
            + b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


def script(seen: Seen) -> list[bytes] | None:
    if seen.path.startswith("/hints-own-link"):
        return [EARLY_HINTS, final(b"own", "Link: </app.js>; rel=preload")]
    if seen.path.startswith("/hints-together"):  # interim and final in one write
        return [EARLY_HINTS + final(b"together")]
    if seen.path.startswith("/hints"):
        return [EARLY_HINTS, final(b"hello")]
    if seen.path.startswith("/processing"):
        return [PROCESSING, PROCESSING, final(b"done")]
    if seen.path.startswith("/upload"):
        body = b"got %d" % len(seen.body)
        return [b"HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)]
    return [b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"]


@pytest.fixture(scope="module")
def origin() -> Iterator[ScriptedOrigin]:
    server = ScriptedOrigin(script)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(origin: ScriptedOrigin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    cache: Path = tmp_path_factory.mktemp("interim") / "cache"
    with Proxy(origin.url, cache) as p:
        yield p


def test_an_http11_client_gets_the_early_hints_then_the_final_response_which_is_stored(
        origin: ScriptedOrigin, proxy: Proxy) -> None:
    with RawClient(proxy.port) as client:
        hints, response = client.exchange(get("/hints"))
        assert (hints.status, hints.reason) == (103, "Early Hints")
        assert hints.all("Link") == ["</style.css>; rel=preload"]
        assert response.status == 200 and response.body == b"hello"
        assert response.header("X-Cache") == "MISS"
        assert "stored" in (response.header("Cache-Status") or "")
        assert response.all("Link") == []  # the 103's field is not merged into the final one

        # Same connection: a HIT, no interim head, no Link, the origin not asked again.
        (hit,) = client.exchange(get("/hints"))
    assert hit.status == 200 and hit.body == b"hello"
    assert hit.header("X-Cache") == "HIT", hit.headers
    assert hit.all("Link") == []
    assert len(origin.requests_for("/hints")) == 1


def test_a_final_response_keeps_its_own_link_field_only(
        origin: ScriptedOrigin, proxy: Proxy) -> None:
    with RawClient(proxy.port) as client:
        hints, miss = client.exchange(get("/hints-own-link"))
        (hit,) = client.exchange(get("/hints-own-link"))
    assert hints.status == 103
    assert miss.all("Link") == hit.all("Link") == ["</app.js>; rel=preload"]
    assert hit.header("X-Cache") == "HIT"


def test_interim_and_final_heads_read_in_one_piece(origin: ScriptedOrigin, proxy: Proxy) -> None:
    with RawClient(proxy.port) as client:
        heads = client.exchange(get("/hints-together"))
    assert [h.status for h in heads] == [103, 200]
    assert heads[1].body == b"together"


def test_an_http10_client_gets_only_the_final_response(
        origin: ScriptedOrigin, proxy: Proxy) -> None:
    with RawClient(proxy.port) as client:
        heads = client.exchange(get("/hints-10", "HTTP/1.0"))
    assert [h.status for h in heads] == [200]
    assert heads[0].body == b"hello" and heads[0].header("X-Cache") == "MISS"
    assert heads[0].all("Link") == []


def test_102_processing_is_forwarded_likewise(origin: ScriptedOrigin, proxy: Proxy) -> None:
    with RawClient(proxy.port) as client:
        heads = client.exchange(get("/processing"))
        (hit,) = client.exchange(get("/processing"))
    assert [h.status for h in heads] == [102, 102, 200]
    assert heads[-1].body == b"done" and heads[-1].header("X-Cache") == "MISS"
    assert hit.header("X-Cache") == "HIT" and hit.body == b"done"
    with RawClient(proxy.port) as client:
        heads = client.exchange(get("/processing-10", "HTTP/1.0"))
    assert [h.status for h in heads] == [200]
    assert len(origin.requests_for("/processing")) == 1


def test_expect_100_continue_still_works(origin: ScriptedOrigin, proxy: Proxy) -> None:
    body = b"x" * 1000
    with RawClient(proxy.port) as client:
        client.send(b"POST /upload HTTP/1.1\r\nHost: origin\r\nContent-Length: 1000\r\n"
                    b"Expect: 100-continue\r\n\r\n")
        go_on = client.read_head()  # before any byte of the body is sent
        assert go_on.status == 100
        client.send(body)
        (response,) = client.read_response()
    assert response.status == 200 and response.body == b"got 1000"
    (seen,) = origin.requests_for("/upload")
    assert seen.body == body and "expect" not in seen.headers


def test_a_background_refresh_skips_interim_responses(origin: ScriptedOrigin) -> None:
    # stale-while-revalidate refreshes go to the origin with http.client, which alone would
    # take the 103 for the answer.
    from mitmproxy import http

    from caching_proxy.cache import refresh

    request = http.Request.make("GET", f"{origin.url}/hints-refresh", headers={"Host": "origin"})
    response = refresh.fetch(request, timeout=5, max_size=1000, context=None)
    assert response is not None
    assert response.status_code == 200 and response.content == b"hello"
    assert "Link" not in response.headers
