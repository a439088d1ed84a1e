"""Response stores: diskcache on this machine (the default), or Redis shared by machines.

`Store` (store/layout.py) is the variant layout the addon and the CLI use, written once over a
small Backend interface (store/backend.py) that store/disk.py and store/redis_store.py implement.
"""

from __future__ import annotations

from caching_proxy.store.backend import EntryTooLarge, Unreadable
from caching_proxy.store.base import Usage, VaryIndex, variant_key
from caching_proxy.store.disk import DEFAULT_LRU_INTERVAL, DEFAULT_SIZE_LIMIT, DiskStore
from caching_proxy.store.layout import Store

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")

__all__ = ["DEFAULT_SIZE_LIMIT", "DiskStore", "EntryTooLarge", "Store", "Unreadable", "Usage",
           "VaryIndex", "is_redis_url", "open_store", "variant_key"]


def open_store(
    location: str, size_limit: int = DEFAULT_SIZE_LIMIT, lru_interval: float = DEFAULT_LRU_INTERVAL
) -> Store:
    """The store at `location`: a redis:// (rediss://, unix://) URL, else a diskcache folder.
    Redis bounds its size itself (maxmemory), so `size_limit` and `lru_interval` are diskcache's."""
    if is_redis_url(location):
        from caching_proxy.store.redis_store import RedisStore

        return RedisStore(location)
    return DiskStore(location, size_limit=size_limit, lru_interval=lru_interval)


def is_redis_url(location: str) -> bool:
    return location.startswith(REDIS_SCHEMES)
