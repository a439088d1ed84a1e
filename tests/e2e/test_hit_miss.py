"""MISS then HIT through the real proxy; the origin's request count proves where answers came from."""

from __future__ import annotations

import gzip
import time

from support.client import fetch
from support.origin import Origin
from support.proxy import Proxy

PER_RESPONSE = ("x-cache", "cache-status", "age", "date", "server")


def test_miss_then_hit_same_status_headers_body(origin: Origin, proxy: Proxy) -> None:
    origin.route("/a", 200, [("Content-Type", "application/json"), ("Cache-Control", "max-age=60"),
                             ("Link", "</x>; rel=preload"), ("Link", "</y>; rel=preload"),
                             ("X-Custom", "one")], b'{"n": 1}')
    first = fetch(proxy.url + "/a")
    second = fetch(proxy.url + "/a")
    assert first.status == second.status == 200
    assert first.x_cache == "MISS" and second.x_cache == "HIT"
    assert first.body == second.body == b'{"n": 1}'
    assert second.without(*PER_RESPONSE) == first.without(*PER_RESPONSE)
    assert second.all("Link") == ["</x>; rel=preload", "</y>; rel=preload"]
    assert origin.count("/a") == 1
    # The origin's Date has one-second resolution, so up to a second of apparent age (4.2.3).
    assert first.header("Cache-Status") in (
        "caching-proxy; fwd=uri-miss; stored; ttl=60", "caching-proxy; fwd=uri-miss; stored; ttl=59")
    assert (second.header("Cache-Status") or "").startswith("caching-proxy; hit; ttl=")
    assert second.header("Age") is not None and int(second.header("Age") or -1) >= 0


def test_gzip_body_is_stored_as_sent_byte_for_byte(origin: Origin, proxy: Proxy) -> None:
    payload = gzip.compress(bytes(range(256)) * 40)
    origin.route("/gz", 200, [("Content-Encoding", "gzip"), ("Cache-Control", "max-age=60"),
                              ("Content-Type", "application/octet-stream")], payload)
    first = fetch(proxy.url + "/gz", headers={"Accept-Encoding": "gzip"})
    second = fetch(proxy.url + "/gz", headers={"Accept-Encoding": "gzip"})
    assert second.x_cache == "HIT"
    assert first.body == second.body == payload
    assert second.header("Content-Encoding") == "gzip"
    assert origin.count("/gz") == 1


def test_chunked_origin_response_is_served_whole_with_length(origin: Origin, proxy: Proxy) -> None:
    from support.origin import Reply

    origin.route("/chunked", handler=lambda _: Reply(
        200, [("Cache-Control", "max-age=60")], b"x" * 5000, chunked=True))
    assert fetch(proxy.url + "/chunked").body == b"x" * 5000
    second = fetch(proxy.url + "/chunked")
    assert second.x_cache == "HIT" and second.body == b"x" * 5000
    assert second.header("Content-Length") == "5000"
    assert second.header("Transfer-Encoding") is None


def test_query_is_part_of_the_key(origin: Origin, proxy: Proxy) -> None:
    origin.route("/q", handler=lambda seen: __import__("support.origin").origin.Reply(
        200, [("Cache-Control", "max-age=60")], seen.path.encode()))
    assert fetch(proxy.url + "/q?a=1").body == b"/q?a=1"
    assert fetch(proxy.url + "/q?a=2").body == b"/q?a=2"
    hit = fetch(proxy.url + "/q?a=1")
    assert hit.x_cache == "HIT" and hit.body == b"/q?a=1"
    assert origin.count("/q?a=1") == 1 and origin.count("/q?a=2") == 1


def test_head_is_answered_from_stored_get(origin: Origin, proxy: Proxy) -> None:
    origin.route("/h", 200, [("Cache-Control", "max-age=60"), ("Content-Type", "text/plain")],
                 b"hello")
    fetch(proxy.url + "/h")
    head = fetch(proxy.url + "/h", method="HEAD")
    assert head.x_cache == "HIT" and head.body == b""
    assert head.header("Content-Length") == "5"
    assert origin.count("/h") == 1


