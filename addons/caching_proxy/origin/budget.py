"""The origin budget: at most N requests in flight and R per second, the rest waiting in arrival
order for a bounded time (nginx `limit_req` with `burst`/`delay`, and `max_conns`).

Guarantees:
- Concurrency: at most `concurrency` admitted requests of this process are in flight at once;
  waiters are admitted first come, first served (one FIFO queue; a waiter that gives up leaves
  it). Where the store is shared, each admitted request also holds one of the store's
  `concurrency` leased slots (Schedules.take_slot), so the bound is one for every process and
  instance: a process's first waiter asks the store every SLOT_POLL seconds until one is free
  (first come, first served within a process; between processes, whoever asks first after a
  slot is freed). A slot's lease (SLOT_LEASE) frees it if its holder dies. If the store fails,
  the process's own bound holds alone.
- Rate: requests are sent at the times a GCRA schedule gives them (policy/origin_budget.py), in
  the order they reserved; a slot for the concurrency is taken first, so a request never waits
  for the rate and then for a slot (which could bunch sends together). Where the store is shared
  (--workers, a Redis store) the schedule is the store's one (Schedules: one atomic step per
  reservation on the store's clock): one rate for every process and instance. If the store fails,
  this process keeps a schedule of its own meanwhile (the limit per process, never none).
- Background work (refresh ahead, stale-while-revalidate refreshes) is admitted only when no
  client waits, a slot is free and the schedule has room now: client misses go first.
  `--warm`'s requests (admit_low) are admitted the same way, asked again until the queue
  timeout.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from dataclasses import dataclass

from caching_proxy.policy.origin_budget import reserve
from caching_proxy.store.calls import GiveSlot, Reserve, TakeSlot
from caching_proxy.store.guarded import GuardedStore

SCHEDULE_KEY = "origin-rate"
SLOTS_KEY = "origin-slots"
SLOT_POLL = 0.02  # seconds between two asks for a shared slot
LOW_POLL = 0.05  # seconds between two asks of a request that goes after every client
SLOT_LEASE = 300.0  # seconds a slot is held at most (a holder that died frees it then)


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
        self._frees: set[asyncio.Task[None]] = set()  # shared slots being freed

    @property
    def queued(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    async def admit(self, store: GuardedStore | None) -> str | None:
        """Wait for a slot and the request's time in the schedule, within the queue timeout;
        None when refused, else the ticket the caller owes one `release` of."""
        limits = self.limits
        deadline = time.monotonic() + limits.queue_timeout
        if not await self._slot(deadline):
            self.refused += 1
            return None
        ticket = ""
        try:
            if limits.concurrency and store is not None and store.shared:
                found = await self._shared_slot(store, deadline)
                if found is None:
                    self.release()
                    self.refused += 1
                    return None
                ticket = found
            if limits.rate > 0:
                wait = await self._reserve(store, max(0.0, deadline - time.monotonic()))
                if wait is None:
                    self.release(ticket, store)
                    self.refused += 1
                    return None
                if wait > 0:
                    await asyncio.sleep(wait)
        except asyncio.CancelledError:
            self.release(ticket, store)
            raise
        self.admitted += 1
        return ticket

    async def admit_background(self, store: GuardedStore | None) -> str | None:
        """Admission for background work: only if nobody waits, a slot is free and the
        schedule lets it go now; never waits. None, or the ticket `release` is owed."""
        limits = self.limits
        if self.queued or (limits.concurrency and self.in_flight >= limits.concurrency):
            return None
        self.in_flight += 1
        ticket = ""
        if limits.concurrency and store is not None and store.shared:
            found = await self._shared_slot(store, 0.0)
            if found is None:
                self.release()
                return None
            ticket = found
        if limits.rate > 0 and await self._reserve(store, 0.0) is None:
            self.release(ticket, store)
            return None
        self.admitted += 1
        return ticket

    async def admit_low(self, store: GuardedStore | None) -> str | None:
        """Admission after every client: as background work, asked again every LOW_POLL
        seconds until the queue timeout (then None, refused). `--warm`'s requests wait so."""
        deadline = time.monotonic() + self.limits.queue_timeout
        while True:
            ticket = await self.admit_background(store)
            if ticket is not None:
                return ticket
            if time.monotonic() + LOW_POLL > deadline:
                self.refused += 1
                return None
            await asyncio.sleep(LOW_POLL)

    def release(self, ticket: str = "", store: GuardedStore | None = None) -> None:
        """One admitted request is over: its shared slot is freed (not waited for), and its
        own slot goes to the first waiter still waiting."""
        if ticket and store is not None:
            task = asyncio.get_running_loop().create_task(
                store.call(GiveSlot(SLOTS_KEY, ticket), None))
            self._frees.add(task)
            task.add_done_callback(self._frees.discard)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on: in_flight stays as it is
                return
        self.in_flight = max(0, self.in_flight - 1)

    async def _shared_slot(self, store: GuardedStore, deadline: float) -> str | None:
        """A ticket holding one of the store's slots, asked for until `deadline`; "" when the
        store failed (this process's own bound then holds alone); None at the deadline."""
        ticket = secrets.token_hex(8)
        while True:
            taken = await store.call(
                TakeSlot(SLOTS_KEY, ticket, self.limits.concurrency, SLOT_LEASE), None)
            if taken is None:
                return ""
            if taken:
                return ticket
            if time.monotonic() + SLOT_POLL > deadline:
                return None
            await asyncio.sleep(SLOT_POLL)

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
            wait = await store.call(
                Reserve(SCHEDULE_KEY, limits.rate, limits.burst, max_wait), missing)
            if wait != missing:
                return wait
        place = reserve(self._tat, time.time(), limits.rate, limits.burst, max_wait)
        self._tat = place.tat
        return place.wait
