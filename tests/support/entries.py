"""Stored responses and records for the store tests, made as the proxy makes them."""

from __future__ import annotations

import time

import redis

from caching_proxy.policy import CacheConfig, decide_store
from caching_proxy.store import DiskStore, Store
from caching_proxy.store.entry import Entry
from caching_proxy.store.redis.keys import redis_key
from caching_proxy.store.redis.store import RedisBackend


def make_entry(url: str, body: bytes = b"x", vary: str | None = None, value: str = "") -> Entry:
    headers = [("Cache-Control", "max-age=60"), ("Content-Length", str(len(body)))]
    if vary:
        headers.append(("Vary", vary))
    now = time.time()
    request = [(vary, value)] if vary else []
    decision = decide_store("GET", 200, request, headers, now, now, CacheConfig())
    assert decision.meta is not None
    values = (value,) if vary else ()
    return Entry(url=url, status=200, reason=b"OK", headers=tuple(
        (k.encode(), v.encode()) for k, v in headers), body=body, meta=decision.meta,
        vary_values=values)


def expires_at(store: Store, key: str) -> float:
    """When the record under `key` expires (epoch seconds; inf for never): read from the
    medium itself on diskcache and Redis, else from the backend's `expiry`."""
    if isinstance(store, DiskStore):
        found = store.backend.cache.expire_time(key)
        assert found is not None, key
        return found
    if not isinstance(store.backend, RedisBackend):
        left = store.backend.expiry(key)
        assert left is not None, key
        return time.time() + left
    pttl = redis.Redis.from_url(store.location).pttl(redis_key(key))
    assert pttl != -2, key
    return float("inf") if pttl == -1 else time.time() + pttl / 1000
