"""The Redis store: shared hits and purges across proxy instances, outage and recovery, and the
store's own guarantees, against a real redis-server started by the test."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from caching_proxy.store import open_store
from caching_proxy.store.redis.store import RedisStore, StoreUnavailable
from support.client import fetch
from support.entries import make_entry
from support.origin import Origin, Reply
from support.proxy import Proxy, cli
from support.redis_server import RedisServer

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="redis-server is not installed; scripts/test installs it with apt where it can")

FRESH = [("Cache-Control", "max-age=600")]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def two_proxies(origin: Origin, redis_server: RedisServer, tmp_path: Path) -> Iterator[Any]:
    proxies = [Proxy(origin.url, tmp_path / f"c{i}", "--store", redis_server.url, "--quiet")
               for i in (1, 2)]
    for p in proxies:
        p.start()
    yield proxies
    for p in proxies:
        p.stop()


def test_a_response_fetched_by_one_instance_is_a_hit_on_the_other(
    origin: Origin, two_proxies: Any
) -> None:
    a, b = two_proxies
    origin.route("/shared", 200, [*FRESH, ("Vary", "Accept")], b"shared body")
    assert fetch(a.url + "/shared", headers={"Accept": "x/y"}).x_cache == "MISS"
    hit = fetch(b.url + "/shared", headers={"Accept": "x/y"})
    assert (hit.x_cache, hit.body) == ("HIT", b"shared body")
    assert fetch(b.url + "/shared", headers={"Accept": "z/w"}).x_cache == "MISS"  # other variant
    assert origin.count("/shared") == 2


def test_purge_and_clear_reach_every_instance(
    origin: Origin, two_proxies: Any, redis_server: RedisServer
) -> None:
    a, b = two_proxies
    for path in ("/p1", "/p2"):
        origin.route(path, 200, FRESH, path.encode())
        fetch(a.url + path)
        assert fetch(b.url + path).x_cache == "HIT"
    purged = fetch(a.url + "/p1", method="PURGE")
    assert purged.status == 200
    assert fetch(b.url + "/p1").x_cache == "MISS"
    done = cli("--store", redis_server.url, "--clear-cache")
    assert done.returncode == 0 and "cleared 2 entries" in done.stdout, done.stdout + done.stderr
    assert fetch(a.url + "/p2").x_cache == "MISS"
    assert fetch(b.url + "/p1").x_cache == "MISS"
    assert fetch(b.url + "/p2").x_cache == "HIT"  # stored again by a
    listed = cli("--store", redis_server.url, "--list")
    assert listed.returncode == 0 and listed.stdout.count(f":{origin.port}/p") == 2


def test_redis_killed_then_restarted(
    origin: Origin, two_proxies: Any, redis_server: RedisServer
) -> None:
    a, b = two_proxies
    origin.route("/k", 200, FRESH, b"k")
    fetch(a.url + "/k")
    assert fetch(b.url + "/k").x_cache == "HIT"
    redis_server.kill()
    during = [fetch(p.url + "/k") for p in (a, b, a, b)]
    assert [(r.status, r.x_cache, r.body) for r in during] == [(200, "MISS", b"k")] * 4
    warned = [line for line in a.lines if "cache store unavailable" in line]
    assert len(warned) == 1, a.output
    redis_server.start()
    time.sleep(1.1)  # the store's back-off after a failure
    answer = fetch(a.url + "/k")
    assert answer.x_cache == "MISS"  # the restarted Redis is empty
    # The first write after the restart may still meet a dead pooled connection (then it is
    # not stored, within --store-timeout); a's writes must work again within seconds.
    deadline = time.monotonic() + 5
    while answer.x_cache != "HIT" and "stored" not in (answer.header("Cache-Status") or ""):
        assert time.monotonic() < deadline, a.output
        answer = fetch(a.url + "/k")
    assert fetch(b.url + "/k").x_cache == "HIT"
    assert b.logged("cache store available again"), b.output


def test_proxy_starts_with_redis_down(origin: Origin, tmp_path: Path) -> None:
    down = RedisServer(tmp_path / "r")  # never started: nothing listens on its port
    origin.route("/d", 200, FRESH, b"d")
    with Proxy(origin.url, tmp_path / "c", "--store", down.url) as proxy:
        assert [fetch(proxy.url + "/d").status for _ in range(2)] == [200, 200]
    assert origin.count("/d") == 2


def test_bad_store_url_is_one_line(tmp_path: Path) -> None:
    for url, message in (("memcached://x", "must be a Redis URL"),
                         ("redis://127.0.0.1:99999/0", "bad port")):
        done = cli("--store", url, "--origin", "http://127.0.0.1:9")
        assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1


def test_store_guarantees(redis_server: RedisServer) -> None:
    one, two = open_store(redis_server.url), open_store(redis_server.url)
    assert isinstance(one, RedisStore)
    one.put(make_entry("http://o:80/a", vary="Accept", value="x"), 60)
    one.put(make_entry("http://o:80/a", vary="Accept", value="y"), 60)
    one.put(make_entry("http://o:80/b", body=b"b" * 1000), 60)
    assert two.lookup("http://o:80/a", [("Accept", "y")]) is not None
    assert two.usage_estimate().entries == len(list(two.entries())) == 3
    one.put(make_entry("http://o:80/a"), 60)  # no Vary any more: the variants go
    assert sorted(e.url for e in two.entries()) == ["http://o:80/a", "http://o:80/b"]
    assert two.delete_matching(lambda url: url.endswith("/b")) == 1
    # Fill lock: exclusive across instances, expires by itself, released by its holder only.
    first = one.acquire("k", 0.3)
    assert first and not two.acquire("k", 0.3)
    two.release("k", "not the holder's token")
    assert not two.acquire("k", 0.3)
    time.sleep(0.4)
    second = two.acquire("k", 5)
    assert second
    one.release("k", first)  # expired: the lock is two's now, and stays
    assert not one.acquire("k", 5)
    two.release("k", second)
    assert one.acquire("k", 5)
    one.add_counts({"hits": 2})
    two.add_counts({"hits": 1, "misses": 4})
    assert one.clear().entries == 1
    assert one.counters() == {"hits": 3, "misses": 4}  # kept by clear
    # Too large for Redis: not stored, not an error.
    small = RedisStore(redis_server.url, max_value_size=10_000)
    small.put(make_entry("http://o:80/big", body=b"x" * 20_000), 60)
    assert small.lookup("http://o:80/big", []) is None
    redis_server.kill()
    with pytest.raises(StoreUnavailable):
        one.lookup("http://o:80/a", [])
    for store in (one, two, small):
        store.close()


def test_a_miss_is_three_round_trips_to_redis(
    origin: Origin, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Read, lock, then one script that stores the response, drops the URL's variants and
    releases the lock: what the proxy sends for a miss, watched with MONITOR."""
    import redis

    origin.route("/trips", 200, FRESH, b"stored once")
    origin.route("/first", 200, FRESH, b"loads the scripts")
    proxy = Proxy(origin.url, tmp_path / "c", "--store", redis_server.url, "--quiet").start()
    client = redis.Redis.from_url(redis_server.url)
    try:
        # redis-py's first EVALSHA of a script meets NOSCRIPT, loads it and sends it again.
        assert fetch(proxy.url + "/first").x_cache == "MISS"
        with client.monitor() as monitor:
            assert fetch(proxy.url + "/trips").x_cache == "MISS"
            client.echo("end of the miss")
            sent = []
            for command in monitor.listen():
                line = command["command"]
                if line == "ECHO end of the miss":
                    break
                if command.get("client_type") != "lua" and "/trips" in line:
                    sent.append(line.split(" ", 1)[0])
        assert sent == ["GET", "SET", "EVALSHA"], sent
        assert fetch(proxy.url + "/trips").x_cache == "HIT"
    finally:
        proxy.stop()
        client.close()
    assert origin.count("/trips") == 1


def test_concurrent_misses_on_two_instances_reach_the_origin_once(
    origin: Origin, two_proxies: Any
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    a, b = two_proxies
    origin.route("/cold", handler=lambda _: Reply(200, FRESH, b"filled once", delay=1.5))
    urls = [p.url + "/cold" for p in (a, b) for _ in range(10)]
    with ThreadPoolExecutor(len(urls)) as pool:
        answers = list(pool.map(lambda url: fetch(url, timeout=30), urls))
    assert origin.count("/cold") == 1
    assert all((r.status, r.body) == (200, b"filled once") for r in answers)
    assert [r.x_cache for r in answers].count("MISS") == 1
