"""Stored responses in Redis, shared by proxy instances on several machines.

Same layout as the disk store: a response without Vary under its URL, a `VaryIndex` under a URL
whose responses vary plus each variant under `URL NUL repr(secondary key)`, all below one key
prefix, so `clear` removes this cache's keys only (never FLUSHDB). Expiry is Redis' own (PX, the
addon passes freshness plus the stale windows); size is bounded by Redis' `maxmemory` with an
LRU `maxmemory-policy` (allkeys-lru recommended, see README). Responses larger than
`max_value_size` are not stored: one large value would hold the single-threaded server up.

A hit is one GET (two under Vary). Values are pickled and read back with an unpickler that only
builds this package's entry classes, so whoever can write to the Redis cannot make the proxy run
code. Every Redis failure surfaces as `StoreUnavailable` (an OSError), which the addon turns into
pass-through; after a failure the store answers "unavailable" at once for a second instead of
making every request wait for a dead server.
"""

from __future__ import annotations

import io
import os
import pickle
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from caching_proxy.entry import Entry
from caching_proxy.policy import Headers, vary_key
from caching_proxy.store.base import Usage, VaryIndex, variant_key

PREFIX = "caching-proxy:"
DEFAULT_MAX_VALUE_SIZE = 8 << 20
OUTAGE_BACKOFF = 1.0  # seconds of immediate pass-through after a failure
ENTRY_MARK, INDEX_MARK = b"E", b"I"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
T = TypeVar("T")


class StoreUnavailable(OSError):
    """The Redis server cannot be reached or failed."""


