"""One origin budget for every process: `--origin-rate` across `--workers 2` (one diskcache
folder) and across two instances on one Redis, against the rate-limited origin."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.limited_origin import Answers, LimitedOrigin, crowd
from support.origin import Origin, Reply, Seen
from support.proxy import Proxy
from support.redis_server import RedisServer

PATHS = [f"/item/{i}" for i in range(200)]
BUDGET = ("--origin-rate", "5", "--origin-queue-timeout", "2", "--quiet")


@pytest.fixture
def limited() -> Iterator[LimitedOrigin]:
    server = LimitedOrigin(limit=6, retry_after=2)
    yield server
    server.stop()


def check(limited: LimitedOrigin, answers: list[Answers]) -> None:
    assert limited.busiest_second() <= 6, limited.busiest_second()
    assert limited.refused == 0
    for got in answers:
        assert not got.failures and not got.wrong
        assert set(got.statuses) <= {"200 HIT", "200 MISS", "503"}, got.statuses
    assert sum(got.statuses["200 MISS"] for got in answers) == len(limited.arrivals)
    # One schedule for all: about 5 a second in all, not 5 per process.
    assert len(limited.arrivals) <= 5 * (10 + 2) + 1, len(limited.arrivals)


def test_two_workers_share_one_rate(limited: LimitedOrigin, tmp_path: Path) -> None:
    with Proxy(limited.url, tmp_path / "cache", "--workers", "2", *BUDGET) as proxy:
        answers = crowd(proxy.port, PATHS, clients=50, seconds=10)
    check(limited, [answers])


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_two_instances_on_one_redis_share_one_rate(
        limited: LimitedOrigin, store_redis: RedisServer, tmp_path: Path) -> None:
    proxies = [Proxy(limited.url, tmp_path / f"c{i}", "--store", store_redis.url, *BUDGET)
               for i in (1, 2)]
    for p in proxies:
        p.start()
    try:
        results: list[Answers] = []

        def run(port: int) -> None:
            results.append(crowd(port, PATHS, clients=25, seconds=10))

        threads = [threading.Thread(target=run, args=(p.port,)) for p in proxies]
        for t in threads:
            t.start()
        for t in threads:
            t.join(40)
    finally:
        for p in proxies:
            p.stop()
    assert len(results) == 2
    check(limited, results)


class SlowOrigin:
    """An origin that takes 0.3 s per answer and keeps the most requests it had at once."""

    def __init__(self) -> None:
        self.origin = Origin()
        self.lock = threading.Lock()
        self.now = self.most = 0
        self.origin.fallback = self._answer
        self.url = self.origin.url

    def _answer(self, seen: Seen) -> Reply:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(0.3)
        with self.lock:
            self.now -= 1
        return Reply(200, [("Cache-Control", "max-age=60")], seen.path.encode() + b"\n")


@pytest.fixture
def slow() -> Iterator[SlowOrigin]:
    server = SlowOrigin()
    yield server
    server.origin.stop()


SLOW_PATHS = [f"/s{i}" for i in range(40)]


def test_two_workers_share_one_concurrency_bound(slow: SlowOrigin, tmp_path: Path) -> None:
    with Proxy(slow.url, tmp_path / "cache", "--workers", "2", "--origin-concurrency", "2",
               "--quiet") as proxy:
        answers = crowd(proxy.port, SLOW_PATHS, clients=12, seconds=3)
    assert not answers.failures and not answers.wrong
    assert slow.most == 2, slow.most  # two at once in all, not two per worker
    assert len(slow.origin.seen) >= 8  # it was kept busy


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_two_instances_on_one_redis_share_one_concurrency_bound(
        slow: SlowOrigin, store_redis: RedisServer, tmp_path: Path) -> None:
    proxies = [Proxy(slow.url, tmp_path / f"c{i}", "--store", store_redis.url,
                     "--origin-concurrency", "2", "--quiet") for i in (1, 2)]
    for p in proxies:
        p.start()
    try:
        results: list[Answers] = []
        threads = [threading.Thread(target=lambda port=p.port: results.append(
            crowd(port, SLOW_PATHS, clients=6, seconds=3))) for p in proxies]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        for p in proxies:
            p.stop()
    assert len(results) == 2 and all(not r.failures and not r.wrong for r in results)
    assert slow.most == 2, slow.most
