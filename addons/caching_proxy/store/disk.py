"""Stored responses on disk, shared by every process that opens the same folder.

Built on diskcache: each get, set and delete is atomic and safe across threads and processes
(SQLite in WAL mode underneath), so a proxy, a second proxy and a `--clear-cache` command may use
one folder at once. The size bound and least-recently-used eviction are diskcache's own.

Layout: the primary key is the URL. A response without Vary is stored right under it, so a hit is
one read. A response with Vary puts a `VaryIndex` under the URL (the field names and the variants
stored) and each variant under `URL NUL repr(secondary key)` (RFC 9111 4.1).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import diskcache

from caching_proxy.entry import Entry
from caching_proxy.policy import Headers, vary_key
from caching_proxy.store.base import Usage, VaryIndex, variant_key

DEFAULT_SIZE_LIMIT = 1 << 30
# How stale an entry's "last used" time may get before a read refreshes it.
DEFAULT_LRU_INTERVAL = 300.0
# Entries whose recency one `flush_recency` writes at most. On a store of 100,000 entries read
# at random one such write costs 50-70 us (it moves the row in diskcache's access_time index),
# about a tenth of a hit: a cold sweep noting every read cost the hit path ~15%. Entries past the
# budget keep their old access_time, so their next read notes them again (LRU is approximate
# under a burst of cold reads, as Redis' sampled LRU is).
RECENCY_BUDGET = 256
# Keys of fill locks; never URLs (those start with a scheme).
LOCK_PREFIX = "lock\x00"
# diskcache's per-item tag marks stored responses, so they are counted without being read.
ENTRY_TAG = "entry"


_ENTRY_MAGIC = b"caching-proxy entry 1\n"


class EntryDisk(diskcache.Disk):  # type: ignore[misc]
    """diskcache's serializer, except that a response with a body of a file's size is written as
    a small pickled head followed by the raw body bytes.

    Pickling copies the whole body while holding the GIL (measured: 23 ms for 50 MB), which
    stalls the event loop even when the store call runs in a worker thread; raw file writes and
    reads release it. Values written by plain diskcache (whole pickles) are still read.
    """

    def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> Any:
        if type(value) is Entry and len(value.body) >= self.min_file_size:
            head = pickle.dumps(dataclasses.replace(value, body=b""), protocol=self.pickle_protocol)
            filename, full_path = self.filename(key, value)
            size = self._write(
                full_path, iter((_ENTRY_MAGIC, len(head).to_bytes(8, "big"), head, value.body)),
                "xb",
            )
            return size, diskcache.core.MODE_PICKLE, filename, None
        return super().store(value, read, key)

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode == diskcache.core.MODE_PICKLE and value is None and filename:
            # Unbuffered, so that the body is one read straight into its bytes object.
            with open(os.path.join(self._directory, filename), "rb", buffering=0) as reader:
                if reader.read(len(_ENTRY_MAGIC)) == _ENTRY_MAGIC:
                    entry = pickle.loads(reader.read(int.from_bytes(reader.read(8), "big")))
                    entry.body = reader.readall()
                    return entry
        return super().fetch(mode, filename, value, read)


class EntryTooLarge(Exception):
    """The stored value is larger than the caller wants read inline (on the event loop)."""


class RecencyCache(diskcache.Cache):  # type: ignore[misc]
    """diskcache's least-recently-used eviction without a write on every read.

    diskcache's LRU policy updates `access_time` in a write transaction on every `get`: measured
    at 33-73 us per hit, and the write lock serialized several proxy processes. `peek` reads
    like diskcache's own fast path and notes the key when its `access_time` is older than
    `lru_interval` (as Varnish moves an object in its LRU list at most once per `lru_interval`);
    `flush_recency` writes the noted times in one transaction, about once a second off the event
    loop and before each write of this process (so its evictions see its own reads). Measured on
    a store of 20,000 entries read at random: 68 us per read with a write per read, 14 us without.
    Eviction order is thus exact to within that interval, for up to RECENCY_BUDGET entries a
    flush; a key read many times before a flush is written once.
    Relies on diskcache 5's `_sql`, `_con` and `_disk` (the version range is pinned).
    """

    lru_interval: float = DEFAULT_LRU_INTERVAL

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._touched: dict[tuple[Any, Any], float] = {}  # (db key, raw) -> time of last read
        self._touched_lock = threading.Lock()

    def peek(self, key: str, max_inline: int | None = None) -> Any:
        db_key, raw = self._disk.put(key)
        now = time.time()
        rows = self._sql(
            "SELECT access_time, mode, filename, value, size FROM Cache"
            " WHERE key = ? AND raw = ? AND (expire_time IS NULL OR expire_time > ?)",
            (db_key, raw, now),
        ).fetchall()
        if not rows:
            return None
        ((access_time, mode, filename, db_value, size),) = rows
        if max_inline is not None and size > max_inline:
            raise EntryTooLarge(key)
        if now - access_time > self.lru_interval:
            with self._touched_lock:
                if len(self._touched) < RECENCY_BUDGET or (db_key, raw) in self._touched:
                    self._touched[db_key, raw] = now
        try:
            return self._disk.fetch(mode, filename, db_value, False)
        except OSError:  # removed by another process between the select and the read
            return None

    def flush_recency(self) -> None:
        with self._touched_lock:
            touched, self._touched = self._touched, {}
        if touched:
            with self.transact():
                self._con.executemany(
                    "UPDATE Cache SET access_time = ? WHERE key = ? AND raw = ?",
                    [(at, key, raw) for (key, raw), at in touched.items()])


class DiskStore:
    def __init__(
        self,
        directory: str,
        size_limit: int = DEFAULT_SIZE_LIMIT,
        lru_interval: float = DEFAULT_LRU_INTERVAL,
    ) -> None:
        self.location = directory
        self._cache = RecencyCache(
            directory,
            size_limit=size_limit,
            eviction_policy="least-recently-used",
            disk=EntryDisk,
            # SQLite's defaults (64 MiB mapped, 32 MiB page cache per connection) grew the
            # proxy's RSS by ~100 MiB over 100k entries; the OS page cache serves reads as fast.
            sqlite_mmap_size=0,
            sqlite_cache_size=1024,
        )
        self._cache.lru_interval = lru_interval
        self._counters: diskcache.Cache | None = None

    def flush(self) -> None:
        """Write the recency of the entries read since the last call (see RecencyCache)."""
        self._cache.flush_recency()

    def close(self) -> None:
        with contextlib.suppress(OSError, sqlite3.Error):  # best effort; the store may be gone
            self.flush()
        self._cache.close()
        if self._counters is not None:
            self._counters.close()

    def lookup(
        self, url: str, request_headers: Headers, max_inline: int | None = None
    ) -> Entry | None:
        """The stored response that matches this request, or None. With `max_inline`, raises
        EntryTooLarge instead of reading a value larger than that (diskcache keeps such values
        in files of their own), so that the caller can read it in a worker thread."""
        found = self._cache.peek(url, max_inline)
        if isinstance(found, Entry):
            return found
        if isinstance(found, VaryIndex):
            variant = self._cache.peek(
                variant_key(url, vary_key(found.vary, request_headers)), max_inline)
            if isinstance(variant, Entry):
                return variant
        return None

    def has_url(self, url: str) -> bool:
        return url in self._cache

    def put(self, entry: Entry, expire: float) -> None:
        """Store `entry` for `expire` seconds, replacing whatever it supersedes.

        A response with a different Vary than the stored ones replaces all of them: they were
        selected by fields the origin no longer varies on.
        """
        url = entry.url
        with self._cache.transact():
            # Reads noted so far count before this write may evict (diskcache culls on set).
            self._cache.flush_recency()
            old = self._cache.get(url)
            if entry.meta.vary:
                key = variant_key(url, entry.vary_values)
                if isinstance(old, VaryIndex) and old.vary == entry.meta.vary:
                    index = old
                else:
                    self._drop_variants(old)
                    index = VaryIndex(entry.meta.vary)
                index.variants.add(key)
                self._cache.set(key, entry, expire=expire, tag=ENTRY_TAG)
                self._cache.set(url, index)
            else:
                self._drop_variants(old)
                self._cache.set(url, entry, expire=expire, tag=ENTRY_TAG)

    def delete_url(self, url: str) -> int:
        """Remove every stored response for `url` (all variants); returns how many there were."""
        with self._cache.transact():
            old = self._cache.get(url)
            removed = self._drop_variants(old)
            if isinstance(old, Entry):
                removed += 1
            self._cache.delete(url)
        return removed

    def clear(self) -> Usage:
        # The figures --stats and the metrics show, counted without reading every value.
        before = self.usage_estimate()
        self._cache.clear()
        return before

    def entries(self) -> Iterator[Entry]:
        for value in self._values():
            if isinstance(value, Entry):
                yield value

    def delete_matching(self, predicate: Callable[[str], bool]) -> int:
        removed = 0
        for key in list(self._cache.iterkeys()):
            if isinstance(key, str) and "\x00" not in key and predicate(key):
                removed += self.delete_url(key)
        return removed

    def acquire(self, key: str, ttl: float) -> bool:
        # `add` is diskcache's atomic insert-if-absent; an expired lock counts as absent.
        return bool(self._cache.add(LOCK_PREFIX + key, os.getpid(), expire=ttl))

    def release(self, key: str) -> None:
        self._cache.delete(LOCK_PREFIX + key)

    def add_counts(self, counts: dict[str, int]) -> None:
        stats = self._stats()
        with stats.transact():
            for name, delta in counts.items():
                if delta:
                    stats.incr(name, delta, default=0)

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

    def usage_estimate(self) -> Usage:
        """Responses stored and their size as stored (pickled), from diskcache's index alone."""
        ((count, size),) = self._cache._sql(
            # diskcache records the size of values kept in files only.
            "SELECT COUNT(*), COALESCE(SUM(IFNULL(LENGTH(value), size)), 0) FROM Cache"
            " WHERE tag = ? AND (expire_time IS NULL OR expire_time > ?)",
            (ENTRY_TAG, time.time()),
        ).fetchall()
        return Usage(int(count), int(size))

    def _values(self) -> Iterator[Any]:
        for key in list(self._cache.iterkeys()):
            value = self._cache.get(key)
            if value is not None:
                yield value

    def _drop_variants(self, old: object) -> int:
        removed = 0
        if isinstance(old, VaryIndex):
            for key in old.variants:
                removed += int(self._cache.delete(key))
        return removed
