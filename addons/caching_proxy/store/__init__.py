"""Response stores: diskcache on this machine (the default), or Redis shared by machines (one
server, Sentinel or a Redis Cluster: store/redis_clients.py).

`Store` (store/layout.py) is the variant layout the addon and the CLI use, written once over a
small Backend interface (store/backend.py) that store/disk.py and store/redis_store.py implement.
"""

from __future__ import annotations

from caching_proxy.store.backend import EntryTooLarge, Unreadable
from caching_proxy.store.base import Usage, VaryIndex, variant_key
from caching_proxy.store.disk.store import DEFAULT_LRU_INTERVAL, DEFAULT_SIZE_LIMIT, DiskStore
from caching_proxy.store.layout import Store
from caching_proxy.store.memory.tier import MemoryTier
from caching_proxy.store.redis.urls import SCHEMES as REDIS_SCHEMES

__all__ = ["DEFAULT_SIZE_LIMIT", "DiskStore", "EntryTooLarge", "Store", "Unreadable", "Usage",
           "VaryIndex", "is_redis_url", "open_store", "variant_key"]


def open_store(
    location: str, size_limit: int = DEFAULT_SIZE_LIMIT, lru_interval: float = DEFAULT_LRU_INTERVAL,
    memory_size: int = 0, timeout: float = 1.0,
) -> Store:
    """The store at `location`: a Redis URL (redis://, rediss://, unix://, redis+cluster://,
    redis+sentinel://), else a diskcache folder.
    Redis bounds its size itself (maxmemory), so `size_limit` and `lru_interval` are diskcache's.
    `memory_size` > 0 puts a memory tier of that many bytes in front (store/memory.py).
    `timeout` bounds each Redis call (socket timeouts)."""
    if is_redis_url(location):
        from caching_proxy.store.redis.store import RedisStore

        redis_store = RedisStore(location, timeout=timeout)
        if memory_size > 0:
            backend = redis_store.backend
            return Store(MemoryTier(backend, backend.subscribe_changes(), memory_size))
        return redis_store
    store = DiskStore(location, size_limit=size_limit, lru_interval=lru_interval)
    if memory_size > 0:
        disk = store.backend
        return Store(MemoryTier(disk, disk.generations, memory_size))
    return store


def is_redis_url(location: str) -> bool:
    return location.startswith(REDIS_SCHEMES)
