"""Request coalescing (nginx proxy_cache_lock, Varnish's waiting list): one origin request per key.

Within a process, the first miss for a key registers a future that later misses wait on. Across
processes (--workers, a shared store), the first one takes the store's fill lock; the others poll
the store for the result. Either kind of waiter gives up after a bound and goes to the origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import time


class Fills:
    """The fills in flight in this process, by key."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[asyncio.Future[None], float]] = {}

    def waiting_on(self, key: str, bound: float) -> asyncio.Future[None] | None:
        """The fill of `key` to wait for, unless none runs (or it was abandoned past `bound`)."""
        found = self._pending.get(key)
        if found is None:
            return None
        future, started = found
        if time.monotonic() - started > bound:
            self.finish(key)  # a leader that never ended (e.g. a lost hook): do not wait on it
            return None
        return future

    def lead(self, key: str) -> None:
        self._pending[key] = (asyncio.get_running_loop().create_future(), time.monotonic())

    def finish(self, key: str) -> None:
        found = self._pending.pop(key, None)
        if found is not None and not found[0].done():
            found[0].set_result(None)


async def wait(future: asyncio.Future[None], bound: float) -> None:
    """Until the fill ends or `bound` seconds pass, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(future), bound)
