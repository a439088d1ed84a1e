"""The memory tier (`--memory-size`): hot stored values kept in this process, in front of the
store, so that a hit on them reads neither SQLite nor Redis (it unpickles its copy, no more).

It wraps a Backend (store/backend.py) and caches what `get` returns (responses and Vary
indexes), bounded in bytes. Every other call goes through to the store unchanged. Copies are
kept pickled, in a CopyArena (store/memory/arena.py: segments of one mapping, oldest out first,
a copy read near the end of its life written again), which bounds what they take in this
process, fragmentation included. Pickled, they are no objects for the garbage collector to scan
(kept as objects, the collector's full passes made a hit with 40,000 copies 3x slower).

Coherence: a copy is used only while the store's change counters for its URL are what they were
just before it was read (store/generations.py for diskcache: every write by any process on this
machine bumps them; store/redis/store.py for Redis: bumps published to every subscribed proxy).
So a purge, clear, tag or soft purge, or a new response stored by another worker, is never
answered from memory once the command that made it has returned (on the same machine; across
machines, see RedisBackend.generations). A copy is also dropped once the store would have
expired it (its expiry is read along with it).

Its read and its writes are written once (`_fetch`, `_write`: the backend calls of
store/calls.py) for both drivers: synchronously, and on the event loop through the store's
asynchronous side (`call_async`: a copy is answered without awaiting Redis).

Not thread-safe by itself: the addon calls it from the event loop (a Redis store's reads and
writes too), and from worker threads for large diskcache values (which it never keeps: over
`max_item` they pass through).
"""

from __future__ import annotations

import mmap
import pickle
import time
from collections.abc import Callable, Iterable, Iterator
from threading import Lock
from typing import Final, TypeVar, cast

from caching_proxy.store.backend import (
    SEP,
    Backend,
    ChangeCounters,
    EntryTooLarge,
    ReadsWithExpiry,
    Traits,
)
from caching_proxy.store.base import Usage, VaryIndex
from caching_proxy.store.calls import (
    Add,
    Call,
    Delete,
    Expiry,
    Get,
    GetWithExpiry,
    Replace,
    Set,
)
from caching_proxy.store.entry import Entry
from caching_proxy.store.memory.arena import LENGTH, TOKEN, UNTIL, CopyArena
from caching_proxy.store.steps import Steps, close_async, perform_async, run, run_async

DEFAULT_MEMORY_SIZE = 64 << 20
# How long "nothing stored under this key" is remembered (any write to its URL ends it sooner):
# a client that accepts no coding looks up the identity variant, then the coded ones.
ABSENT_FOR = 30.0
# Keys read once are marked in a table of one byte per slot (a Bloom filter of one hash, as
# TinyLFU's doorkeeper): 2**20 slots at most, 1 MiB counted in the tier's size, cleared once a
# sixteenth of them are marked (65,536 keys; 6% of keys read once then pass as read twice).
SEEN_SLOTS = 1 << 20
# `max_inline` of a read that must not touch the network (store/guarded.py, for Redis): what the
# memory tier does not hold raises EntryTooLarge, so the caller reads it off the event loop.
MEMORY_ONLY = -1
T = TypeVar("T")

__all__ = ["ABSENT_FOR", "DEFAULT_MEMORY_SIZE", "MEMORY_ONLY", "ChangeCounters", "MemoryTier",
           "url_of"]

_MISSED: Final = object()  # no live copy in memory


def url_of(key: str) -> str:
    """The URL a backend key belongs to (a variant's or a tag marker's group, else itself)."""
    return key.split(SEP, 1)[0] if SEP in key else key


