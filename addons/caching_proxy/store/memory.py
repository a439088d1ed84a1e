"""The memory tier (`--memory-size`): hot stored values kept in this process, in front of the
store, so that a hit on them reads neither SQLite nor Redis and unpickles nothing.

It wraps a Backend (store/backend.py) and caches what `get` returns (responses and Vary
indexes), least recently used first out, bounded by the size of the responses in bytes. Every
other call goes through to the store unchanged.

Coherence: a copy is used only while the store's change counters for its URL are what they were
just before it was read (store/generations.py for diskcache: every write by any process on this
machine bumps them; store/redis_store.py for Redis: bumps published to every subscribed proxy).
So a purge, clear, tag or soft purge, or a new response stored by another worker, is never
answered from memory once the command that made it has returned (on the same machine; across
machines, see RedisBackend.generations). A copy is also dropped once the store would have
expired it (its expiry is read along with it).

Not thread-safe by itself: the addon calls it from the event loop, and from worker threads for
large values (which it never keeps: over `max_item` they pass through).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from threading import Lock
from typing import Any, Protocol

from caching_proxy.entry import Entry
from caching_proxy.store.backend import SEP, Backend, EntryTooLarge
from caching_proxy.store.base import Usage, VaryIndex

DEFAULT_MEMORY_SIZE = 64 << 20
INDEX_SIZE = 128  # what a Vary index or an absence counts for
# How long "nothing stored under this key" is remembered (any write to its URL ends it sooner):
# a client that accepts no coding looks up the identity variant, then the coded ones.
ABSENT_FOR = 30.0
_ABSENT = object()
# `max_inline` of a read that must not touch the network (store/guarded.py, for Redis): what the
# memory tier does not hold raises EntryTooLarge, so the caller reads it off the event loop.
MEMORY_ONLY = -1


class ChangeCounters(Protocol):
    def read(self, url: str) -> object:
        """A token of `url`'s change counters: equal tokens mean no change in between."""


@dataclass(slots=True)
class _Copy:
    value: object  # an Entry, a VaryIndex, or _ABSENT
    token: object
    until: float  # monotonic time the store expires it
    size: int


def url_of(key: str) -> str:
    """The URL a backend key belongs to (a variant's or a tag marker's group, else itself)."""
    return key.split(SEP, 1)[0] if SEP in key else key


class MemoryTier:
    """A Backend that keeps recently read values of `inner` in memory (see the module)."""

    def __init__(self, inner: Backend, changes: ChangeCounters, max_bytes: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.location = inner.location
        self.changes = changes
        self.max_bytes = max_bytes
        # One value may take an eighth of the tier at most: one large body never empties it.
        self.max_item = max(max_bytes // 8, 1)
        self.clock = clock
        self._copies: OrderedDict[str, _Copy] = OrderedDict()
        self._bytes = 0
        self._lock = Lock()  # the OrderedDict is shared with worker threads' reads
        self.hits = self.misses = 0

    def get(self, key: str, max_inline: int | None = None) -> object | None:
        with self._lock:
            copy = self._copies.get(key)
            if copy is not None:
                if copy.token == self.changes.read(url_of(key)) and self.clock() < copy.until:
                    self._copies.move_to_end(key)
                    self.hits += 1
                    return None if copy.value is _ABSENT else copy.value
                self._drop(key)
        if max_inline == MEMORY_ONLY:
            raise EntryTooLarge(key)
        self.misses += 1
        token = self.changes.read(url_of(key))  # before the read: see the module docstring
        value = self.inner.get(key, max_inline)
        if value is None:
            self._keep(key, _Copy(_ABSENT, token, self.clock() + ABSENT_FOR, INDEX_SIZE))
        elif isinstance(value, Entry | VaryIndex):
            size = value.size if isinstance(value, Entry) else INDEX_SIZE
            if size <= self.max_item:
                left = self.inner.expiry(key)
                if left is not None and left > 0:
                    self._keep(key, _Copy(value, token, self.clock() + left, size))
        return value

    def _keep(self, key: str, copy: _Copy) -> None:
        with self._lock:
            self._drop(key)
            self._copies[key] = copy
            self._bytes += copy.size
            while self._bytes > self.max_bytes and self._copies:
                oldest = next(iter(self._copies))
                self._drop(oldest)

    def _drop(self, key: str) -> None:
        copy = self._copies.pop(key, None)
        if copy is not None:
            self._bytes -= copy.size

    def forget(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self._drop(key)

    @property
    def bytes(self) -> int:
        return self._bytes

    # -- writes: through, and this process's copies go at once (others see the counters) ------

    def set(self, key: str, value: object, expire: float, group: str | None = None,
            keep_later: bool = False) -> bool:
        self.forget([key])
        return self.inner.set(key, value, expire, group, keep_later)

    def delete(self, keys: Iterable[str]) -> int:
        keys = list(keys)
        self.forget(keys)
        return self.inner.delete(keys)

    def clear(self) -> Usage:
        with self._lock:
            self._copies.clear()
            self._bytes = 0
        return self.inner.clear()

    # -- the rest of the Backend, unchanged ----------------------------------------------------

    def get_many(self, keys: Iterable[str]) -> Iterator[object | None]:
        return self.inner.get_many(keys)

    def has(self, key: str) -> bool:
        return self.inner.has(key)

    def expiry(self, key: str) -> float | None:
        return self.inner.expiry(key)

    def members(self, group: str) -> list[str]:
        return self.inner.members(group)

    def scan(self, members: bool = False) -> Iterator[str]:
        return self.inner.scan(members)

    def add(self, key: str, token: str, ttl: float) -> bool:
        return self.inner.add(key, token, ttl)

    def delete_if(self, key: str, token: str) -> bool:
        return self.inner.delete_if(key, token)

    def usage(self) -> Usage:
        return self.inner.usage()

    def add_counts(self, counts: dict[str, int]) -> None:
        self.inner.add_counts(counts)

    def counters(self) -> dict[str, int]:
        return self.inner.counters()

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        with self._lock:
            self._copies.clear()
            self._bytes = 0
        close_changes = getattr(self.changes, "close", None)
        if callable(close_changes) and self.changes is not getattr(self.inner, "generations",
                                                                    None):
            close_changes()  # the Redis subscription; the disk file is the backend's own
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        # Backend-specific helpers (DiskBackend.cache for the adapter tests, ...).
        return getattr(self.inner, name)
