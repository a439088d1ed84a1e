"""A Redis that stops answering (SIGSTOP: the process hangs, its sockets stay open) never holds a
request up for more than --store-timeout, memory-tier hits go on, and caching resumes when it
answers again (SIGCONT). A real proxy, a real redis-server, a counting origin."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from caching_proxy.store import open_store
from caching_proxy.store.guarded import GuardedStore
from caching_proxy.store.memory.tier import MemoryTier
from caching_proxy.store.outage import DOWN_AFTER
from caching_proxy.store.redis.store import RedisStore
from support.client import fetch
from support.entries import make_entry
from support.origin import Origin
from support.polling import wait_until
from support.redis_server import RedisServer

FRESH = [("Cache-Control", "max-age=600")]
T = TypeVar("T")


@contextlib.asynccontextmanager
async def redis_stopped(server: RedisServer) -> AsyncIterator[list[int]]:
    """Redis hung (SIGSTOP) for the block, and the turns of the event loop meanwhile: a ticker
    every 10 ms, counted in the list's one element."""
    assert server.proc is not None
    ticks = [0]

    async def tick() -> None:
        while True:
            ticks[0] += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield ticks
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
        ticker.cancel()


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
        # Declared down once the probe sent on the first timeout gets no answer (1 s bound).
        assert proxy.logged("cache store unavailable", timeout=5)
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
    # taken with the asyncio client and waited for the store timeout at most, and a release is not waited
    # for, so the loop goes on running other work (a ticker here) while Redis hangs.
    store = GuardedStore(RedisStore(redis_server.url, timeout=0.25), shared=True, remote=True,
                         timeout=0.25)
    assert redis_server.proc is not None

    async def main() -> None:
        held = await store.acquire_async("/held", 30)
        assert held  # a real token while Redis answers
        assert await store.acquire_async("/held", 30) is None  # held: another fills
        async with redis_stopped(redis_server) as ticks:
            began = time.monotonic()
            got = await store.acquire_async("/other", 30)
            waited = time.monotonic() - began
            released_in = time.monotonic()
            store.release("/held", held)
            released_in = time.monotonic() - released_in
            assert got == ""  # failed: the caller goes ahead uncoordinated
            assert waited < 0.6, waited  # the 0.25 s store timeout and the machine
            assert released_in < 0.05, released_in  # not waited for
            assert ticks[0] >= 10, ticks  # the loop ran throughout
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


class NoThreads(ThreadPoolExecutor):
    """The event loop's default executor (asyncio.to_thread's): notes any work given to it, and
    refuses it."""

    def __init__(self) -> None:
        super().__init__(1)
        self.given: list[object] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.given.append(fn)
        raise AssertionError(f"a worker thread was asked to run {fn!r}")


def run_without_threads(main: Callable[[], Coroutine[Any, Any, None]], executor: NoThreads,
                        store: GuardedStore) -> None:
    """`main()` on a new event loop (which makes `executor` its default), then `store` closed;
    no worker thread was given any work."""
    try:
        asyncio.run(main())
    finally:
        store.close()
        executor.shutdown()
    assert executor.given == []


