"""Change counters that tell an in-process copy of a stored value (store/memory.py) whether the
store has changed under it, shared by every process on this machine.

A small memory-mapped file beside the diskcache folder holds SLOTS counters; each URL hashes to
one slot, and one more counter stands for the whole store. Every write, delete and clear of the
disk backend bumps its URL's slot after the write (clear: the whole-store counter), in this
process or any other: proxies, workers, `--purge`. A reader notes the counters *before* it reads
the store, and keeps the copy only while they are unchanged; so whatever order a read and a
write interleave in, a copy read before a write is never used after the write's bump.

Bumps take an exclusive lock on the file (fcntl.flock) around the read-modify-write, so no bump
is lost between processes; reads take no lock (an 8-byte aligned read; a torn value reads as a
change, which costs a store read, never a stale answer). Two URLs that share a slot only cost
each other store reads.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import struct
import threading
import zlib
from collections.abc import Callable
from typing import Any

SLOTS = 4096
FILE_NAME = "generations"
_CELL = struct.Struct("<Q")
_SIZE = (SLOTS + 1) * _CELL.size
_ALL = SLOTS  # the whole-store counter's index


def slot_of(url: str) -> int:
    return zlib.crc32(url.encode("utf-8", "surrogateescape")) % SLOTS


class Generations:
    """The shared counters of one store folder. Safe across processes and threads."""

    def __init__(self, folder: str) -> None:
        path = os.path.join(folder, FILE_NAME)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        with self._locked():
            if os.fstat(self._fd).st_size < _SIZE:
                os.ftruncate(self._fd, _SIZE)
        self._map = mmap.mmap(self._fd, _SIZE)

    def read(self, url: str) -> tuple[int, int]:
        """The counters of `url`'s slot and of the whole store, as a token to compare later."""
        return (_CELL.unpack_from(self._map, slot_of(url) * _CELL.size)[0],
                _CELL.unpack_from(self._map, _ALL * _CELL.size)[0])

    def bump(self, urls: list[str]) -> None:
        """Mark `urls` changed (call after the change is written)."""
        slots = sorted({slot_of(url) for url in urls})
        if slots:
            with self._locked():
                for slot in slots:
                    self._add(slot)

    def bump_all(self) -> None:
        """Mark every URL changed (after a clear)."""
        with self._locked():
            self._add(_ALL)

    def _add(self, index: int) -> None:
        offset = index * _CELL.size
        value = _CELL.unpack_from(self._map, offset)[0]
        _CELL.pack_into(self._map, offset, (value + 1) & 0xFFFFFFFFFFFFFFFF)

    @contextlib.contextmanager
    def _locked(self):  # type: ignore[no-untyped-def]
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._map.close()
        with contextlib.suppress(OSError):
            os.close(self._fd)


class SubscribedGenerations:
    """The change counters of a Redis store, as this process has heard of them: every proxy
    publishes the URLs it changes (RedisBackend, after each write, in the same round trip) on
    one channel, and a thread here bumps the local counters as messages arrive.

    Bound: a change made on another machine is seen once its message arrives (the network's
    latency, typically milliseconds after the writing command returned). While the subscription
    is down (Redis restarting, a network cut), `read` never returns the same token twice, so no
    copy is used; once it is back, every counter is bumped, so copies taken before are dropped.
    On a Redis Cluster every node forwards each PUBLISH to all the others (one more hop, over
    the cluster bus), so the subscription is on any one primary, and after that node fails it is
    made again on the next (redis_clients.Clients.pubsub); on Sentinel it follows the master.
    """

    def __init__(self, connect: Callable[[], Any], channel: str) -> None:
        self._counts = [0] * (SLOTS + 1)
        self._up = False
        self._stop = threading.Event()
        # A new PubSub after each failure (on a cluster, on another node)
        self._connect = connect
        self._pubsub: Any = None
        self._channel = channel
        self._thread = threading.Thread(target=self._listen, name="caching-proxy redis changes",
                                        daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                if self._pubsub is None:
                    self._pubsub = self._connect()
                if not self._pubsub.subscribed:
                    self._pubsub.subscribe(self._channel)
                message = self._pubsub.get_message(timeout=1.0)
            except Exception:  # Redis gone: nothing is used until it confirms again
                self._down()
                self._stop.wait(0.5)
                continue
            if message is None:
                continue
            if message.get("type") == "subscribe":
                # (Re)subscribed: whatever changed while the subscription was down is unknown.
                self._counts[SLOTS] += 1
                self._up = True
            elif message.get("type") == "message":
                data = message.get("data")
                url = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else ""
                self._counts[SLOTS if url == "*" else slot_of(url)] += 1

    def _down(self) -> None:
        self._up = False
        self._counts[SLOTS] += 1
        pubsub, self._pubsub = self._pubsub, None  # a fresh one next time
        if pubsub is not None:
            with contextlib.suppress(Exception):
                pubsub.close()

    def read(self, url: str) -> object:
        if not self._up:
            return object()  # never equal: no copy is used while not subscribed
        return (self._counts[slot_of(url)], self._counts[SLOTS])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                self._pubsub.close()
