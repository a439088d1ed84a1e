"""What the store contract tests share: the same answers from a store's sync and async calls (a
check every backend's tests run), a stored record's raw bytes, and backends that note the calls
made on them."""

from __future__ import annotations

import dataclasses
import pickle
import zlib
from typing import Any

import redis

from caching_proxy.store import DiskStore, Store
from caching_proxy.store.backend import SEP, Backend
from caching_proxy.store.entry import Entry
from caching_proxy.store.redis.keys import redis_key
from caching_proxy.store.redis.store import RedisStore
from support.entries import make_entry

AGENTS = ("agent/1", "agent/2", "agent/3")


def raw_size(store: Store, key: str) -> int:
    """The stored record's size in bytes, read from the backend itself (a test's own backend:
    its `raw`, tests/store/test_toy_backend.py)."""
    if isinstance(store, DiskStore):
        ((size,),) = store.backend.cache._sql(
            "SELECT IFNULL(LENGTH(value), size) FROM Cache WHERE key = ?", (key,)).fetchall()
        return int(size)
    if isinstance(store, RedisStore):
        return int(redis.Redis.from_url(store.location).strlen(redis_key(key)))
    backend: Any = store.backend
    return len(backend.raw(key))


def write_raw(store: Store, key: str, data: bytes) -> None:
    """`data` as the pickled value under `key`, bypassing the store's own serializer."""
    if isinstance(store, DiskStore):
        cache = store.backend.cache
        cache.set(key, b"placeholder", expire=60)
        cache._sql("UPDATE Cache SET mode = 4, value = ? WHERE key = ?", (data, key))
    elif isinstance(store, RedisStore):
        redis.Redis.from_url(store.location).set(redis_key(key), data, px=60_000)
    else:
        backend: Any = store.backend
        backend.write_raw(key, data)


class Recorder:
    """A backend that passes every call through and notes what `set` and `get` were given."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.sets: list[tuple[str, int]] = []  # (key, pickled size of the value)
        self.gets: list[str] = []

    def get(self, key: str, max_inline: int | None = None) -> object | None:
        self.gets.append(key)
        return self.inner.get(key, max_inline)

    def set(self, key: str, value: object, expire: float, group: str | None = None,
            keep_later: bool = False) -> bool:
        self.sets.append((key, len(pickle.dumps(value))))
        return self.inner.set(key, value, expire, group, keep_later)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Calls:
    """A backend that passes every call through and notes the name of each."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.names: list[str] = []

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.inner, name)
        if not callable(found):
            return found

        def call(*args: Any, **kwargs: Any) -> Any:
            self.names.append(name)
            return found(*args, **kwargs)
        return call


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
