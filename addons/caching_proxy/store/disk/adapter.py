"""Every use of diskcache's internals, in one place: the two subclasses below.

diskcache's public API has no read without a write (its LRU policy updates `access_time` on
every `get`), no raw-file value format, no range query over keys and no way to read a key's
expiry, and it counts no evictions. These need its private `Cache._sql`, `Cache._con`,
`Cache._disk`, `Cache._cull(now, sql, cleanup, limit)` (and the text of its two DELETEs),
`Disk._write`, `Disk._directory`, `Disk.filename`, the `Cache` table's columns and the encoding
of str keys (stored as-is, raw = 1). tests/unit/test_diskcache_adapter.py checks each of them and fails
loudly when a diskcache upgrade changes one; the version range is pinned in pyproject.toml.
"""

from __future__ import annotations

import dataclasses
import math
import mmap
import os
import pickle
import stat
import threading
import time
from typing import Any

import diskcache

from caching_proxy.store import renamed  # noqa: F401 - the old module name, for old pickles
from caching_proxy.store.backend import EntryTooLarge, Unreadable
from caching_proxy.store.entry import Entry

# How stale an entry's "last used" time may get before a read refreshes it.
DEFAULT_LRU_INTERVAL = 300.0
# Entries whose recency one `flush_recency` writes at most. On a store of 100,000 entries read
# at random one such write costs 50-70 us (it moves the row in diskcache's access_time index),
# about a tenth of a hit: a cold sweep noting every read cost the hit path ~15%. Entries past the
# budget keep their old access_time, so their next read notes them again (LRU is approximate
# under a burst of cold reads, as Redis' sampled LRU is).
RECENCY_BUDGET = 256

_ENTRY_MAGIC = b"caching-proxy entry 1\n"
# Bodies from this size on are memory-mapped rather than read (see EntryDisk.fetch).
MAP_BODY_BYTES = 1 << 20