def test_head_miss_fills_the_cache_for_get(origin: Origin, proxy: Proxy) -> None:
    origin.route("/hm", 200, [("Cache-Control", "max-age=60")], b"body")
    head = fetch(proxy.url + "/hm", method="HEAD")
    assert head.status == 200 and head.body == b"" and head.x_cache == "MISS"
    get = fetch(proxy.url + "/hm")
    assert get.x_cache == "HIT" and get.body == b"body"
    assert [s.method for s in origin.requests_for("/hm")] == ["GET"]


def test_no_store_and_private_are_not_stored(origin: Origin, proxy: Proxy) -> None:
    origin.route("/ns", 200, [("Cache-Control", "no-store")], b"x")
    origin.route("/pv", 200, [("Cache-Control", "private, max-age=60")], b"x")
    for path in ("/ns", "/pv"):
        assert fetch(proxy.url + path).x_cache == "MISS"
        again = fetch(proxy.url + path)
        assert again.x_cache == "MISS"
        assert "stored" not in (again.header("Cache-Status") or "")
        assert origin.count(path) == 2


def test_authorization_request_not_stored(origin: Origin, proxy: Proxy) -> None:
    origin.route("/auth", 200, [("Cache-Control", "max-age=60")], b"secret")
    fetch(proxy.url + "/auth", headers={"Authorization": "Bearer x"})
    assert fetch(proxy.url + "/auth").x_cache == "MISS"
    assert origin.count("/auth") == 2


def test_ttl_expiry_gives_miss(origin: Origin, proxy: Proxy) -> None:
    origin.route("/ttl", 200, [("Cache-Control", "max-age=1")], b"x")
    assert fetch(proxy.url + "/ttl").x_cache == "MISS"
    assert fetch(proxy.url + "/ttl").x_cache == "HIT"
    time.sleep(2.1)
    assert fetch(proxy.url + "/ttl").x_cache == "MISS"
    assert origin.count("/ttl") == 2


def test_default_ttl_applies_without_explicit_freshness(origin: Origin, make_proxy) -> None:  # type: ignore[no-untyped-def]
    # 3 s, not 1: the origin's Date has whole seconds, so a response may be up to a second old
    # when it arrives, and a loaded machine takes more than the rest before the second request.
    proxy = make_proxy("--default-ttl", "3")
    origin.route("/d", 200, [], b"x")
    assert fetch(proxy.url + "/d").x_cache == "MISS"
    hit = fetch(proxy.url + "/d")
    assert hit.x_cache == "HIT"
    time.sleep(4.1)
    assert fetch(proxy.url + "/d").x_cache == "MISS"


def test_default_ttl_zero_never_reuses_without_asking(origin: Origin, make_proxy) -> None:  # type: ignore[no-untyped-def]
    proxy = make_proxy("--default-ttl", "0")
    origin.route("/z", 200, [], b"x")
    origin.route("/explicit", 200, [("Cache-Control", "max-age=60")], b"y")
    for _ in range(3):
        assert fetch(proxy.url + "/z").x_cache == "MISS"
    assert origin.count("/z") == 3
    fetch(proxy.url + "/explicit")
    assert fetch(proxy.url + "/explicit").x_cache == "HIT"


def test_expires_header_gives_lifetime(origin: Origin, proxy: Proxy) -> None:
    from email.utils import formatdate

    now = time.time()
    origin.route("/exp", 200, [("Date", formatdate(now, usegmt=True)),
                               ("Expires", formatdate(now + 100, usegmt=True))], b"x")
    first = fetch(proxy.url + "/exp")
    assert first.x_cache == "MISS"
    ttl = int((first.header("Cache-Status") or "").rsplit("ttl=", 1)[1])
    assert 95 <= ttl <= 100
    assert fetch(proxy.url + "/exp").x_cache == "HIT"


def test_post_is_forwarded_every_time(origin: Origin, proxy: Proxy) -> None:
    origin.route("/p", 200, [("Cache-Control", "max-age=60")], b"ok")
    for _ in range(2):
        r = fetch(proxy.url + "/p", method="POST", body=b"data")
        assert r.x_cache == "MISS" and r.body == b"ok"
    assert origin.count("/p") == 2


def test_every_response_carries_x_cache(origin: Origin, proxy: Proxy) -> None:
    origin.route("/e", 404, [], b"nope")
    assert fetch(proxy.url + "/e").x_cache == "MISS"
    assert fetch(proxy.url + "/missing-route-404").x_cache in ("MISS", "HIT")