class _EntryUnpickler(pickle.Unpickler):
    ALLOWED = frozenset({
        ("caching_proxy.entry", "Entry"),
        ("caching_proxy.policy.storing", "StoredMeta"),
        ("caching_proxy.store.base", "VaryIndex"),
        ("builtins", "set"),
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from Redis")
        return super().find_class(module, name)


def encode(value: Entry | VaryIndex) -> bytes:
    mark = ENTRY_MARK if isinstance(value, Entry) else INDEX_MARK
    return mark + pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def decode(data: bytes | None) -> Entry | VaryIndex | None:
    if not data or data[:1] not in (ENTRY_MARK, INDEX_MARK):
        return None
    value = _EntryUnpickler(io.BytesIO(data[1:])).load()
    return value if isinstance(value, Entry | VaryIndex) else None


class RedisStore:
    def __init__(self, url: str, max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
                 timeout: float = 1.0) -> None:
        self.location = url
        self.max_value_size = max_value_size
        # Short timeouts and no retries: during an outage a request passes through at once.
        # Any: redis-py's annotations mix its sync and async return types.
        self._redis: Any = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0), health_check_interval=30)
        self._down_until = 0.0
        self._tokens: dict[str, bytes] = {}
        self._release = self._redis.register_script(_RELEASE)

    def _call(self, fn: Callable[[], T]) -> T:
        if self._down_until and time.monotonic() < self._down_until:
            raise StoreUnavailable(f"Redis at {self.location} is unavailable")
        try:
            result = fn()
        except redis.RedisError as e:
            self._down_until = time.monotonic() + OUTAGE_BACKOFF
            raise StoreUnavailable(f"Redis at {self.location}: {e}") from e
        self._down_until = 0.0
        return result

    def flush(self) -> None:
        """Nothing deferred: Redis tracks recency itself."""

    def close(self) -> None:
        self._redis.close()

    # -- responses -----------------------------------------------------------------------------

    def lookup(self, url: str, request_headers: Headers) -> Entry | None:
        found = decode(self._call(lambda: self._redis.get(PREFIX + url)))
        if isinstance(found, VaryIndex):
            key = PREFIX + variant_key(url, vary_key(found.vary, request_headers))
            found = decode(self._call(lambda: self._redis.get(key)))
        return found if isinstance(found, Entry) else None

    def has_url(self, url: str) -> bool:
        return bool(self._call(lambda: self._redis.exists(PREFIX + url)))

    def put(self, entry: Entry, expire: float) -> None:
        """Store `entry` for `expire` seconds; a response with a different Vary replaces every
        variant stored (optimistic transaction on the URL's key, retried on a conflict)."""
        data = encode(entry)
        if len(data) > self.max_value_size:
            return
        url_key = PREFIX + entry.url
        px = max(1, int(expire * 1000))

        def update(pipe: Any) -> None:
            old = decode(pipe.get(url_key))
            stale = old.variants if isinstance(old, VaryIndex) else set()
            if entry.meta.vary:
                key = variant_key(entry.url, entry.vary_values)
                same = isinstance(old, VaryIndex) and old.vary == entry.meta.vary
                index = old if same and isinstance(old, VaryIndex) else VaryIndex(entry.meta.vary)
                if same:
                    stale = set()
                index.variants.add(key)
                # The index lives as long as its longest-lived variant.
                ttl = max(px, pipe.pttl(url_key) if same else 0)
                pipe.multi()
                pipe.set(PREFIX + key, data, px=px)
                pipe.set(url_key, encode(index), px=ttl)
            else:
                pipe.multi()
                pipe.set(url_key, data, px=px)
            for key in stale:
                pipe.delete(PREFIX + key)

        self._call(lambda: self._redis.transaction(update, url_key))

    def delete_url(self, url: str) -> int:
        url_key = PREFIX + url
        removed = 0

        def drop(pipe: Any) -> None:
            nonlocal removed
            old = decode(pipe.get(url_key))
            keys = [PREFIX + k for k in old.variants] if isinstance(old, VaryIndex) else []
            pipe.multi()
            for key in keys:
                pipe.delete(key)
            pipe.delete(url_key)
            removed = len(keys) if isinstance(old, VaryIndex) else int(old is not None)

        self._call(lambda: self._redis.transaction(drop, url_key))
        return removed

    def _keys(self) -> Iterator[bytes]:
        for key in self._call(lambda: list(self._redis.scan_iter(PREFIX + "*", count=1000))):
            name = key[len(PREFIX):]
            if not name.startswith((b"lock:", b"counters")):
                yield key

    def _values(self) -> Iterator[Entry | VaryIndex]:
        keys = list(self._keys())
        for start in range(0, len(keys), 500):
            batch = keys[start:start + 500]
            values: list[bytes | None] = self._call(partial(self._redis.mget, batch))
            for data in values:
                value = decode(data)
                if value is not None:
                    yield value

    def entries(self) -> Iterator[Entry]:
        for value in self._values():
            if isinstance(value, Entry):
                yield value

    def usage_estimate(self) -> Usage:
        """Counted from each value's first byte and length, without unpickling."""
        keys = list(self._keys())
        entries = size = 0
        for start in range(0, len(keys), 500):
            pipe = self._redis.pipeline(transaction=False)
            for key in keys[start:start + 500]:
                pipe.getrange(key, 0, 0)
                pipe.strlen(key)
            answers = self._call(pipe.execute)
            for mark, length in zip(answers[::2], answers[1::2], strict=True):
                if mark == ENTRY_MARK:
                    entries += 1
                    size += int(length)
        return Usage(entries, size)

    def delete_matching(self, predicate: Callable[[str], bool]) -> int:
        removed = 0
        for key in list(self._keys()):
            url = key[len(PREFIX):].decode("utf-8", "surrogateescape")
            if "\x00" not in url and predicate(url):
                removed += self.delete_url(url)
        return removed

    def clear(self) -> Usage:
        # The figures --stats and the metrics show, counted without reading every value.
        before = self.usage_estimate()
        keys = list(self._keys())
        for start in range(0, len(keys), 500):
            self._call(partial(self._redis.unlink, *keys[start:start + 500]))
        return before

    # -- coordination and counters -------------------------------------------------------------

    def acquire(self, key: str, ttl: float) -> bool:
        token = os.urandom(8).hex().encode()
        taken = self._call(lambda: self._redis.set(
            PREFIX + "lock:" + key, token, nx=True, px=max(1, int(ttl * 1000))))
        if taken:
            self._tokens[key] = token
        return bool(taken)

    def release(self, key: str) -> None:
        # Only our own lock: after expiry another instance may hold it.
        token = self._tokens.pop(key, None)
        if token is not None:
            self._call(lambda: self._release(keys=[PREFIX + "lock:" + key], args=[token]))

    def add_counts(self, counts: dict[str, int]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for name, delta in counts.items():
            if delta:
                pipe.hincrby(PREFIX + "counters", name, delta)
        self._call(pipe.execute)

    def counters(self) -> dict[str, int]:
        found = self._call(lambda: self._redis.hgetall(PREFIX + "counters"))
        return {k.decode(): int(v) for k, v in found.items()}
