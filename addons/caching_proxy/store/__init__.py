"""Response stores: diskcache on this machine (the default)."""

from __future__ import annotations

from caching_proxy.store.base import Store, Usage, VaryIndex, variant_key
from caching_proxy.store.disk import DEFAULT_LRU_INTERVAL, DEFAULT_SIZE_LIMIT, DiskStore

__all__ = ["DEFAULT_SIZE_LIMIT", "DiskStore", "Store", "Usage", "VaryIndex", "open_store", "variant_key"]


def open_store(
    location: str, size_limit: int = DEFAULT_SIZE_LIMIT, lru_interval: float = DEFAULT_LRU_INTERVAL
) -> Store:
    """The store at `location`: a folder path for diskcache."""
    return DiskStore(location, size_limit=size_limit, lru_interval=lru_interval)
