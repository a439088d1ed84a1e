"""Request coalescing: concurrent misses for one key reach the origin once."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from support.client import Response, fetch
from support.origin import Origin, Reply, Seen
from support.proxy import Proxy
from support.sockets import listening_sockets


def fetch_all(url: str, n: int) -> list[Response]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: fetch(url, timeout=30), range(n)))


def test_fifty_concurrent_misses_reach_the_origin_once(origin: Origin, proxy: Proxy) -> None:
    origin.route("/cold", handler=lambda _: Reply(
        200, [("Cache-Control", "max-age=60")], b"filled once", delay=1.5))
    answers = fetch_all(proxy.url + "/cold", 50)
    assert origin.count("/cold") == 1
    assert all(a.status == 200 and a.body == b"filled once" for a in answers)
    assert [a.x_cache for a in answers].count("MISS") == 1
    statuses = [a.header("Cache-Status") or "" for a in answers]
    collapsed = [s for s in statuses if "; collapsed" in s]
    # Waiters are hits that say so (RFC 9211 collapsed); late arrivals are plain hits.
    assert collapsed and all(s.startswith("caching-proxy; hit; collapsed; ttl=") for s in collapsed)


def test_waiters_go_to_the_origin_when_the_answer_is_not_storable(
    origin: Origin, proxy: Proxy
) -> None:
    origin.route("/private", handler=lambda _: Reply(
        200, [("Cache-Control", "no-store")], b"mine", delay=1.0))
    answers = fetch_all(proxy.url + "/private", 5)
    assert all(a.status == 200 and a.body == b"mine" and a.x_cache == "MISS" for a in answers)
    assert origin.count("/private") == 5


def test_a_waiter_never_waits_past_the_lock_timeout(origin: Origin, make_proxy: object) -> None:
    proxy = make_proxy("--lock-timeout", "1")  # type: ignore[operator]
    first = [True]

    def slow_first(_: Seen) -> Reply:
        delay = 3.5 if first[0] else 0.0
        first[0] = False
        return Reply(200, [("Cache-Control", "max-age=60")], b"x", delay=delay)

    origin.route("/slow", handler=slow_first)
    with ThreadPoolExecutor(2) as pool:
        leader = pool.submit(fetch, proxy.url + "/slow", timeout=30)
        time.sleep(0.5)
        started = time.monotonic()
        waiter = fetch(proxy.url + "/slow", timeout=30)
        waited = time.monotonic() - started
        assert leader.result().status == 200
    # The waiter gave up after ~1 s and fetched for itself instead of waiting ~3 s more.
    assert waiter.status == 200 and waiter.x_cache == "MISS"
    assert waited < 2.5
    assert origin.count("/slow") == 2


def test_workers_coalesce_through_the_store_lock(origin: Origin, tmp_path: Path) -> None:
    origin.route("/shared", handler=lambda _: Reply(
        200, [("Cache-Control", "max-age=60")], b"one fill", delay=1.5))
    with Proxy(origin.url, tmp_path / "cache", "--workers", "2") as proxy:
        deadline = time.monotonic() + 20
        while listening_sockets(proxy.port) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        answers = fetch_all(proxy.url + "/shared", 20)  # a connection each: both workers get some
    assert all(a.status == 200 and a.body == b"one fill" for a in answers)
    assert origin.count("/shared") == 1
    assert [a.x_cache for a in answers].count("MISS") == 1
