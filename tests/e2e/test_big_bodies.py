"""Big bodies stream through without being held in memory, and are not stored."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from pathlib import Path

from support.client import fetch
from support.origin import Origin, Reply
from support.proxy import Proxy

GIB = 1 << 30
PART = b"\xab" * (1 << 20)


def one_gib() -> Iterator[bytes]:
    for _ in range(GIB // len(PART)):
        yield PART


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_one_gib_response_passes_through_in_bounded_memory(origin: Origin, proxy: Proxy) -> None:
    origin.route("/huge", handler=lambda _: Reply(
        200, [("Content-Length", str(GIB)), ("Cache-Control", "max-age=60")], parts=one_gib()))
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=60)
    received = 0
    try:
        conn.request("GET", "/huge")
        answer = conn.getresponse()
        assert answer.status == 200
        assert answer.getheader("X-Cache") == "MISS"
        assert answer.getheader("Cache-Status") == "caching-proxy; fwd=uri-miss"
        while chunk := answer.read(1 << 20):
            received += len(chunk)
    finally:
        conn.close()
    assert received == GIB
    # The CLI re-executes itself with -O: same process, so the Popen pid is the proxy.
    assert proxy.proc is not None
    peak = peak_rss_kib(proxy.proc.pid)
    print(f"proxy peak RSS after 1 GiB: {peak // 1024} MiB")
    assert peak < 200 * 1024
    # Not stored: asked again, the origin answers again.
    origin.route("/huge", 200, [("Cache-Control", "max-age=60")], b"small now")
    assert fetch(proxy.url + "/huge").body == b"small now"
    assert origin.count("/huge") == 2


def test_unknown_length_stored_while_small_streamed_once_past_the_limit(
    origin: Origin, make_proxy: object
) -> None:
    proxy = make_proxy("--max-object-size", "64k")  # type: ignore[operator]
    origin.route("/small", handler=lambda _: Reply(
        200, [("Cache-Control", "max-age=60")], b"s" * 10_000, chunked=True))
    origin.route("/grows", handler=lambda _: Reply(
        200, [("Cache-Control", "max-age=60")], parts=iter([b"g" * 50_000] * 6), chunked=True))
    assert fetch(proxy.url + "/small").x_cache == "MISS"
    assert fetch(proxy.url + "/small").x_cache == "HIT"
    first = fetch(proxy.url + "/grows")
    assert first.body == b"g" * 300_000 and first.x_cache == "MISS"
    assert "stored" not in (first.header("Cache-Status") or "")
    time.sleep(0.2)
    second = fetch(proxy.url + "/grows")
    assert second.x_cache == "MISS" and second.body == b"g" * 300_000
    assert origin.count("/grows") == 2


def test_known_length_past_the_limit_is_not_stored(origin: Origin, make_proxy: object) -> None:
    proxy = make_proxy("--max-object-size", "64k")  # type: ignore[operator]
    origin.route("/big", 200, [("Cache-Control", "max-age=60")], b"b" * 100_000)
    first = fetch(proxy.url + "/big")
    assert first.body == b"b" * 100_000 and first.header("Cache-Status") == (
        "caching-proxy; fwd=uri-miss")
    assert fetch(proxy.url + "/big").x_cache == "MISS"
    assert origin.count("/big") == 2
