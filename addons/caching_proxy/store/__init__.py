"""Response stores: diskcache on this machine (the default), or Redis shared by machines (one
server, Sentinel or a Redis Cluster: store/redis/clients.py), or any backend registered by
URL scheme (store/registry.py).

`Store` (store/layout.py) is the variant layout the addon and the CLI use, written once over the
small Backend interfaces (store/backend.py) that store/disk/store.py and store/redis/store.py
implement; `open_store` opens the one a location names, through the registry.
"""

from __future__ import annotations

from caching_proxy.store.backend import Backend, ChangeFeed, EntryTooLarge, Traits, Unreadable
from caching_proxy.store.base import Usage, VaryIndex, variant_key
from caching_proxy.store.disk.store import DEFAULT_LRU_INTERVAL, DEFAULT_SIZE_LIMIT, DiskStore
from caching_proxy.store.layout import Store
from caching_proxy.store.memory.tier import MemoryTier
from caching_proxy.store.registry import (
    STORE_ERRORS,
    StoreOptions,
    is_redis_url,
    open_location,
    register,
    shown,
    unregister,
)

__all__ = ["DEFAULT_SIZE_LIMIT", "STORE_ERRORS", "Backend", "DiskStore", "EntryTooLarge", "Store",
           "StoreOptions", "Traits", "Unreadable", "Usage", "VaryIndex", "is_redis_url",
           "open_store", "register", "shown", "unregister", "variant_key"]


def open_store(
    location: str, size_limit: int = DEFAULT_SIZE_LIMIT, lru_interval: float = DEFAULT_LRU_INTERVAL,
    memory_size: int = 0, timeout: float = 1.0,
) -> Store:
    """The store at `location`, opened by its scheme's backend (store/registry.py: a Redis URL,
    a `file:` URL or a plain path for a diskcache folder, or a scheme registered since).
    `size_limit` and `lru_interval` are diskcache's (Redis bounds its size itself, maxmemory);
    `timeout` bounds each network call (Redis' socket timeouts). `memory_size` > 0 puts a memory
    tier of that many bytes in front (store/memory/tier.py), kept coherent by the backend's
    ChangeFeed (ValueError for a backend without one)."""
    store = open_location(location, StoreOptions(size_limit, lru_interval, timeout))
    if memory_size <= 0:
        return store
    backend = store.backend
    if not isinstance(backend, ChangeFeed):
        store.close()
        raise ValueError(f"a memory tier needs a store that reports its changes: {shown(location)}")
    return Store(MemoryTier(backend, backend.changes(), memory_size))
