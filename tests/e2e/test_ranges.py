"""Ranges from the cache, end to end: a real proxy, a real counting origin that would answer a
Range itself (so a range answered by the proxy is proven by what the origin was asked)."""

from __future__ import annotations

import os
import re
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from support.client import fetch
from support.origin import Origin, Reply, Seen
from support.proxy import Proxy

BODY = bytes(range(256)) * 40  # 10,240 bytes, every offset tells itself apart
FRESH = [("Cache-Control", "max-age=600"), ("ETag", '"v1"'),
         ("Last-Modified", "Tue, 01 Dec 2026 10:00:00 GMT"), ("Content-Type", "application/pdf")]


def ranged_origin(origin: Origin, path: str = "/file", body: bytes = BODY,
                  headers: list[tuple[str, str]] | None = None) -> None:
    """An origin that honours Range itself, as real ones do: if the proxy forwarded a client's
    Range, the origin's 206 would be what the client saw."""
    def handler(seen: Seen) -> Reply:
        wanted = seen.header("Range")
        if wanted:
            m = re.fullmatch(r"bytes=(\d+)-(\d+)", wanted)
            if m:
                a, b = int(m.group(1)), int(m.group(2))
                return Reply(206, [*(headers or FRESH),
                                   ("Content-Range", f"bytes {a}-{b}/{len(body)}")],
                             body[a:b + 1])
        return Reply(200, list(headers or FRESH), body)
    origin.route(path, handler=handler)


def test_a_miss_fetches_the_whole_and_ranges_are_answered_from_it(
        origin: Origin, proxy: Proxy) -> None:
    ranged_origin(origin)
    first = fetch(proxy.url + "/file", headers={"Range": "bytes=100-199"})
    assert first.status == 206 and first.body == BODY[100:200] and first.x_cache == "MISS"
    assert first.header("Content-Range") == f"bytes 100-199/{len(BODY)}"
    assert origin.requests_for("/file")[0].header("Range") is None  # the whole was asked for
    for value, part, content_range in (
            ("bytes=0-0", BODY[:1], "bytes 0-0/10240"),
            ("bytes=10000-", BODY[10000:], "bytes 10000-10239/10240"),
            ("bytes=-40", BODY[-40:], "bytes 10200-10239/10240"),
            ("bytes=10200-99999", BODY[10200:], "bytes 10200-10239/10240")):
        hit = fetch(proxy.url + "/file", headers={"Range": value})
        assert (hit.status, hit.body, hit.x_cache) == (206, part, "HIT"), value
        assert hit.header("Content-Range") == content_range
        assert hit.header("Content-Length") == str(len(part))
        assert "hit" in (hit.header("Cache-Status") or "")
    whole = fetch(proxy.url + "/file")
    assert whole.status == 200 and whole.body == BODY
    assert origin.count("/file") == 1


def test_several_ranges_are_multipart(origin: Origin, proxy: Proxy) -> None:
    ranged_origin(origin)
    fetch(proxy.url + "/file")
    got = fetch(proxy.url + "/file", headers={"Range": "bytes=0-9, 5000-5009, -5"})
    assert got.status == 206 and got.x_cache == "HIT"
    content_type = got.header("Content-Type") or ""
    assert content_type.startswith("multipart/byteranges; boundary=")
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + got.body)
    parts = [(p["Content-Type"], p["Content-Range"], p.get_payload(decode=True))
             for p in message.iter_parts()]
    assert parts == [
        ("application/pdf", "bytes 0-9/10240", BODY[:10]),
        ("application/pdf", "bytes 5000-5009/10240", BODY[5000:5010]),
        ("application/pdf", "bytes 10235-10239/10240", BODY[-5:]),
    ]
    assert got.header("Content-Length") == str(len(got.body))
    overlapping = fetch(proxy.url + "/file", headers={"Range": "bytes=0-100,50-150"})
    assert overlapping.status == 200 and overlapping.body == BODY  # RFC 9110 14.2 allows it


