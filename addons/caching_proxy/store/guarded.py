"""The store as mitmproxy's hooks use it: it never raises into a hook, and never makes the event
loop wait on a large value.

When the medium fails (disk gone or full, Redis down) every call answers "nothing stored" or
"not stored", so the proxy passes requests through to the origin; the failure is logged once,
and once more when reads work again.

What kind of store it is comes from the traits its backend declares (store/backend.py's
Traits, `Store.traits`), never from its location:

- A local store (not `remote`: diskcache): lookups and writes run on the event loop (a local
  step), and values over OFF_LOOP_BYTES are read and written in a worker thread.
- A network store (`remote`: Redis): every lookup the memory tier does not answer, every
  response write, the fill and refresh locks and a rule's `min_uses` count go through the
  backend's asynchronous side on the loop (Store.lookup_async, put_async, acquire_async,
  count_use_async: redis-py's asyncio client, no thread), each waited for `timeout` seconds at
  most; then the request passes through (nothing stored, not stored, no lock, a count of 0).
  One timeout is no outage (store/outage.py): only timeouts in a row that the event loop's own
  lateness does not explain, or a probe that gets no answer, declare the store down; then one
  warning is logged, and for a second every other call answers "unavailable" at once. A lock's
  release is not waited for.

The wrapped store's own guarantees (what is atomic, what is shared across processes) are
unchanged; see store/layout.py. A write cut short by the timeout leaves what a process that
died mid-write would (store/layout.py is written for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from caching_proxy.policy import Headers
from caching_proxy.store import STORE_ERRORS, Store
from caching_proxy.store.backend import EntryTooLarge
from caching_proxy.store.calls import Call, HeldOff
from caching_proxy.store.entry import Entry
from caching_proxy.store.memory.tier import MEMORY_ONLY
from caching_proxy.store.outage import Evidence, probe_bound
from caching_proxy.store.steps import perform_async

log = logging.getLogger(__name__)

# Entries larger than this are read and written in a worker thread, so that other connections
# are not held up by the disk (measured: a 50 MB read or write on the loop stalls every client).
OFF_LOOP_BYTES = 1 << 20
PROBE_KEY = "store-probe"  # read by the probe after a timeout (a pause nobody sets)
T = TypeVar("T")
F = TypeVar("F")  # what a call answers when the store failed

__all__ = ["OFF_LOOP_BYTES", "STORE_ERRORS", "EntryTooLarge", "GuardedStore"]


class GuardedStore:
    def __init__(self, store: Store, shared: bool | None = None, remote: bool | None = None,
                 timeout: float = 0.25) -> None:
        """`shared` and `remote` default to the store's traits (`shared`: the caller adds
        --workers)."""
        self.store = store
        # A network store: reached on the loop through its asynchronous side (see the module).
        self.remote = store.traits.remote if remote is None else remote
        self.timeout = timeout
        self._silent_until = 0.0  # after a store timeout: no call waits on the store until then
        # When timeouts are an outage, and when only the loop's lateness (store/outage.py).
        self.evidence = Evidence(timeout)
        self._probes: set[asyncio.Task[None]] = set()
        # Whether other processes use the store too (--workers, a shared store): only then do
        # fills and refreshes take the store's lock (for a lone proxy it is two writes per miss
        # for nothing; measured: miss throughput -20%).
        self.shared = store.traits.shared if shared is None else shared
        self._warned = False
        self._reads_failed = False
        self._releases: set[asyncio.Task[bool]] = set()  # kept until done (asyncio holds weakly)

    # -- reads ---------------------------------------------------------------------------------

    def lookup(self, key: str, headers: Headers) -> Entry | None:
        """The stored response for the request, read on the event loop; raises EntryTooLarge
        for a value the caller must read with `lookup_off_loop` (any that is not in memory, for a
        network store)."""
        return self._read(key, headers, MEMORY_ONLY if self.remote else OFF_LOOP_BYTES)

    def lookup_first(self, key: str, header_sets: Sequence[Headers]) -> tuple[int, Entry] | None:
        """Store.lookup_first, read on the event loop: what `lookup` would raise EntryTooLarge
        for is passed over; None when the medium failed."""
        try:
            return self.store.lookup_first(
                key, header_sets, MEMORY_ONLY if self.remote else OFF_LOOP_BYTES)
        except Exception as e:
            self._read_failed(key, e)
            return None

    async def lookup_off_loop(self, key: str, headers: Headers) -> Entry | None:
        """The stored response, not read on the loop's own time: diskcache in a worker thread
        (a large value); a network store with its asyncio client, within the store timeout."""
        if not self.remote:
            return await asyncio.to_thread(self._read, key, headers, None)
        return await self._bounded(None, self._read_async, key, headers)

    def _timed_out(self, late: float) -> None:
        """A call got no answer in time, its timer `late` seconds behind (store/outage.py
        decides what that says)."""
        verdict = self.evidence.timed_out(late, time.monotonic())
        if verdict == "down":
            self._declared_down()
        elif verdict == "probe":
            self._silent_until = self.evidence.silent_until  # until the probe comes back
            task = asyncio.get_running_loop().create_task(self._probe())
            self._probes.add(task)
            task.add_done_callback(self._probes.discard)

    async def _probe(self) -> None:
        """One cheap call with a bound a busy loop cannot miss: its answer settles whether the
        store is down."""
        try:
            async with asyncio.timeout(probe_bound(self.timeout)):
                await self.store.schedule_async(HeldOff(PROBE_KEY))
            answered = True
        except (TimeoutError, *STORE_ERRORS):
            answered = False
        self.evidence.probed(answered, time.monotonic())
        if answered:
            self._silent_until = self.evidence.silent_until
        else:
            self._declared_down()

    def _declared_down(self) -> None:
        self.warn(TimeoutError(f"no answer within the store timeout ({self.timeout} s)"))
        self._silent_until = self.evidence.silent_until
        # As a failed read: the next read that works says so, and a later outage warns again
        # (the call was cancelled, so no socket error of its own will).
        self._reads_failed = True

    def outage_counts(self) -> dict[str, int]:
        """Store timeouts and milliseconds down since the last call, for the counters."""
        return self.evidence.counts(time.monotonic())

    async def lookup_any(self, key: str, headers: Headers) -> Entry | None:
        """`lookup`, then `lookup_off_loop` for what is not read on the loop (a large value on
        disk; for a network store, what its memory tier does not hold)."""
        try:
            return self.lookup(key, headers)
        except EntryTooLarge:
            return await self.lookup_off_loop(key, headers)

    def _read(self, key: str, headers: Headers, max_inline: int | None) -> Entry | None:
        try:
            found = self.store.lookup(key, headers, max_inline)
        except EntryTooLarge:
            raise
        except Exception as e:
            self._read_failed(key, e)
            return None
        # (A network store's reads here are the memory tier's alone: they say nothing of it.)
        if self._reads_failed and not self.remote:
            self._reads_resumed()
        return found

    async def _read_async(self, key: str, headers: Headers) -> Entry | None:
        """`_read` through the store's asynchronous lookup (bounded by the caller)."""
        try:
            found = await self.store.lookup_async(key, headers)
        except Exception as e:
            self._read_failed(key, e)
            return None
        if self._reads_failed:
            self._reads_resumed()
        return found

    def _read_failed(self, key: str, e: Exception) -> None:
        if isinstance(e, STORE_ERRORS):
            self._reads_failed = True
            self.warn(e)
        else:  # a record the store could not decode and did not drop
            log.warning(f"caching-proxy: ignoring unreadable cache record for {key}: {e!r}")

    def _reads_resumed(self) -> None:
        # Said once when reads work again (Redis back); a store that still reads but no longer
        # writes (folder removed, disk full) stays warned once and quiet.
        self._reads_failed = self._warned = False
        log.warning("caching-proxy: cache store available again, caching resumed")

    def has_url(self, key: str) -> bool:
        return self.value(False, self.store.has_url, key)

    # -- writes --------------------------------------------------------------------------------

    def put(self, entry: Entry, expire: float, lock: tuple[str, str] | None = None) -> bool:
        """Whether `entry` was stored, on the event loop (`put_off_loop` for large entries).
        With `lock` (name, token), True also means the lock was released (Store.put); on False
        it may still be held."""
        return self.done(self.store.put, entry, expire, lock)

    def put_inline(self, entry: Entry) -> bool:
        """Whether `entry` may be written with `put`, synchronously on the event loop (else:
        `put_off_loop`)."""
        return not self.remote and len(entry.body) <= OFF_LOOP_BYTES

    async def put_off_loop(self, entry: Entry, expire: float,
                           lock: tuple[str, str] | None = None) -> bool:
        """Whether `entry` was stored (and `lock` released, as `put`), not written on the loop's
        own time: diskcache in a worker thread (over OFF_LOOP_BYTES); a network store with its
        asyncio client, within the store timeout (then: not stored)."""
        if not self.remote:
            return await asyncio.to_thread(self.put, entry, expire, lock)
        return await self._bounded(False, self._put_async, entry, expire, lock)

    async def _put_async(self, entry: Entry, expire: float,
                         lock: tuple[str, str] | None) -> bool:
        await self.store.put_async(entry, expire, lock)
        return True

    def delete(self, key: str) -> int:
        """Remove every stored response of `key` (all Vary variants); how many."""
        return self.value(0, self.store.delete_url, key)

    def acquire(self, name: str, ttl: float) -> str | None:
        """The store's lock on `name` (see Store.acquire): its owner token, None when another
        holds it, "" when the store failed (nobody can coordinate; the caller goes ahead)."""
        failed: str | None = ""
        return self.value(failed, self.store.acquire, name, ttl)

    async def acquire_async(self, name: str, ttl: float) -> str | None:
        """`acquire`, for a network store with its asyncio client, waited for the store timeout
        at most: then "", as when the store failed. (A lock taken after that is nobody's, and
        lapses after `ttl`: other processes wait for it that long at most.)"""
        if not self.remote:
            return self.acquire(name, ttl)
        failed: str | None = ""
        return await self._bounded(failed, self.store.acquire_async, name, ttl)

    async def _bounded(self, failed: T, fn: Callable[..., Awaitable[T]], *args: object) -> T:
        """`await fn(*args)` within the store timeout, or `failed` when the medium failed, timed
        out (then silent for a second) or is silent."""
        if self._silent_until and time.monotonic() < self._silent_until:
            return failed
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        try:
            # In this task (wait_for would make one more per call, on Python 3.11).
            async with asyncio.timeout(self.timeout):
                result = await fn(*args)
        except TimeoutError:
            self._timed_out(loop.time() - deadline)
        except STORE_ERRORS as e:
            self.warn(e)
        else:
            evidence = self.evidence
            if evidence.in_a_row or evidence.down_since is not None:
                evidence.answered(time.monotonic())
            return result
        return failed

    def count_use(self, key: str, window: float) -> int:
        """Store.count_use; 0 when the store failed (nothing is stored then anyway)."""
        return self.value(0, self.store.count_use, key, window)

    async def count_use_async(self, key: str, window: float) -> int:
        """`count_use`, for a network store with its asyncio client, waited for the store
        timeout at most: then 0, as when the store failed (the answer is not stored). A count
        cut short by the timeout may still have been added (one use too many, never one
        lost). For a local store: `count_use` itself, a short local transaction."""
        if not self.remote:
            return self.count_use(key, window)
        return await self._bounded(0, self.store.count_use_async, key, window)

    async def call(self, call: Call[T], failed: F, large: bool = False) -> T | F:
        """One backend call (the origin budget's Schedules, store/slices.py's): for a network
        store through its asyncio client, waited for the store timeout at most; for a local
        one at once, or in a worker thread when it moves a `large` value. `failed` when the
        medium failed or timed out."""
        if self.remote:
            return await self._bounded(failed, perform_async, self.store.backend, call)
        if self._silent_until and time.monotonic() < self._silent_until:
            return failed
        try:
            if large:
                return await asyncio.to_thread(call.run, self.store.backend)
            return call.run(self.store.backend)
        except STORE_ERRORS as e:
            self.warn(e)
            return failed

    def release(self, name: str, token: str) -> None:
        """Give the lock back; for a network store with its asyncio client, not waited for
        (nobody needs the answer, and it must not hold up the hook)."""
        if not token:
            return
        if self.remote:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop (one-shot commands): on this thread
                pass
            else:
                task = loop.create_task(self._bounded(False, self.store.release_async, name,
                                                      token))
                self._releases.add(task)
                task.add_done_callback(self._releases.discard)
                return
        self.done(self.store.release, name, token)

    def flush(self) -> None:
        self.done(self.store.flush)

    def close(self) -> None:
        self.done(self.store.close)

    async def close_async(self) -> None:
        """`close` on the event loop (Store.close_async), bounded by the store timeout for a
        network store; if that fails or times out, the synchronous close still runs."""
        if self.remote:
            # Best effort at shutdown (redis-py's own errors too): what is left, `close` closes.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeout):
                    await self.store.close_async()
                return
        self.close()

    # ------------------------------------------------------------------------------------------

    def done(self, fn: Callable[..., object], *args: object) -> bool:
        """Whether `fn(*args)` ran; False when the medium failed (warned once)."""
        if self._silent_until and time.monotonic() < self._silent_until:
            return False
        try:
            fn(*args)
        except STORE_ERRORS as e:
            self.warn(e)
            return False
        return True

    def value(self, failed: T, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)`, or `failed` when the medium failed (warned once)."""
        if self._silent_until and time.monotonic() < self._silent_until:
            return failed
        try:
            return fn(*args)
        except STORE_ERRORS as e:
            self.warn(e)
            return failed

    def warn(self, e: Exception) -> None:
        # The proxy goes on as a pass-through; one warning, not one per request.
        if not self._warned:
            self._warned = True
            log.warning(f"caching-proxy: cache store unavailable, passing requests through: {e}")
