"""The same request sequences through the three ways in (the HTTP/1 hit lane, mitmproxy's HTTP/1
path with `--no-hit-lane`, HTTP/2 over TLS) give the same answers: status, body and the cache's
fields, step by step. Each way has its own proxy and store; the origin is shared and counts."""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from support.certs import Certs, make_certs
from support.client import fetch
from support.h2_client import h2_request
from support.origin import Origin, Reply, Seen
from support.proxy import Proxy

WAYS = ("lane", "no-lane", "h2")
TTL = re.compile(r"; ttl=-?\d+")


@dataclass(frozen=True)
class Seen_:
    status: int | str
    body: bytes
    x_cache: str | None
    cache_status: str | None
    content_range: str | None
    origin_asked: int  # requests the origin got for the path during this step


@pytest.fixture(scope="module")
def diff_origin() -> Iterator[Origin]:
    server = Origin()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def diff_certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def diff_proxies(diff_origin: Origin, diff_certs: Certs,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Proxy]]:
    folder = tmp_path_factory.mktemp("differential")
    started = {
        "lane": Proxy(diff_origin.url, folder / "lane"),
        "no-lane": Proxy(diff_origin.url, folder / "no-lane", "--no-hit-lane"),
        "h2": Proxy(diff_origin.url, folder / "h2", "--tls-cert", str(diff_certs.cert),
                    "--tls-key", str(diff_certs.key)),
    }
    for p in started.values():
        p.start()
    yield started
    for p in started.values():
        p.stop()


def ask(way: str, proxy: Proxy, certs: Certs, origin: Origin, method: str, path: str,
        fields: list[tuple[str, str]]) -> Seen_:
    before = origin.count(path)
    if way == "h2":
        context = ssl.create_default_context(cafile=str(certs.ca))
        got = h2_request(proxy.port, context, method.encode(), path.encode(),
                         [(k.lower().encode(), v.encode()) for k, v in fields])
        outcome: int | str = got.outcome
        body, x_cache = got.body, got.header("X-Cache")
        status_field, content_range = got.header("Cache-Status"), got.header("Content-Range")
    else:
        r = fetch(proxy.url + path, method=method, headers=fields)
        outcome, body, x_cache = r.status, r.body, r.x_cache
        status_field, content_range = r.header("Cache-Status"), r.header("Content-Range")
    return Seen_(outcome, body, x_cache, TTL.sub("", status_field or "") or None, content_range,
                 origin.count(path) - before)


def validating(body: bytes, cache_control: str) -> object:
    def handler(seen: Seen) -> Reply:
        if seen.header("If-None-Match") == '"v1"':
            return Reply(304, [("ETag", '"v1"'), ("Cache-Control", cache_control)])
        return Reply(200, [("ETag", '"v1"'), ("Cache-Control", cache_control)], body)

    return handler


# Each step: (method, path suffix, request fields). The paths' routes are set below.
SEQUENCE: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("GET", "/fresh", []),  # MISS
    ("GET", "/fresh", []),  # HIT
    ("HEAD", "/fresh", []),  # HIT, no body
    ("GET", "/fresh", [("Range", "bytes=2-5")]),  # 206 from the stored whole
    ("GET", "/fresh", [("Range", "bytes=900-")]),  # 416
    ("GET", "/fresh", [("If-None-Match", '"v1"')]),  # 304 from the store
    ("GET", "/fresh", [("If-None-Match", '"other"')]),  # 200 HIT
    ("GET", "/fresh", [("Cache-Control", "no-cache")]),  # revalidated: the origin's 304
    ("GET", "/fresh", [("Accept-Encoding", "gzip")]),  # HIT (no Vary)
    ("GET", "/stale", []),  # stored already stale (Age past max-age)
    ("GET", "/stale", []),  # revalidated: 304, fresh again? no: max-age=1, Age=30 stays stale
    ("GET", "/dies", []),  # stored stale, stale-if-error allows it
    ("GET", "/dies", []),  # the origin now fails: the stored response, stale-on-error
    ("GET", "/private", []),  # not stored
    ("GET", "/private", []),  # again from the origin
    ("GET", "/missing", []),  # the origin's 404 (heuristically cacheable: stored)
    ("GET", "/missing", []),
    ("POST", "/fresh", []),  # passes, and invalidates /fresh
    ("GET", "/fresh", []),  # MISS again
]


def test_three_ways_give_the_same_answers(diff_origin: Origin, diff_proxies: dict[str, Proxy],
                                          diff_certs: Certs) -> None:
    seen: dict[str, list[Seen_]] = {}
    for way in WAYS:
        base = f"/d-{way}"
        diff_origin.route(base + "/fresh", handler=validating(b"0123456789", "max-age=600"))  # type: ignore[arg-type]
        diff_origin.route(base + "/stale", handler=lambda _: Reply(
            200, [("Cache-Control", "max-age=1"), ("Age", "30"), ("ETag", '"s"')], b"old"))
        dies = {"alive": True}

        def dying(_: Seen, dies: dict[str, bool] = dies) -> Reply:
            if dies["alive"]:
                dies["alive"] = False
                return Reply(200, [("Cache-Control", "max-age=1, stale-if-error=600"),
                                   ("Age", "30")], b"kept")
            return Reply(raw=b"")  # the connection closed with no answer

        diff_origin.route(base + "/dies", handler=dying)
        diff_origin.route(base + "/private", 200, [("Cache-Control", "private")], b"mine")
        diff_origin.route(base + "/missing", 404, [], b"not here")
        seen[way] = [ask(way, diff_proxies[way], diff_certs, diff_origin, method, base + suffix,
                         fields) for method, suffix, fields in SEQUENCE]
    lane = seen["lane"]
    # The sequence means what it says (on the lane; the others must equal it).
    assert [s.x_cache for s in lane[:3]] == ["MISS", "HIT", "HIT"]
    assert lane[2].body == b""
    assert (lane[3].status, lane[3].body, lane[3].content_range) == (206, b"2345", "bytes 2-5/10")
    assert lane[4].status == 416
    assert lane[5].status == 304 and lane[6].status == 200
    assert lane[7].origin_asked == 1 and lane[7].body == b"0123456789"
    assert (lane[12].status, lane[12].body, lane[12].x_cache) == (200, b"kept", "HIT")
    assert "stale-on-error" in (lane[12].cache_status or "")
    assert [s.origin_asked for s in lane[13:15]] == [1, 1]
    assert lane[-1].x_cache == "MISS" and lane[-1].origin_asked == 1
    for way in ("no-lane", "h2"):
        for step, (a, b) in enumerate(zip(lane, seen[way], strict=True)):
            assert a == b, f"step {step} {SEQUENCE[step]}: lane {a} != {way} {b}"