def test_lookups_and_writes_on_a_stopped_redis_wait_the_store_timeout_at_most_in_no_thread(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    # The store API as the hooks use it (GuardedStore), on the real server with a memory tier:
    # a lookup and a response write go through the asyncio client on the loop (no worker
    # thread: the loop's executor refuses work, and no thread starts), each waited for the
    # store timeout at most; then one warning and a silent second; memory-tier answers go on
    # without awaiting Redis; the loop keeps running throughout.
    assert redis_server.proc is not None
    store = GuardedStore(open_store(redis_server.url, memory_size=1 << 20, timeout=0.25),
                         shared=True, remote=True, timeout=0.25)
    tier = store.store.backend
    assert isinstance(tier, MemoryTier)
    hot = make_entry("http://o:80/hot", body=b"hot", vary="Accept", value="a/b")
    accept = [("Accept", "a/b")]
    executor = NoThreads()

    async def within(seconds: float, call: Awaitable[T]) -> T:
        began = time.monotonic()
        answer = await call
        took = time.monotonic() - began
        assert took < seconds, (took, call)
        return answer

    async def main() -> None:
        asyncio.get_running_loop().set_default_executor(executor)
        wait_until(lambda: tier.changes.read("") == tier.changes.read(""))  # the tier is on
        deadline = time.monotonic() + 10
        unwritten = tier.changes.read(hot.url)
        # The first write opens a connection and loads a script: on 2 loaded cores that took
        # over the 0.25 s store timeout now and then, before Redis was ever stopped.
        while not await store.put_off_loop(hot, 60):
            assert time.monotonic() < deadline, "Redis never took the first write"
            await asyncio.sleep(1.1)  # past the silent second that follows a timeout
        # The write's own change message, heard on the listener's thread: a copy read before it
        # arrives is dropped when it does (in a full run, once, after Redis was stopped).
        wait_until(lambda: tier.changes.read(hot.url) != unwritten)
        caplog.clear()  # such a timeout's warning and recovery are not this test's
        for _ in range(3):  # kept in memory from its second read on
            assert await store.lookup_any(hot.url, accept) == hot
        assert store.lookup(hot.url, accept) == hot  # from memory, on the loop
        threads = threading.active_count()
        async with redis_stopped(redis_server) as ticks:
            # A lookup memory cannot answer: "nothing stored" after the store timeout; one
            # timeout is no outage (store/outage.py), so do the next ones, until DOWN_AFTER in a
            # row (or the probe sent on the first, unanswered) declare the store down.
            for n in range(DOWN_AFTER):
                assert await within(0.6, store.lookup_off_loop(f"http://o:80/cold{n}", [])) is None
            # The silent second: lookups and writes answer at once, memory hits go on, and a
            # lookup the tier answers never awaits Redis (the Store's own asynchronous one).
            assert await within(0.1, store.lookup_off_loop("http://o:80/cold2", [])) is None
            assert not await within(0.1, store.put_off_loop(make_entry("http://o:80/n1"), 60))
            assert await within(0.1, store.store.lookup_async(hot.url, accept)) == hot
            assert await within(0.1, store.lookup_any(hot.url, accept)) == hot
            await asyncio.sleep(1.1)
            # A write after the silent second: "not stored" after the store timeout.
            assert not await within(0.6, store.put_off_loop(make_entry("http://o:80/n2"), 60))
            await asyncio.sleep(1.1)
            # A Vary lookup whose index memory holds but not its variant.
            assert await within(0.6, store.lookup_off_loop(
                hot.url, [("Accept", "c/d")])) is None
            assert ticks[0] >= 100, ticks  # the loop ran throughout (about 2.6 s: 260 at best)
            assert threading.active_count() == threads
        await asyncio.sleep(1.1)
        deadline = time.monotonic() + 10
        while not await store.put_off_loop(make_entry("http://o:80/n3", body=b"back"), 60):
            assert time.monotonic() < deadline, "writes did not come back"
            await asyncio.sleep(0.2)
        found = await store.lookup_off_loop("http://o:80/n3", [])
        assert found is not None and found.body == b"back"

    caplog.set_level(logging.WARNING, logger="caching_proxy.store.guarded")
    run_without_threads(main, executor, store)
    warned = [r.getMessage() for r in caplog.records]
    assert sum("cache store unavailable" in m for m in warned) == 1, warned
    assert sum("caching resumed" in m for m in warned) == 1, warned


def test_a_use_count_on_a_stopped_redis_waits_the_store_timeout_at_most_in_no_thread(
        redis_server: RedisServer) -> None:
    # A rule's `min_uses` count through the asyncio client on the loop (GuardedStore): counted
    # while Redis answers, then 0 ("not admitted", nothing stored) after the store timeout,
    # with no worker thread and the loop running throughout; counting again once it answers.
    store = GuardedStore(RedisStore(redis_server.url, timeout=0.25), shared=True, remote=True,
                         timeout=0.25)
    executor = NoThreads()

    async def main() -> None:
        asyncio.get_running_loop().set_default_executor(executor)
        assert [await store.count_use_async("http://o:80/n", 60) for _ in range(2)] == [1, 2]
        threads = threading.active_count()
        async with redis_stopped(redis_server) as ticks:
            for _ in range(DOWN_AFTER):  # timeouts in a row: then the store is down
                began = time.monotonic()
                assert await store.count_use_async("http://o:80/n", 60) == 0
                waited = time.monotonic() - began
                assert waited < 0.6, waited  # the 0.25 s store timeout and the machine
            began = time.monotonic()
            assert await store.count_use_async("http://o:80/n", 60) == 0  # the silent second
            assert time.monotonic() - began < 0.05
            await asyncio.sleep(0.2)
            assert ticks[0] >= 20, ticks  # the loop ran throughout (about 0.45 s)
            assert threading.active_count() == threads
        await asyncio.sleep(1.1)
        deadline = time.monotonic() + 10
        # Each stopped call's script may or may not have run once Redis woke.
        while (uses := await store.count_use_async("http://o:80/n", 60)) == 0:
            assert time.monotonic() < deadline, "counts did not come back"
            await asyncio.sleep(0.2)
        assert 3 <= uses <= 3 + DOWN_AFTER, uses

    run_without_threads(main, executor, store)


MIN_USES = """
[[rule]]
match = "/popular/*"
min_uses = 3
"""


def test_min_uses_on_a_stopped_redis_costs_a_request_the_store_timeout_at_most(
        origin: Origin, make_proxy: Any, redis_server: RedisServer, tmp_path: Path) -> None:
    # Through a real proxy: a min_uses rule's count is awaited in the response hook, so while
    # Redis hangs each answer waits the store timeout at most, is the origin's, is not stored
    # (the count failed: 0), and memory-tier hits go on concurrently.
    config = tmp_path / "proxy.toml"
    config.write_text(MIN_USES)
    proxy = make_proxy("--config", str(config), "--store", redis_server.url,
                       "--store-timeout", "0.25")
    for path in ("/hot", *(f"/popular/p{i}" for i in range(6))):
        origin.route(path, 200, FRESH, path.encode())
    assert [fetch(proxy.url + "/hot").x_cache for _ in range(3)] == ["MISS", "HIT", "HIT"]
    statuses = [fetch(proxy.url + "/popular/p0").header("Cache-Status") for _ in range(3)]
    assert [s is not None and "min-uses" in s for s in statuses] == [True, True, False]
    assert fetch(proxy.url + "/popular/p0").x_cache == "HIT"  # admitted on the third
    assert redis_server.proc is not None
    os.kill(redis_server.proc.pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(3) as pool:
            counted = [pool.submit(timed, proxy.url + f"/popular/p{i}") for i in range(1, 6)]
            hot = [timed(proxy.url + "/hot") for _ in range(5)]
            answers = [c.result() for c in counted]
        assert max(s for s, _ in answers) < 1.0, answers  # 0.25 s, the origin, the machine
        for i, (_, answer) in enumerate(answers, 1):
            assert (answer.status, answer.body) == (200, f"/popular/p{i}".encode())
            assert answer.x_cache == "MISS"
        assert all(a.x_cache == "HIT" and s < 0.5 for s, a in hot), [(s, a.x_cache) for s, a in hot]
        assert proxy.logged("cache store unavailable", timeout=5)  # once the probe failed
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
