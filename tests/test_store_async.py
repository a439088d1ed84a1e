"""The layout's lookup and put through the backend's asynchronous calls (Store.lookup_async,
put_async: redis-py's asyncio client on the event loop) give what the synchronous ones give, on a
real redis-server, with and without the memory tier in front (and on diskcache, whose twins are
its local calls): the same responses for every Vary variant, the same variant and tag records,
the same replacement of an old Vary's variants, unreadable records dropped alike. The cluster
and Sentinel cases are in tests/test_redis_cluster.py (check_same_as_sync)."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from caching_proxy.entry import Entry
from caching_proxy.store import DiskStore, Store, open_store
from caching_proxy.store.backend import SEP
from caching_proxy.store.memory import MemoryTier
from caching_proxy.store.redis_keys import redis_key
from caching_proxy.store.redis_store import RedisStore
from support.redis_server import RedisServer
from test_disk_store import make_entry
from test_memory_tier import wait_until

HAVE_REDIS = shutil.which("redis-server") is not None
AGENTS = ("agent/1", "agent/2", "agent/3")


@pytest.fixture(params=["redis", "redis+memory", "disk"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "disk":
        made: Store = DiskStore(str(tmp_path / "cache"))
    else:
        server: RedisServer = request.getfixturevalue("store_redis")
        redis.Redis.from_url(server.url).flushdb()
        made = (RedisStore(server.url) if request.param == "redis"
                else open_store(server.url, memory_size=1 << 20))
        if isinstance(made.backend, MemoryTier):
            changes = made.backend.changes
            wait_until(lambda: changes.read("") == changes.read(""))  # subscribed: tier on
    yield made
    made.close()


def unique(key: str) -> tuple[str, ...]:
    """A stored key without its variant's generation (random per index)."""
    url, *rest = key.split(SEP)
    return (url, rest[-1]) if rest else (url,)


def moved(entry: Entry, url: str) -> Entry:
    return dataclasses.replace(entry, url=url)


def writes(url: str, tags: tuple[str, str]) -> list[tuple[Entry, list[tuple[str, str]]]]:
    """Responses for `url` (a plain one, three User-Agent variants), tagged `tags[0]` and
    `tags[1]`, with the request fields that select each."""
    plain = make_entry(url + "/plain", body=b"plain")
    done = [(dataclasses.replace(plain, tags=(tags[0],)), [])]
    for agent in AGENTS:
        entry = make_entry(url + "/ua", body=agent.encode(), vary="User-Agent", value=agent)
        done.append((dataclasses.replace(entry, tags=(tags[1],)), [("User-Agent", agent)]))
    return done


async def check_same_as_sync(store: Store, prefix: str) -> None:
    """Write the same responses under `prefix`/sync with `put` and `prefix`/async with
    `put_async`; every lookup of either, sync or async, gives the same answers, and the
    records (variants, tag markers) are the same."""
    sync, other = prefix + "/sync", prefix + "/async"
    mark = format(zlib.crc32(prefix.encode()), "08x")
    tags = (f"plain-{mark}", f"ua-{mark}")
    written = writes(sync, tags)
    for entry, _ in written:
        store.put(entry, 60)
        await store.put_async(moved(entry, entry.url.replace(sync, other)), 60)
    for entry, headers in written:
        there = entry.url.replace(sync, other)
        assert store.lookup(entry.url, headers) == entry
        assert await store.lookup_async(entry.url, headers) == entry
        assert await store.lookup_async(there, headers) == moved(entry, there)
        assert store.lookup(there, headers) == moved(entry, there)
    for path in ("/plain", "/ua"):
        assert (len(store.variant_keys(sync + path)) == len(store.variant_keys(other + path))
                == (len(AGENTS) if path == "/ua" else 0))
    for tag, count in zip(tags, (1, len(AGENTS)), strict=True):
        marked = store.tagged_keys(tag)
        assert sorted(unique(key) for key in marked if key.startswith(sync)) == sorted(
            unique(key.replace(other, sync, 1)) for key in marked if key.startswith(other))
        assert len(marked) == 2 * count
    # Absent: no such URL, no such variant.
    for url in (sync, other):
        assert await store.lookup_async(url + "/none", []) is None
        assert await store.lookup_async(url + "/ua", [("User-Agent", "agent/9")]) is None
    # A new Vary replaces every variant of the old one, on either path.
    for url in (sync, other):
        entry = make_entry(url + "/ua", body=b"by accept", vary="Accept", value="a/b")
        if url == sync:
            store.put(entry, 60)
        else:
            await store.put_async(entry, 60)
        assert await store.lookup_async(url + "/ua", [("Accept", "a/b")]) == entry
        assert store.lookup(url + "/ua", [("Accept", "a/b")]) == entry
        assert await store.lookup_async(url + "/ua", [("User-Agent", AGENTS[0])]) is None
        assert len(store.variant_keys(url + "/ua")) == 1
    # A response without Vary replaces the variants too.
    plain = make_entry(other + "/ua", body=b"no vary")
    await store.put_async(plain, 60)
    assert await store.lookup_async(other + "/ua", [("Accept", "a/b")]) == plain
    assert store.variant_keys(other + "/ua") == []


def test_an_async_put_and_lookup_store_and_find_what_the_sync_ones_do(any_store: Store) -> None:
    async def main() -> None:
        await check_same_as_sync(any_store, "http://o:80/p")
        tier = any_store.backend
        if isinstance(tier, MemoryTier):  # the async lookup is answered from memory too
            url = "http://o:80/p/sync/ua"  # by Accept: an index and a variant
            for _ in range(3):
                assert await any_store.lookup_async(url, [("Accept", "a/b")]) is not None
            hits = tier.hits
            assert await any_store.lookup_async(url, [("Accept", "a/b")]) is not None
            assert tier.hits == hits + 2  # the Vary index and the variant

    asyncio.run(main())


@pytest.mark.skipif(not HAVE_REDIS, reason="redis-server is not installed")
def test_an_async_lookup_drops_an_unreadable_record_as_the_sync_one(store_redis: RedisServer,
                                                                    ) -> None:
    redis.Redis.from_url(store_redis.url).flushdb()
    store = RedisStore(store_redis.url)
    raw = redis.Redis.from_url(store_redis.url)
    try:
        for url in ("http://o:80/garbage", "http://o:80/foreign"):
            raw.set(redis_key(url), b"E\x80garbage" if "garbage" in url else b"not ours",
                    px=60_000)
            assert asyncio.run(store.lookup_async(url, [])) is None
            assert raw.exists(redis_key(url)) == 0  # dropped, as `lookup` drops it
        entry = make_entry("http://o:80/garbage", body=b"fresh")
        asyncio.run(store.put_async(entry, 60))
        assert store.lookup(entry.url, []) == entry
    finally:
        store.close()