class EntryDisk(diskcache.Disk):  # type: ignore[misc]
    """diskcache's serializer, except that a response with a body of a file's size is written as
    a small pickled head followed by the raw body bytes.

    Pickling copies the whole body while holding the GIL (measured: 23 ms for 50 MB), which
    stalls the event loop even when the store call runs in a worker thread; raw file writes and
    reads release it. Bodies of MAP_BODY_BYTES or more come back as a read-only memoryview of
    the mapped file (`Entry.body` is bytes or such a view). Values written by plain diskcache
    (whole pickles) are still read.
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
                    head = int.from_bytes(reader.read(8), "big")
                    entry = pickle.loads(reader.read(head))
                    start = len(_ENTRY_MAGIC) + 8 + head
                    status = os.fstat(reader.fileno())
                    if stat.S_ISREG(status.st_mode) and status.st_size - start >= MAP_BODY_BYTES:
                        # Mapped, not read: a range or a send touches only the pages it needs,
                        # and readers of one object share the page cache instead of holding a
                        # copy each. The file is never rewritten in place (a new value is a
                        # new file; a removed one stays readable while mapped).
                        whole = mmap.mmap(reader.fileno(), 0, access=mmap.ACCESS_READ)
                        entry.body = memoryview(whole)[start:]
                    else:
                        entry.body = reader.readall()
                    return entry
        return super().fetch(mode, filename, value, read)


class RecencyCache(diskcache.Cache):  # type: ignore[misc]
    """diskcache's least-recently-used eviction without a write on every read, plus the few
    index queries the backend needs.

    diskcache's LRU policy updates `access_time` in a write transaction on every `get`: measured
    at 33-73 us per hit, and the write lock serialized several proxy processes. `peek` reads
    like diskcache's own fast path and notes the key when its `access_time` is older than
    `lru_interval` (as Varnish moves an object in its LRU list at most once per `lru_interval`);
    `flush_recency` writes the noted times in one transaction, about once a second off the event
    loop and before each write of this process (so its evictions see its own reads). Measured on
    a store of 20,000 entries read at random: 68 us per read with a write per read, 14 us without.
    Eviction order is thus exact to within that interval, for up to RECENCY_BUDGET entries a
    flush; a key read many times before a flush is written once.
    """

    lru_interval: float = DEFAULT_LRU_INTERVAL

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._touched: dict[tuple[Any, Any], float] = {}  # (db key, raw) -> time of last read
        self._touched_lock = threading.Lock()
        self.culled: dict[str, int] = {}  # rows diskcache's cull removed, by reason (take_culled)

    def peek(self, key: str, max_inline: int | None = None) -> Any:
        """The live value under `key` or None, in one SELECT and no write. Raises EntryTooLarge
        for a value over `max_inline` bytes (before reading it), Unreadable for one that does
        not decode."""
        return self.peek_with_expiry(key, max_inline)[0]

    def peek_with_expiry(self, key: str, max_inline: int | None = None) -> tuple[Any, float]:
        """`peek`, and when the value expires (epoch seconds, inf for never; 0 when absent),
        from the same SELECT."""
        db_key, raw = self._disk.put(key)
        now = time.time()
        rows = self._sql(
            "SELECT access_time, mode, filename, value, size, expire_time FROM Cache"
            " WHERE key = ? AND raw = ? AND (expire_time IS NULL OR expire_time > ?)",
            (db_key, raw, now),
        ).fetchall()
        if not rows:
            return None, 0.0
        ((access_time, mode, filename, db_value, size, expire_time),) = rows
        expires = math.inf if expire_time is None else float(expire_time)
        if max_inline is not None and size > max_inline:
            raise EntryTooLarge(key)
        if now - access_time > self.lru_interval:
            with self._touched_lock:
                if len(self._touched) < RECENCY_BUDGET or (db_key, raw) in self._touched:
                    self._touched[db_key, raw] = now
        try:
            return self._disk.fetch(mode, filename, db_value, False), expires
        except OSError:  # removed by another process between the select and the read
            return None, 0.0
        except Exception as e:  # a pickle of classes this version does not have, or garbage
            raise Unreadable(key) from e

    def _cull(self, now: float, sql: Any, cleanup: Any, limit: int | None = None) -> None:
        """diskcache's own cull (on every set: up to `cull_limit` expired rows, then rows by
        the eviction policy while over the size bound), counting the rows each DELETE removes:
        diskcache counts none. Its two DELETEs are told apart by their text."""

        def counting(statement: str, *args: Any) -> Any:
            cursor = sql(statement, *args)
            if statement.startswith("DELETE") and cursor.rowcount > 0:
                reason = "expiry" if "expire_time IS NOT NULL" in statement else "lru"
                with self._touched_lock:
                    self.culled[reason] = self.culled.get(reason, 0) + cursor.rowcount
            return cursor

        super()._cull(now, counting, cleanup, limit)

    def take_culled(self) -> dict[str, int]:
        """The rows culled since the last call, by reason ("expiry", "lru"), handed over."""
        with self._touched_lock:
            culled, self.culled = self.culled, {}
        return culled

    def flush_recency(self) -> None:
        with self._touched_lock:
            touched, self._touched = self._touched, {}
        if touched:
            with self.transact():
                self._con.executemany(
                    "UPDATE Cache SET access_time = ? WHERE key = ? AND raw = ?",
                    [(at, key, raw) for (key, raw), at in touched.items()])

    def live_keys_between(self, low: str, high: str) -> list[str]:
        """The str keys `low <= key < high` that have not expired: one range scan of the
        (key, raw) index, whatever else the cache holds."""
        rows = self._sql(
            "SELECT key FROM Cache WHERE key >= ? AND key < ? AND raw = 1"
            " AND (expire_time IS NULL OR expire_time > ?)",
            (low, high, time.time()),
        ).fetchall()
        return [key for (key,) in rows]

    def expire_time(self, key: str) -> float | None:
        """When the live value under `key` expires (epoch seconds, inf for never); None when
        there is none."""
        db_key, raw = self._disk.put(key)
        rows = self._sql(
            "SELECT expire_time FROM Cache WHERE key = ? AND raw = ?"
            " AND (expire_time IS NULL OR expire_time > ?)",
            (db_key, raw, time.time()),
        ).fetchall()
        if not rows:
            return None
        ((expire_time,),) = rows
        return math.inf if expire_time is None else float(expire_time)

    def tagged_usage(self, tag: str) -> tuple[int, int]:
        """How many live values carry `tag`, and their size as stored (from the index alone)."""
        ((count, size),) = self._sql(
            # diskcache records the size of values kept in files only.
            "SELECT COUNT(*), COALESCE(SUM(IFNULL(LENGTH(value), size)), 0) FROM Cache"
            " WHERE tag = ? AND (expire_time IS NULL OR expire_time > ?)",
            (tag, time.time()),
        ).fetchall()
        return int(count), int(size)
