"""Change counters that tell an in-process copy of a stored value (store/memory/tier.py) whether the
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

With Redis the counters are per process (SubscribedGenerations): every write PUBLISHes its URL,
and the process subscribes on every node that runs writes. On a Redis Cluster that is each
primary (one connection and one thread each): a change is heard from the master that made it.
One subscription would hear the other masters' changes over the cluster bus, which Redis 7.0
writes without TCP_NODELAY: measured 14 to 21 ms late at times, where straight from the master
it is about a millisecond at most (tests/e2e/test_redis_cluster.py, README "The memory tier").
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

from caching_proxy.store.redis.keys import announced

SLOTS = 4096
FILE_NAME = "generations"
_CELL = struct.Struct("<Q")
_SIZE = (SLOTS + 1) * _CELL.size
_ALL = SLOTS  # the whole-store counter's index
# SubscribedGenerations: seconds between reads of the nodes to listen on; between retries after
# a failure; a listener's wait for a message (how long close may take).
REFRESH, RETRY, WAIT = 2.0, 0.5, 1.0
# How many announcement IDs a subscriber remembers to count each change once: a cluster's
# forwarded copies come within ~40 ms (README); one forgotten sooner costs a store read, no more.
HEARD_IDS = 4096


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
    one channel, and this process subscribes on every node that runs writes (`nodes()`: each
    primary of a cluster, else the one server or Sentinel's master), bumping its counters as
    messages arrive.

    Bound: a change is seen once its message arrives from the node that ran the write, the
    network's latency after the command returned (measured on one machine, 51 purges over a
    3-master cluster: about 1 ms at most, tests/e2e/test_redis_cluster.py). While the node set is
    unknown or any of its subscriptions is down or not yet confirmed, `read` never returns the
    same token twice, so no copy is used; each time they are all up again, every counter is
    bumped, so copies taken before are dropped. The node set is read again every REFRESH seconds
    and RETRY seconds after a subscription fails, so after a failover the subscriptions follow the
    new primaries; a primary promoted in between is heard through the other nodes meanwhile (a
    cluster forwards every PUBLISH to every node over its bus, up to ~40 ms late: README).

    So on a cluster each change arrives once per primary. It is counted once, by its
    announcement's ID (store/redis/keys.py): counted again when a forwarded copy came in, it
    dropped a copy read just after the write (seen in tests/e2e/test_redis_cluster.py's hang test:
    two of the four copies it relied on were gone).
    """

    def __init__(self, nodes: Callable[[], list[str]], connect: Callable[[str], Any],
                 channel: str) -> None:
        self._counts = [0] * (SLOTS + 1)
        self._heard_ids: dict[str, None] = {}  # the last HEARD_IDS counted, oldest first
        self._lock = threading.Lock()  # bumps come from every listener's thread
        self._up = False
        self._nodes, self.connect, self.channel = nodes, connect, channel
        self._listeners: dict[str, _Listener] = {}
        self._confirmed: set[str] = set()
        self._stop = threading.Event()
        self._recheck = threading.Event()  # a subscription failed: read the nodes again soon
        self._thread = threading.Thread(target=self._follow, name="caching-proxy redis nodes",
                                        daemon=True)
        self._thread.start()

    @property
    def listening(self) -> list[str]:
        """The nodes whose subscription is confirmed ("" the store's own server)."""
        with self._lock:
            return sorted(self._confirmed)

    def _follow(self) -> None:
        while not self._stop.is_set():
            self._recheck.clear()
            try:
                wanted = set(self._nodes())
            except Exception:  # no node answered: keep the listeners, whose failures say so
                wanted = set(self._listeners)
                self._recheck.set()
            self._listen_on(wanted)
            self._stop.wait(RETRY)  # at most one read of the nodes per RETRY
            self._recheck.wait(REFRESH - RETRY)

    def _listen_on(self, wanted: set[str]) -> None:
        with self._lock:
            if self._stop.is_set():  # closed while the nodes were read
                return
            gone = [self._listeners.pop(node) for node in set(self._listeners) - wanted]
            for node in wanted - set(self._listeners):
                self._listeners[node] = _Listener(self, node)
            self._confirmed &= wanted
            self._set_up()
        for listener in gone:
            listener.stopped.set()

    def _set_up(self) -> None:
        """Up exactly while every wanted node's subscription is confirmed (under the lock)."""
        up = bool(self._listeners) and self._confirmed == set(self._listeners)
        if up != self._up:
            # Either way whatever changed unheard is unknown: the bump comes before `_up`
            # turns true, so no token read before matches one read after.
            self._counts[SLOTS] += 1
            self._up = up

    def heard(self, listener: _Listener, message: dict[str, Any]) -> None:
        kind = message.get("type")
        with self._lock:
            if kind == "subscribe" and self._listeners.get(listener.node) is listener:
                self._confirmed.add(listener.node)
                self._set_up()
            elif kind == "message":
                data = message.get("data")
                text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else ""
                ident, url = announced(text)
                if ident is not None:
                    if ident in self._heard_ids:
                        return  # the same change again, forwarded by another node
                    self._heard_ids[ident] = None
                    if len(self._heard_ids) > HEARD_IDS:
                        del self._heard_ids[next(iter(self._heard_ids))]
                self._counts[SLOTS if url == "*" else slot_of(url)] += 1

    def lost(self, listener: _Listener) -> None:
        with self._lock:
            if self._listeners.get(listener.node) is listener:
                self._confirmed.discard(listener.node)
                self._set_up()
        self._recheck.set()  # after a failover the node may no longer be a primary

    def read(self, url: str) -> object:
        if not self._up:
            return object()  # never equal: no copy is used while not subscribed everywhere
        return (self._counts[slot_of(url)], self._counts[SLOTS])

    def close(self) -> None:
        self._stop.set()
        self._recheck.set()
        self._thread.join(2)
        with self._lock:
            listeners, self._listeners = list(self._listeners.values()), {}
            self._set_up()
        # Not joined: each ends within WAIT, once its get_message returns (daemon threads), and
        # a proxy's shutdown need not wait for that.
        for listener in listeners:
            listener.stopped.set()


class _Listener:
    """One node's subscription, on a thread of its own: redis-py waits for a message on one
    connection at a time (get_message), and polling several instead would cost CPU and delay."""

    def __init__(self, owner: SubscribedGenerations, node: str) -> None:
        self.node = node
        self.stopped = threading.Event()
        self._owner = owner
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"caching-proxy redis changes {node}".rstrip())
        self.thread.start()

    def _run(self) -> None:
        owner = self._owner
        pubsub: Any = None
        while not self.stopped.is_set():
            try:
                if pubsub is None:
                    pubsub = owner.connect(self.node)
                    pubsub.subscribe(owner.channel)
                message = pubsub.get_message(timeout=WAIT)
            except Exception:  # the node gone: nothing is used until it confirms again
                owner.lost(self)
                _closed(pubsub)
                pubsub = None  # a fresh one next time
                self.stopped.wait(RETRY)
                continue
            if message is not None:
                owner.heard(self, message)
        _closed(pubsub)


def _closed(pubsub: Any) -> None:
    if pubsub is not None:
        with contextlib.suppress(Exception):
            pubsub.close()
