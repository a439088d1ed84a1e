"""Accept-Encoding normalized, variants decoded for clients that accept no coding, and
--compress: end to end against a real proxy and a real origin that encodes as asked."""

from __future__ import annotations

import gzip
import json
from typing import Any

import brotli

from support.client import fetch
from support.origin import Origin, Reply, Seen
from support.proxy import Proxy

TEXT = b"caching-proxy " * 400
BROWSER = "gzip, deflate, br, zstd"
PYTHON = "gzip, deflate"


def negotiating(seen: Seen) -> Reply:
    """An origin that encodes as the request accepts, as nginx's gzip and brotli modules do."""
    headers = [("Cache-Control", "max-age=600"), ("Vary", "Accept-Encoding"),
               ("ETag", '"t1"'), ("Content-Type", "text/plain")]
    wanted = seen.header("Accept-Encoding") or ""
    if "br" in wanted:
        return Reply(200, [*headers, ("Content-Encoding", "br")], brotli.compress(TEXT))
    if "gzip" in wanted:
        return Reply(200, [*headers, ("Content-Encoding", "gzip")], gzip.compress(TEXT))
    return Reply(200, headers, TEXT)


def test_three_client_families_make_two_origin_requests(origin: Origin, proxy: Proxy) -> None:
    origin.route("/t", handler=negotiating)
    browser = fetch(proxy.url + "/t", headers={"Accept-Encoding": BROWSER})
    assert browser.header("Content-Encoding") == "br" and brotli.decompress(browser.body) == TEXT
    python = fetch(proxy.url + "/t", headers={"Accept-Encoding": PYTHON})
    assert python.header("Content-Encoding") == "gzip" and gzip.decompress(python.body) == TEXT
    # The origin saw only the normalized values.
    assert [s.header("Accept-Encoding") for s in origin.requests_for("/t")] == ["br", "gzip"]
    for agent in (BROWSER, "br;q=1, gzip;q=0.5", "*"):
        again = fetch(proxy.url + "/t", headers={"Accept-Encoding": agent})
        assert again.x_cache == "HIT" and again.header("Content-Encoding") == "br", agent
    assert fetch(proxy.url + "/t", headers={"Accept-Encoding": "x-gzip"}).x_cache == "HIT"

    plain = fetch(proxy.url + "/t")  # curl without --compressed: accepts no coding
    assert plain.x_cache == "HIT" and plain.body == TEXT
    assert plain.header("Content-Encoding") is None
    assert plain.header("Content-Length") == str(len(TEXT))
    assert plain.header("ETag") == 'W/"t1"' and plain.header("Vary") == "Accept-Encoding"
    assert "detail=decoded" in (plain.header("Cache-Status") or "")
    refused = fetch(proxy.url + "/t", headers={"Accept-Encoding": "br;q=0, gzip;q=0"})
    assert refused.body == TEXT and refused.header("Content-Encoding") is None
    assert origin.count("/t") == 2


def test_encodings_off_forwards_accept_encoding_as_sent(origin: Origin, make_proxy: Any) -> None:
    proxy = make_proxy("--encodings", "off")
    origin.route("/t", handler=negotiating)
    fetch(proxy.url + "/t", headers={"Accept-Encoding": BROWSER})
    fetch(proxy.url + "/t", headers={"Accept-Encoding": "gzip, br"})
    assert [s.header("Accept-Encoding") for s in origin.requests_for("/t")] == [
        BROWSER, "gzip, br"]


def test_compress_stores_compressed_once_and_serves_everyone(
        origin: Origin, make_proxy: Any) -> None:
    proxy = make_proxy("--compress")
    data = json.dumps({"items": list(range(500))}).encode()
    origin.route("/j", 200, [("Cache-Control", "max-age=600"), ("ETag", '"j"'),
                             ("Content-Type", "application/json")], data)
    origin.route("/img", 200, [("Cache-Control", "max-age=600"),
                               ("Content-Type", "image/png")], bytes(2000))
    first = fetch(proxy.url + "/j", headers={"Accept-Encoding": PYTHON})
    assert first.x_cache == "MISS" and first.header("Content-Encoding") == "gzip"
    assert gzip.decompress(first.body) == data and first.header("Vary") == "Accept-Encoding"
    assert first.header("ETag") == 'W/"j"'
    assert int(first.header("Content-Length") or 0) == len(first.body) < len(data)
    hit = fetch(proxy.url + "/j", headers={"Accept-Encoding": "gzip"})
    assert hit.x_cache == "HIT" and gzip.decompress(hit.body) == data
    plain = fetch(proxy.url + "/j")
    assert plain.x_cache == "HIT" and plain.body == data
    assert plain.header("Content-Encoding") is None
    assert origin.count("/j") == 1
    br = fetch(proxy.url + "/j", headers={"Accept-Encoding": "br"})
    assert br.header("Content-Encoding") == "br" and brotli.decompress(br.body) == data
    assert origin.count("/j") == 2  # its own variant, compressed once
    image = fetch(proxy.url + "/img", headers={"Accept-Encoding": "gzip"})
    assert image.header("Content-Encoding") is None and image.body == bytes(2000)


def test_a_range_of_a_decoded_variant(origin: Origin, proxy: Proxy) -> None:
    origin.route("/t", handler=negotiating)
    fetch(proxy.url + "/t", headers={"Accept-Encoding": "gzip"})
    part = fetch(proxy.url + "/t", headers={"Range": "bytes=0-13"})
    assert part.status == 206 and part.body == TEXT[:14]
    assert part.header("Content-Range") == f"bytes 0-13/{len(TEXT)}"
    assert origin.count("/t") == 1
