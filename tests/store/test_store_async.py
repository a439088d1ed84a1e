"""The layout's lookup and put through the backend's asynchronous calls (Store.lookup_async,
put_async: redis-py's asyncio client on the event loop) give what the synchronous ones give, on a
real redis-server, with and without the memory tier in front (and on diskcache, whose calls the
asynchronous driver makes synchronously): the same responses for every Vary variant, the same
variant and tag records, the same replacement of an old Vary's variants, unreadable records
dropped alike. The cluster and Sentinel cases are in tests/e2e/test_redis_cluster.py (check_same_as_sync)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from caching_proxy.store import DiskStore, Store, open_store
from caching_proxy.store.memory.tier import MemoryTier
from caching_proxy.store.redis.keys import redis_key
from caching_proxy.store.redis.store import RedisStore
from support.entries import make_entry
from support.polling import wait_until
from support.redis_server import RedisServer
from support.store_checks import check_same_as_sync

HAVE_REDIS = shutil.which("redis-server") is not None


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
