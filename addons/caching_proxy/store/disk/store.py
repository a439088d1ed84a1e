"""Stored responses on disk, shared by every process that opens the same folder.

Built on diskcache: each get, set and delete is atomic and safe across threads and processes
(SQLite in WAL mode underneath), so a proxy, a second proxy and a `--clear-cache` command may use
one folder at once. The size bound and least-recently-used eviction are diskcache's own, with
recency written in deferred batches (disk/adapter.py's RecencyCache).

A hit on a URL without Vary is one SQLite read. A group's members are the keys `group NUL ...`,
found by a range query on diskcache's key index: nothing lists them, so a write of one member
never rewrites another, and an expired or evicted member is simply no longer found.

Folders written by versions before this layout need not be read back: their Vary indexes do
not decode (treated as absent and dropped when met), their variants are keyed without a
generation (never reached; deleted when their URL is next stored or purged, else evicted as
space is needed); their responses without Vary are still served.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator

import diskcache

from caching_proxy.policy.origin_budget import reserve
from caching_proxy.store.backend import SEP, EntryTooLarge, Traits, Unreadable
from caching_proxy.store.base import Usage
from caching_proxy.store.disk.adapter import (
    DEFAULT_LRU_INTERVAL,
    RECENCY_BUDGET,
    EntryDisk,
    RecencyCache,
)
from caching_proxy.store.entry import Entry
from caching_proxy.store.generations import Generations
from caching_proxy.store.layout import Store
from caching_proxy.store.memory.tier import url_of

__all__ = ["DEFAULT_LRU_INTERVAL", "DEFAULT_SIZE_LIMIT", "DISK_ERRORS", "RECENCY_BUDGET",
           "DiskBackend", "DiskStore", "EntryTooLarge"]

DEFAULT_SIZE_LIMIT = 1 << 30
# How the medium fails besides OSError: SQLite's errors, and diskcache's Timeout (SQLite still
# locked by another process after its 60 s busy wait).
DISK_ERRORS = (sqlite3.Error, diskcache.Timeout)
# Keys of locks; never URLs (those start with a scheme), never a group's members.
LOCK_PREFIX = "lock\x00"
# Keys of use counts (Backend.count_use), likewise never listed as values.
USES_PREFIX = "uses\x00"
# Keys of the origin budget's schedules and pauses (Schedules), in the counters' cache.
SCHEDULE_PREFIX = "schedule\x00"
PAUSE_PREFIX = "pause\x00"
SLOTS_PREFIX = "slots\x00"
# diskcache's per-item tag marks stored responses, so they are counted without being read.
ENTRY_TAG = "entry"
_AFTER_SEP = chr(ord(SEP) + 1)


class DiskBackend:
    """The Backend (store/backend.py) on a diskcache folder, with ReadsWithExpiry and
    ChangeFeed. Local: no asynchronous side (the drivers make its calls synchronously, short
    local steps; the addon reads and writes on the loop, and large values in a thread), and
    shared only by the processes that open the folder (--workers)."""

    traits = Traits(remote=False, shared=False, async_capable=False)

    def __init__(self, directory: str, size_limit: int = DEFAULT_SIZE_LIMIT,
                 lru_interval: float = DEFAULT_LRU_INTERVAL) -> None:
        self.location = directory
        self.cache = RecencyCache(
            directory,
            size_limit=size_limit,
            eviction_policy="least-recently-used",
            disk=EntryDisk,
            # SQLite's defaults (64 MiB mapped, 32 MiB page cache per connection) grew the
            # proxy's RSS by ~100 MiB over 100k entries; the OS page cache serves reads as fast.
            sqlite_mmap_size=0,
            sqlite_cache_size=1024,
        )
        self.cache.lru_interval = lru_interval
        self._counters: diskcache.Cache | None = None
        # Bumped after every write, by every process: memory tiers (store/memory/tier.py) read them.
        self.generations = Generations(directory)

    def get(self, key: str, max_inline: int | None = None) -> object | None:
        value: object | None = self.cache.peek(key, max_inline)
        return value

    def get_with_expiry(self, key: str, max_inline: int | None = None,
                        ) -> tuple[object | None, float | None]:
        """`get`, and the seconds it has left (None when absent), from one query."""
        value, expires = self.cache.peek_with_expiry(key, max_inline)
        return value, (None if value is None else expires - time.time())

    def get_many(self, keys: Iterable[str]) -> Iterator[object | None]:
        for key in keys:
            try:
                yield self.cache.peek(key)
            except Unreadable:
                yield None

    def has(self, key: str) -> bool:
        return key in self.cache

    def set(self, key: str, value: object, expire: float, group: str | None = None,
            keep_later: bool = False) -> bool:
        if group is not None and not key.startswith(group + SEP):
            raise ValueError(f"{key!r} is not named as a member of group {group!r}")
        with self.cache.transact():
            self._set(key, value, expire, keep_later)
        self.generations.bump([url_of(key)])
        return True

    def _set(self, key: str, value: object, expire: float, keep_later: bool) -> None:
        """`set`'s write, inside the caller's transaction."""
        # Reads noted so far count before this write may evict (diskcache culls on set).
        self.cache.flush_recency()
        if keep_later:
            current = self.cache.expire_time(key)
            if current is not None:
                expire = max(expire, current - time.time())
        tag = ENTRY_TAG if isinstance(value, Entry) else None
        self.cache.set(key, value, expire=None if expire == float("inf") else expire, tag=tag)

    def replace(self, key: str, value: object, expire: float,
                lock: tuple[str, str] | None = None) -> bool:
        if SEP in key:
            raise ValueError(f"{key!r} is a group member: it has no group of its own")
        with self.cache.transact():
            self._set(key, value, expire, keep_later=False)
            for member in self.members(key):
                self.cache.delete(member)
            if lock is not None:
                self._delete_if(*lock)
        # After the commit, as every write's: a memory tier that reads the counters first never
        # keeps what was there before under the new ones.
        self.generations.bump([key])
        return True

    def delete(self, keys: Iterable[str]) -> int:
        keys = list(keys)
        with self.cache.transact():
            removed = sum(int(self.cache.delete(key)) for key in keys)
        self.generations.bump([url_of(key) for key in keys])
        return removed

    def expiry(self, key: str) -> float | None:
        at = self.cache.expire_time(key)
        return None if at is None else at - time.time()

    def members(self, group: str) -> list[str]:
        return self.cache.live_keys_between(group + SEP, group + _AFTER_SEP)

    def scan(self, members: bool = False) -> Iterator[str]:
        for key in list(self.cache.iterkeys()):
            if isinstance(key, str) and not key.startswith((LOCK_PREFIX, USES_PREFIX)) and (
                    members or SEP not in key):
                yield key

    def add(self, key: str, token: str, ttl: float) -> bool:
        # diskcache's `add` is an atomic insert-if-absent; an expired row counts as absent.
        return bool(self.cache.add(LOCK_PREFIX + key, token, expire=ttl))

    def count_use(self, key: str, window: float) -> int:
        # One transaction (BEGIN IMMEDIATE): incr (an expired count restarts at 1) and the new
        # expiry land together, whichever process counts meanwhile.
        with self.cache.transact():
            count = int(self.cache.incr(USES_PREFIX + key, 1, default=0))
            self.cache.touch(USES_PREFIX + key, expire=window)
        return count

    def delete_if(self, key: str, token: str) -> bool:
        # One transaction (BEGIN IMMEDIATE): no other process writes between the read and the
        # delete.
        with self.cache.transact():
            return self._delete_if(key, token)

    def _delete_if(self, key: str, token: str) -> bool:
        if self.cache.peek(LOCK_PREFIX + key) != token:
            return False
        return bool(self.cache.delete(LOCK_PREFIX + key))

    def usage(self) -> Usage:
        return Usage(*self.cache.tagged_usage(ENTRY_TAG))

    def clear(self) -> Usage:
        before = self.usage()
        self.cache.clear()
        self.generations.bump_all()
        return before

    def add_counts(self, counts: dict[str, int]) -> None:
        stats = self._stats()
        with stats.transact():
            for name, delta in counts.items():
                if delta:
                    stats.incr(name, delta, default=0)

    def reserve(self, key: str, rate: float, burst: int, max_wait: float) -> float | None:
        # One transaction (BEGIN IMMEDIATE): read, decide and move the schedule before any other
        # process reserves. This machine's clock is every process's clock.
        stats = self._stats()
        with stats.transact():
            now = time.time()
            place = reserve(float(stats.get(SCHEDULE_PREFIX + key, 0.0)), now, rate, burst,
                            max_wait)
            if place.wait is not None:
                stats.set(SCHEDULE_PREFIX + key, place.tat, expire=place.tat - now + 60)
        return place.wait

    def hold_off(self, key: str, seconds: float) -> float:
        stats = self._stats()
        with stats.transact():
            now = time.time()
            until = max(float(stats.get(PAUSE_PREFIX + key, 0.0)), now + seconds)
            stats.set(PAUSE_PREFIX + key, until, expire=until - now + 1)
        return until - now

    def held_off(self, key: str) -> float:
        return max(0.0, float(self._stats().get(PAUSE_PREFIX + key, 0.0)) - time.time())

    def take_slot(self, key: str, token: str, limit: int, lease: float) -> bool:
        # One transaction: the holders (token -> deadline) read, pruned and added to together.
        stats = self._stats()
        with stats.transact():
            now = time.time()
            holders = {t: d for t, d in dict(stats.get(SLOTS_PREFIX + key, {})).items()
                       if d > now}
            taken = len(holders) < limit
            if taken:
                holders[token] = now + lease
            stats.set(SLOTS_PREFIX + key, holders, expire=lease + 60)
        return taken

    def give_slot(self, key: str, token: str) -> None:
        stats = self._stats()
        with stats.transact():
            holders = dict(stats.get(SLOTS_PREFIX + key, {}))
            if holders.pop(token, None) is not None:
                stats.set(SLOTS_PREFIX + key, holders, expire=3600)

    def counters(self) -> dict[str, int]:
        stats = self._stats()
        found: dict[str, int] = {}
        for key in list(stats.iterkeys()):
            value = stats.get(key)
            if isinstance(key, str) and isinstance(value, int):
                found[key] = value
        return found

    def _stats(self) -> diskcache.Cache:
        # Counters live in a cache of their own beside the responses: never evicted for space,
        # and kept by `clear` (they count since the store was created, like a server's stats).
        if self._counters is None:
            self._counters = diskcache.Cache(
                os.path.join(self.location, "stats"), eviction_policy="none",
                sqlite_mmap_size=0, sqlite_cache_size=64)
        return self._counters

    def flush(self) -> None:
        """Write the recency of the entries read since the last call (see RecencyCache), and
        count the entries diskcache evicted since then (counters `evicted_expiry`,
        `evicted_lru`)."""
        self.cache.flush_recency()
        culled = self.cache.take_culled()
        if culled:
            self.add_counts({f"evicted_{reason}": n for reason, n in culled.items()})

    def changes(self) -> Generations:
        """The folder's change counters (ChangeFeed), closed with the backend."""
        return self.generations

    def close(self) -> None:
        with contextlib.suppress(OSError, sqlite3.Error):  # best effort; the store may be gone
            self.flush()
        self.cache.close()
        self.generations.close()
        if self._counters is not None:
            self._counters.close()


class DiskStore(Store):
    """The variant layout on a diskcache folder."""

    backend: DiskBackend

    def __init__(self, directory: str, size_limit: int = DEFAULT_SIZE_LIMIT,
                 lru_interval: float = DEFAULT_LRU_INTERVAL) -> None:
        super().__init__(DiskBackend(directory, size_limit, lru_interval))