class MemoryTier:
    """A Backend that keeps recently read values of `inner` in memory (see the module), with
    `inner`'s traits and an asynchronous side where `inner` has one. `changes` are `inner`'s
    (ChangeFeed.changes), closed with it."""

    def __init__(self, inner: Backend, changes: ChangeCounters, max_bytes: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.location = inner.location
        self.traits: Traits = inner.traits
        self.changes = changes
        self.max_bytes = max_bytes
        slots = SEEN_SLOTS
        while slots > 1024 and slots * 64 > max_bytes:
            slots //= 2
        # Zeroed again by giving its pages back (see _admit): no new allocation, no holes.
        self._seen = mmap.mmap(-1, slots, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._seen_left = slots // 16
        self._copies = CopyArena(max_bytes - slots)
        # One value may take a segment (a sixteenth of the tier) at most: one large body never
        # empties it.
        self.max_item = self._copies.max_item
        self.clock = clock
        self._lock = Lock()  # the arena is shared with worker threads' reads
        self.hits = self.misses = 0
        # Checked once (store/calls.py's GetWithExpiry): the value and its expiry in one read.
        self._one_read = isinstance(inner, ReadsWithExpiry)

    def get(self, key: str, max_inline: int | None = None) -> object | None:
        found = self._recall(key, max_inline)
        if found is not _MISSED:
            return found
        return run(self.inner, self._fetch(key, max_inline))

    async def call_async(self, call: Call[T]) -> T:
        """Any call on the event loop, through `inner`'s asynchronous side: a read answered by
        a copy in memory awaits nothing; a write forgets this process's copies first."""
        if isinstance(call, Get):
            found = self._recall(call.key, call.max_inline)
            if found is _MISSED:
                found = await run_async(self.inner, self._fetch(call.key, call.max_inline))
            return cast(T, found)
        self.forget(call.writes)
        result = await perform_async(self.inner, call)
        if isinstance(call, Add) and result:
            self._taken(call.name)
        return result

    def _fetch(self, key: str, max_inline: int | None) -> Steps[object | None]:
        """The read of `key` that memory did not answer, leaving a copy where `_admit` says."""
        token = self.changes.read(url_of(key))  # before the read: see the module docstring
        if not self._admit(key):
            found: object | None = yield Get(key, max_inline)
            return found
        left: float | None
        value: object | None
        if self._one_read:
            value, left = yield GetWithExpiry(key, max_inline)
        else:
            value = yield Get(key, max_inline)
            left = (yield Expiry(key)) if value is not None else None
        self._remember(key, token, value, left)
        return value

    def _recall(self, key: str, max_inline: int | None) -> object | None:
        """The value of the live copy of `key` (None: "nothing stored" remembered), else
        _MISSED, counted as a miss; EntryTooLarge instead for a MEMORY_ONLY read."""
        with self._lock:
            copies = self._copies
            record = copies.find(key)
            if record is not None:
                if (record[TOKEN] == self.changes.read(url_of(key))
                        and self.clock() < record[UNTIL]):
                    self.hits += 1
                    if record[LENGTH] < 0:
                        return None
                    value: object = pickle.loads(copies.read(key, record))
                    return value
                copies.drop(key)
        if max_inline == MEMORY_ONLY:
            raise EntryTooLarge(key)
        self.misses += 1
        return _MISSED

    def _remember(self, key: str, token: object, value: object | None,
                  left: float | None) -> None:
        """Keep a copy of what the store answered for `key` (read after `token`), if it fits."""
        if value is None:
            with self._lock:
                self._copies.put(key, None, token, self.clock() + ABSENT_FOR)
        elif left is not None and left > 0 and (isinstance(value, VaryIndex) or (
                isinstance(value, Entry) and type(value.body) is bytes  # not a mapped file
                and value.size <= self.max_item)):
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            with self._lock:
                self._copies.put(key, data, token, self.clock() + left)

    def _admit(self, key: str) -> bool:
        """Whether a read of `key` that memory did not answer may leave a copy: from its second
        read within the last 65,536 keys marked on (see SEEN_SLOTS; a key read once, as most are
        under reads spread over a large store, would only push out one read again)."""
        slot = hash(key) & (len(self._seen) - 1)
        if self._seen[slot]:
            return True
        if self._seen_left == 0:
            self._seen.madvise(mmap.MADV_DONTNEED)  # read as zeros from now on
            self._seen_left = len(self._seen) // 16
        self._seen[slot] = 1
        self._seen_left -= 1
        return False

    def forget(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self._copies.drop(key)

    @property
    def bytes(self) -> int:
        """What the copies take in this process, as counted against max_bytes."""
        return self._copies.held

    # -- writes: through, and this process's copies go at once (others see the counters) ------
    # (`call_async` makes the same calls on the event loop.) A replace's group needs no
    # forgetting: no lookup reaches a variant but through the index under `key`, forgotten now,
    # and the write's change counters drop the variants' copies soon after.

    def set(self, key: str, value: object, expire: float, group: str | None = None,
            keep_later: bool = False) -> bool:
        return self._write(Set(key, value, expire, group, keep_later))

    def replace(self, key: str, value: object, expire: float,
                lock: tuple[str, str] | None = None) -> bool:
        return self._write(Replace(key, value, expire, lock))

    def delete(self, keys: Iterable[str]) -> int:
        return self._write(Delete(list(keys)))

    def _write(self, call: Call[T]) -> T:
        self.forget(call.writes)
        return call.run(self.inner)

    def clear(self) -> Usage:
        with self._lock:
            self._copies.clear()
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
        taken = self.inner.add(key, token, ttl)
        if taken:
            self._taken(key)
        return taken

    def _taken(self, key: str) -> None:
        """The lock of `key` (a URL's fill lock) is this process's now: what it remembers of
        the URL may predate the fill of the process that held the lock just before, whose
        announcement can still be on its way (Redis delivers it on another connection), so the
        copy of the URL's own key goes and the next read asks the store (a waiter that took the
        lock after another instance's fill found "nothing stored" and fetched it again)."""
        self.forget((key,))

    def delete_if(self, key: str, token: str) -> bool:
        return self.inner.delete_if(key, token)

    # Use counts are never kept in memory: every process must add to the store's one count.

    def count_use(self, key: str, window: float) -> int:
        return self.inner.count_use(key, window)

    # Schedules likewise: one schedule for every process.

    def reserve(self, key: str, rate: float, burst: int, max_wait: float) -> float | None:
        return self.inner.reserve(key, rate, burst, max_wait)

    def hold_off(self, key: str, seconds: float) -> float:
        return self.inner.hold_off(key, seconds)

    def held_off(self, key: str) -> float:
        return self.inner.held_off(key)

    def take_slot(self, key: str, token: str, limit: int, lease: float) -> bool:
        return self.inner.take_slot(key, token, limit, lease)

    def give_slot(self, key: str, token: str) -> None:
        self.inner.give_slot(key, token)

    def usage(self) -> Usage:
        return self.inner.usage()

    def add_counts(self, counts: dict[str, int]) -> None:
        self.inner.add_counts(counts)

    def counters(self) -> dict[str, int]:
        return self.inner.counters()

    def flush(self) -> None:
        self.inner.flush()

    async def close_async(self) -> None:
        self._close_own()
        await close_async(self.inner)

    def close(self) -> None:
        self._close_own()
        self.inner.close()

    def _close_own(self) -> None:
        with self._lock:
            self._copies.clear()
