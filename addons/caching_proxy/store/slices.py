"""Slices of a large object (cache/slices.py) as the store keeps them: members of the URL's group,
apart from its variants (no variant generation is "slice"), so a purge, an invalidation or a
whole response stored for the URL removes them with its variants (store/layout.py). Each is one
backend call, made through GuardedStore.call like any other."""

from __future__ import annotations

from caching_proxy.store.base import variant_prefix
from caching_proxy.store.calls import Get, Set
from caching_proxy.store.entry import Entry


def slice_key(url: str, index: int) -> str:
    return variant_prefix(url, "slice") + str(index)


def read_slice(url: str, index: int) -> Get:
    """The call reading slice `index` of `url` (its value, or None; Unreadable if garbled)."""
    return Get(slice_key(url, index))


def write_slice(url: str, index: int, entry: Entry, expire: float) -> Set:
    """The call storing slice `index` of `url` for `expire` seconds (whether it was stored)."""
    return Set(slice_key(url, index), entry, expire, group=url)