def test_unsatisfiable_invalid_if_range_head_and_conditionals(
        origin: Origin, proxy: Proxy) -> None:
    ranged_origin(origin)
    fetch(proxy.url + "/file")
    none = fetch(proxy.url + "/file", headers={"Range": "bytes=20000-"})
    assert none.status == 416 and none.header("Content-Range") == "bytes */10240"
    assert none.body == b"" and none.x_cache == "HIT"
    ignored = fetch(proxy.url + "/file", headers={"Range": "bytes=x-y"})
    assert ignored.status == 200 and ignored.body == BODY
    same = fetch(proxy.url + "/file", headers={"Range": "bytes=0-9", "If-Range": '"v1"'})
    assert same.status == 206 and same.body == BODY[:10]
    other = fetch(proxy.url + "/file", headers={"Range": "bytes=0-9", "If-Range": '"v0"'})
    assert other.status == 200 and other.body == BODY
    head = fetch(proxy.url + "/file", method="HEAD", headers={"Range": "bytes=0-9"})
    assert head.status == 200 and head.body == b""
    # A conditional that matches wins over the range (RFC 9110 13.2.2).
    unchanged = fetch(proxy.url + "/file", headers={"Range": "bytes=0-9",
                                                    "If-None-Match": '"v1"'})
    assert unchanged.status == 304
    assert origin.count("/file") == 1


def test_a_range_after_revalidation_and_a_206_never_stored(origin: Origin, make_proxy: Any) -> None:
    proxy = make_proxy()
    revalidate = [("Cache-Control", "max-age=0"), ("ETag", '"r"')]

    def handler(seen: Seen) -> Reply:
        if seen.header("If-None-Match") == '"r"':
            return Reply(304, revalidate)
        return Reply(200, revalidate, BODY)
    origin.route("/r", handler=handler)
    fetch(proxy.url + "/r")
    got = fetch(proxy.url + "/r", headers={"Range": "bytes=256-511"})
    assert got.status == 206 and got.body == BODY[256:512]
    assert "fwd-status=304" in (got.header("Cache-Status") or "")
    # An origin that answers 206 to a plain GET: passed on, never stored as the whole.
    origin.route("/p", 206, [("Cache-Control", "max-age=600"),
                             ("Content-Range", "bytes 0-9/100")], BODY[:10])
    assert fetch(proxy.url + "/p").status == 206
    again = fetch(proxy.url + "/p", headers={"Range": "bytes=0-3"})
    assert again.x_cache == "MISS" and origin.count("/p") == 2


def test_a_range_of_an_object_too_large_to_store_is_sliced_as_it_streams(
        origin: Origin, make_proxy: Any) -> None:
    proxy = make_proxy("--max-object-size", "64k")
    big = os.urandom(1 << 20)
    ranged_origin(origin, "/big", big)
    got = fetch(proxy.url + "/big", headers={"Range": "bytes=500000-500099"})
    assert got.status == 206 and got.body == big[500000:500100]
    assert got.header("Content-Range") == f"bytes 500000-500099/{len(big)}"
    assert origin.requests_for("/big")[0].header("Range") is None  # the whole, once
    # Now known to be too large to store: its ranges pass to the origin untouched.
    again = fetch(proxy.url + "/big", headers={"Range": "bytes=100-199"})
    assert again.status == 206 and again.body == big[100:200]
    assert origin.requests_for("/big")[1].header("Range") == "bytes=100-199"
    assert "fwd=bypass" in (again.header("Cache-Status") or "")
    assert fetch(proxy.url + "/big").body == big


def test_ranges_of_a_large_stored_object_come_from_its_mapped_file(
        origin: Origin, proxy: Proxy) -> None:
    big = os.urandom(3 << 20)  # stored in a file of its own, mapped rather than read
    ranged_origin(origin, "/large", big)
    assert fetch(proxy.url + "/large").body == big
    for first, last in ((0, 0), (1 << 20, (2 << 20) - 1), (len(big) - 10, len(big) - 1)):
        got = fetch(proxy.url + "/large", headers={"Range": f"bytes={first}-{last}"})
        assert (got.status, got.x_cache) == (206, "HIT")
        assert got.body == big[first:last + 1]
    assert fetch(proxy.url + "/large").body == big
    assert origin.count("/large") == 1
