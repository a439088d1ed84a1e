"""A Redis that stops answering (SIGSTOP: the process hangs, its sockets stay open) never holds a
request up for more than --store-timeout, memory-tier hits go on, and caching resumes when it
answers again (SIGCONT). A real proxy, a real redis-server, a counting origin."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from caching_proxy.store.guarded import GuardedStore
from caching_proxy.store.redis_store import RedisStore
from support.client import fetch
from support.origin import Origin
from support.redis_server import RedisServer

FRESH = [("Cache-Control", "max-age=600")]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path / "redis").start()
    yield server
    if server.proc is not None:
        os.kill(server.proc.pid, signal.SIGCONT)
    server.stop()


def timed(url: str) -> tuple[float, Any]:
    began = time.monotonic()
    answer = fetch(url, timeout=10)
    return time.monotonic() - began, answer


def test_a_stopped_redis_costs_a_request_the_store_timeout_at_most(
        origin: Origin, make_proxy: Any, redis_server: RedisServer) -> None:
    proxy = make_proxy("--store", redis_server.url, "--store-timeout", "0.25")
    for path in ("/hot", *(f"/new{i}" for i in range(12))):
        origin.route(path, 200, FRESH, path.encode())
    assert fetch(proxy.url + "/hot").x_cache == "MISS"
    assert fetch(proxy.url + "/hot").x_cache == "HIT"
    assert redis_server.proc is not None
    os.kill(redis_server.proc.pid, signal.SIGSTOP)
    try:
        # Misses on new URLs while Redis hangs: each answered by the origin, none waiting long.
        took = []
        for i in range(6):
            seconds, answer = timed(proxy.url + f"/new{i}")
            assert answer.status == 200 and answer.body == f"/new{i}".encode()
            took.append(seconds)
        assert max(took) < 1.0, took  # 0.25 s store timeout, plus the origin and the machine
        # Hits from the memory tier go on meanwhile, concurrently with waiting misses.
        with ThreadPoolExecutor(4) as pool:
            misses = [pool.submit(timed, proxy.url + f"/new{i}") for i in range(6, 12)]
            hot = [timed(proxy.url + "/hot") for _ in range(5)]
            assert all(m.result()[1].status == 200 for m in misses)
        assert all(a.x_cache == "HIT" and s < 0.5 for s, a in hot), [(s, a.x_cache) for s, a in hot]
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
    # Redis answers again: caching resumes.
    deadline = time.monotonic() + 10
    while fetch(proxy.url + "/new0").x_cache != "HIT":
        assert time.monotonic() < deadline, "caching did not resume"
        time.sleep(0.3)
    assert "cache store unavailable" in proxy.output


def test_locks_on_a_stopped_redis_never_hold_the_event_loop(redis_server: RedisServer) -> None:
    # The store API as the hooks use it (GuardedStore), on the real server: the fill lock is
    # taken in a thread and waited for the store timeout at most, and a release is not waited
    # for, so the loop goes on running other work (a ticker here) while Redis hangs.
    store = GuardedStore(RedisStore(redis_server.url, timeout=0.25), shared=True, remote=True,
                         timeout=0.25)
    assert redis_server.proc is not None

    async def main() -> None:
        held = await store.acquire_async("/held", 30)
        assert held  # a real token while Redis answers
        assert await store.acquire_async("/held", 30) is None  # held: another fills
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        os.kill(redis_server.proc.pid, signal.SIGSTOP)
        try:
            began = time.monotonic()
            got = await store.acquire_async("/other", 30)
            waited = time.monotonic() - began
            released_in = time.monotonic()
            store.release("/held", held)
            released_in = time.monotonic() - released_in
            assert got == ""  # failed: the caller goes ahead uncoordinated
            assert waited < 0.6, waited  # the 0.25 s store timeout and the machine
            assert released_in < 0.05, released_in  # not waited for
            assert ticks >= 10, ticks  # the loop ran throughout
        finally:
            os.kill(redis_server.proc.pid, signal.SIGCONT)
            ticker.cancel()
        await asyncio.sleep(1.2)  # the silent second after a timeout, then Redis again
        deadline = time.monotonic() + 10
        while (token := await store.acquire_async("/again", 30)) in ("", None):
            assert time.monotonic() < deadline, "locks did not come back"
            await asyncio.sleep(0.2)
        store.release("/again", token)

    try:
        asyncio.run(main())
    finally:
        store.close()
