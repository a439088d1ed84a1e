"""The origin budget: at most N requests in flight and R per second, the rest waiting in arrival
order for a bounded time (nginx `limit_req` with `burst`/`delay`, and `max_conns`).

Guarantees:
- Concurrency: at most `concurrency` admitted requests of this process are in flight at once;
  waiters are admitted first come, first served (one FIFO queue; a waiter that gives up leaves
  it). It is per process: with --workers N each worker keeps its own (stated in docs).
- Rate: requests are sent at the times a GCRA schedule gives them (policy/origin_budget.py), in
  the order they reserved; a slot for the concurrency is taken first, so a request never waits
  for the rate and then for a slot (which could bunch sends together). Where the store is shared
  (--workers, a Redis store) the schedule is the store's one (Schedules: one atomic step per
  reservation on the store's clock): one rate for every process and instance. If the store fails,
  this process keeps a schedule of its own meanwhile (the limit per process, never none).
- Background work (refresh ahead, stale-while-revalidate refreshes) is admitted only when no
  client waits, a slot is free and the schedule has room now: client misses go first.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

from caching_proxy.policy.origin_budget import reserve
from caching_proxy.store.calls import Reserve
from caching_proxy.store.guarded import GuardedStore

SCHEDULE_KEY = "origin-rate"


@dataclass(frozen=True, slots=True)
class Limits:
    concurrency: int = 0  # 0: no bound
    rate: float = 0.0  # requests per second; 0: no bound
    burst: int = 1
    queue_timeout: float = 10.0

    @property
    def bounded(self) -> bool:
        return self.concurrency > 0 or self.rate > 0


class Budget:
    """Admission to the origin for one process (see the module's guarantees)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._tat = 0.0  # this process's own schedule (no shared store, or it failed)
        self.refused = 0  # requests the budget turned away after waiting the queue timeout
        self.admitted = 0

    @property
    def queued(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    async def admit(self, store: GuardedStore | None) -> bool:
        """Wait for a slot and the request's time in the schedule, within the queue timeout;
        whether it may go now. On True the caller owes one `release`."""
        limits = self.limits
        deadline = time.monotonic() + limits.queue_timeout
        if not await self._slot(deadline):
            self.refused += 1
            return False
        if limits.rate > 0:
            wait = await self._reserve(store, max(0.0, deadline - time.monotonic()))
            if wait is None:
                self.release()
                self.refused += 1
                return False
            if wait > 0:
                try:
                    await asyncio.sleep(wait)
                except asyncio.CancelledError:
                    self.release()
                    raise
        self.admitted += 1
        return True

    async def admit_background(self, store: GuardedStore | None) -> bool:
        """Admission for background work: only if nobody waits, a slot is free and the
        schedule lets it go now; never waits. On True the caller owes one `release`."""
        limits = self.limits
        if self.queued or (limits.concurrency and self.in_flight >= limits.concurrency):
            return False
        self.in_flight += 1
        if limits.rate > 0 and await self._reserve(store, 0.0) is None:
            self.release()
            return False
        self.admitted += 1
        return True

    def release(self) -> None:
        """One admitted request is over: its slot goes to the first waiter still waiting."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on: in_flight stays as it is
                return
        self.in_flight = max(0, self.in_flight - 1)

    async def _slot(self, deadline: float) -> bool:
        bound = self.limits.concurrency
        if not bound or (self.in_flight < bound and not self.queued):
            self.in_flight += 1
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), max(0.0, deadline - time.monotonic()))
            return True
        except TimeoutError:
            if waiter.done():  # handed the slot as the wait ran out: give it on
                self.release()
            waiter.cancel()
            return False
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()
            waiter.cancel()
            raise

    async def _reserve(self, store: GuardedStore | None, max_wait: float) -> float | None:
        limits = self.limits
        if store is not None and store.shared:
            missing = -1.0  # the store failed: this process's own schedule instead
            wait = await store.schedule(
                Reserve(SCHEDULE_KEY, limits.rate, limits.burst, max_wait), missing)
            if wait != missing:
                return wait
        place = reserve(self._tat, time.time(), limits.rate, limits.burst, max_wait)
        self._tat = place.tat
        return place.wait
