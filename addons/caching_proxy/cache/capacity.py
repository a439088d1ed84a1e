"""Whether a store can keep an entry at all, before it is written and said `stored`.

A put of a value larger than the store can hold "succeeds" and keeps nothing: a diskcache folder
culls it at once past its size limit (--cache-size), Redis' store refuses a value over its
max_value_size without an error. Cache-Status must not say `stored` then (nor the fill wait on
it), so such an entry is not written. The bound is read off the backend (through a memory tier);
a backend that declares none is trusted with any size.
"""

from __future__ import annotations

from typing import Any

from caching_proxy.store.entry import Entry
from caching_proxy.store.guarded import GuardedStore

DETAIL = "too-large-for-store"  # Cache-Status detail of an answer not stored for this


def largest_value(store: GuardedStore) -> int | None:
    """The largest body the store's backend keeps, None when it declares no bound."""
    layer: Any = getattr(getattr(store, "store", None), "backend", None)
    for _ in range(4):  # a memory tier holds its backend as `inner`
        if layer is None:
            return None
        size = getattr(layer, "max_value_size", None)
        if size is None:
            size = getattr(getattr(layer, "cache", None), "size_limit", None)
        if isinstance(size, int):
            return size
        layer = getattr(layer, "inner", None)
    return None


def fits(store: GuardedStore, entry: Entry) -> bool:
    limit = largest_value(store)
    return limit is None or len(entry.body) <= limit
