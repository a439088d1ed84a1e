"""A lagging event loop is not a Redis outage (store/outage.py, GuardedStore): against a real,
healthy redis-server, calls whose answers came while the loop was blocked by CPU work time out
but declare nothing down; against a server that accepts and never answers, the store is down
after the rule's evidence and calls then pass through at once. Plus the rule itself."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from collections.abc import Iterator

import pytest
import redis

from caching_proxy.store.guarded import GuardedStore
from caching_proxy.store.outage import DOWN_AFTER, Evidence
from caching_proxy.store.redis.store import RedisStore
from support.redis_server import RedisServer

needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None,
                                 reason="redis-server is not installed")


@needs_redis
def test_timeouts_from_a_busy_loop_declare_no_outage(store_redis: RedisServer) -> None:
    redis.Redis.from_url(store_redis.url).flushdb()
    store = RedisStore(store_redis.url)
    guarded = GuardedStore(store, timeout=0.05)

    async def main() -> int:
        await guarded.lookup_off_loop("http://o:80/absent", [])  # connected, warm
        loop = asyncio.get_running_loop()
        stop = time.monotonic() + 1.5

        def busy() -> None:
            # CPU work on the proxy's loop, longer than the store timeout, every few ms: the
            # answers arrive in time, the loop gets to them late.
            time.sleep(0.08)
            if time.monotonic() < stop:
                loop.call_later(0.005, busy)

        async def client(number: int) -> int:
            done = 0
            while time.monotonic() < stop:
                await guarded.lookup_off_loop(f"http://o:80/k{number}", [])
                done += 1
                await asyncio.sleep(0)
            return done

        loop.call_soon(busy)
        return sum(await asyncio.gather(*(client(i) for i in range(50))))

    try:
        calls = asyncio.run(main())
        evidence = guarded.evidence
        assert calls > 100 and evidence.timeouts > DOWN_AFTER  # the loop made calls time out...
        assert evidence.loop_late == evidence.timeouts  # ...each explained by its lateness
        assert evidence.down_since is None and evidence.down_seconds == 0
        assert guarded.outage_counts() == {"store_timeouts": evidence.timeouts}
    finally:
        store.close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers (a hung Redis)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    listener.settimeout(0.05)

    import threading

    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    stop.set()
    thread.join(2)
    for s in held:
        s.close()
    listener.close()


def test_a_store_that_never_answers_is_declared_down(silent_server: str) -> None:
    store = RedisStore(silent_server, timeout=5.0)
    guarded = GuardedStore(store, timeout=0.05)

    async def main() -> None:
        started = time.monotonic()
        assert await guarded.lookup_off_loop("http://o:80/x", []) is None  # the timeout
        assert 0.05 <= time.monotonic() - started < 0.5
        evidence = guarded.evidence
        assert evidence.loop_late == 0 and evidence.probing
        # While the probe is out, calls pass through at once, without waiting for the timeout.
        started = time.monotonic()
        assert await guarded.lookup_off_loop("http://o:80/x", []) is None
        assert time.monotonic() - started < 0.04
        # The probe gets no answer within its bound (1 s): the store is down.
        while evidence.probing:
            assert time.monotonic() - started < 3
            await asyncio.sleep(0.05)
        assert evidence.down_since is not None and evidence.silent(time.monotonic())

    try:
        asyncio.run(main())
    finally:
        store.close()


def test_the_rule() -> None:
    evidence = Evidence(timeout=0.1)
    assert evidence.timed_out(late=0.05, now=0.0) == "loop"
    assert not evidence.silent(0.0)  # the loop's lateness: calls go on waiting for the store
    assert evidence.timed_out(late=0.0, now=0.0) == "probe"  # the first that counts: probe
    assert evidence.silent(0.5)  # ...and calls pass at once until it comes back
    assert evidence.timed_out(late=0.0, now=0.1) == "counted"
    evidence.answered(now=0.2)  # an answer starts the count over
    assert evidence.timed_out(late=0.0, now=0.3) == "counted"  # the probe is still out
    evidence.probed(answered=True, now=0.4)
    assert not evidence.silent(0.4) and evidence.down_since is None
    assert [evidence.timed_out(0.0, t) for t in (1.0, 1.1, 1.2)] == ["probe", "counted",
                                                                     "down"]
    evidence.probing = False  # (its answer comes below)
    assert evidence.silent(1.5) and not evidence.silent(2.3)
    evidence.answered(now=3.2)  # down from 1.2 to 3.2
    assert evidence.down_seconds == pytest.approx(2.0)
    assert evidence.counts(now=4.0) == {"store_timeouts": 7, "store_down_ms": 2000}
    assert evidence.counts(now=5.0) == {}  # each figure handed over once
    assert evidence.timed_out(0.0, 6.0) == "probe"
    evidence.probed(answered=False, now=7.0)  # no answer to the probe: down at once
    assert evidence.down_since == 7.0 and evidence.silent(7.5)
