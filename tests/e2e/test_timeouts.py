"""Origin timeouts: a slow origin gives 504 (or the stale response), never a hung client."""

from __future__ import annotations

import contextlib
import http.client
import socket
import time
from pathlib import Path

import pytest

from support.client import fetch
from support.origin import Origin, Reply
from support.proxy import Proxy, cli


def test_first_byte_timeout_gives_504(origin: Origin, make_proxy: object) -> None:
    proxy = make_proxy("--first-byte-timeout", "1")  # type: ignore[operator]
    origin.route("/hang", handler=lambda _: Reply(200, [], b"late", delay=8))
    started = time.monotonic()
    answer = fetch(proxy.url + "/hang", timeout=20)
    assert time.monotonic() - started < 6
    assert answer.status == 504 and answer.x_cache == "MISS"
    assert answer.header("Cache-Status") == (
        "caching-proxy; fwd=miss; detail=origin-timeout")
    # The proxy goes on serving.
    origin.route("/ok", 200, [], b"fine")
    assert fetch(proxy.url + "/ok").body == b"fine"


def test_connect_timeout_gives_504(tmp_path: Path) -> None:
    # A listener whose accept queue is full: the kernel drops further SYNs, so connecting hangs.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        try:
            with Proxy(f"http://127.0.0.1:{port}", tmp_path / "c", "--connect-timeout", "1") as p:
                started = time.monotonic()
                answer = fetch(p.url + "/x", timeout=20)
                assert time.monotonic() - started < 6
                assert answer.status == 504
                assert b"(connect)" in answer.body
        finally:
            for filler in fillers:
                filler.close()


def test_timeout_answers_stale_with_use_stale_timeout(origin: Origin, make_proxy: object) -> None:
    proxy = make_proxy("--first-byte-timeout", "1", "--use-stale", "timeout")  # type: ignore[operator]
    origin.route("/t", 200, [("Cache-Control", "max-age=1")], b"stored")
    fetch(proxy.url + "/t")
    time.sleep(2.1)
    origin.route("/t", handler=lambda _: Reply(200, [], b"late", delay=8))
    answer = fetch(proxy.url + "/t", timeout=20)
    assert answer.status == 200 and answer.body == b"stored" and answer.x_cache == "HIT"
    assert (answer.header("Cache-Status") or "").endswith("detail=stale-on-timeout")


def test_response_timeout_cuts_a_dripping_body(origin: Origin, make_proxy: object) -> None:
    proxy = make_proxy("--response-timeout", "1", "--max-object-size", "1k")  # type: ignore[operator]

    def drip() -> object:
        for _ in range(40):
            time.sleep(0.25)
            yield b"x" * 100

    origin.route("/drip", handler=lambda _: Reply(
        200, [("Content-Length", "4000")], parts=drip()))  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        fetch(proxy.url + "/drip", timeout=20)
    assert time.monotonic() - started < 6


def test_timeout_options_are_validated(tmp_path: Path) -> None:
    result = cli("--first-byte-timeout", "-1", "--origin", "http://x", "--cache-dir", str(tmp_path))
    assert result.returncode == 2 and "invalid seconds -1" in result.stderr
    result = cli("--use-stale", "sometimes", "--origin", "http://x", "--cache-dir", str(tmp_path))
    assert result.returncode == 2 and "unknown cache_use_stale condition 'sometimes'" in result.stderr
    result = cli("--max-object-size", "huge", "--origin", "http://x", "--cache-dir", str(tmp_path))
    assert result.returncode == 2 and "invalid size 'huge'" in result.stderr
