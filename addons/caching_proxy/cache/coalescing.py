"""Request coalescing (nginx proxy_cache_lock, Varnish's waiting list): one origin request per key.

Within a process, the first miss for a key leads its fill and later misses wait on it. Across
processes (--workers, Redis), the leader also takes the store's lock; the others poll the store
for the result. Either kind of waiter gives up after `--lock-timeout` and goes to the origin.
Leadership carries an owner token both here and in the store, so a leader that finishes late
(after its fill was given up and another took it) wakes and releases nobody else's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from mitmproxy import http

from caching_proxy.cache.flow_state import Fill, FlowState
from caching_proxy.cache.settings import Shared

# (flow, state, request headers) -> whether the flow was answered from the store
AnswerCollapsed = Callable[[http.HTTPFlow, FlowState, list[tuple[str, str]]], Awaitable[bool]]
POLL_INTERVAL = 0.05  # seconds between looks at the store while another process fills


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
            self.finish(key, future)  # a leader that never ended (a lost hook): do not wait on it
            return None
        return future

    def lead(self, key: str) -> asyncio.Future[None]:
        """Lead the fill of `key`; the future is the leader's token for `finish`."""
        future = asyncio.get_running_loop().create_future()
        self._pending[key] = (future, time.monotonic())
        return future

    def finish(self, key: str, token: object) -> None:
        """End the fill `token` leads and wake its waiters; nothing if another leads now."""
        found = self._pending.get(key)
        if found is not None and found[0] is token:
            del self._pending[key]
        if isinstance(token, asyncio.Future) and not token.done():
            token.set_result(None)


async def wait(future: asyncio.Future[None], bound: float) -> None:
    """Until the fill ends or `bound` seconds pass, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(future), bound)


def held_lock(state: FlowState) -> tuple[str, str] | None:
    """The store lock the flow's fill holds, (name, token), for the put that ends the fill to
    release with its write (Store.put); None when it holds none."""
    fill = state.fill
    return (fill.key, fill.store_token) if fill is not None and fill.store_token else None


def lock_released(state: FlowState) -> None:
    """A put released the fill's store lock: `finish` has none left to release."""
    if state.fill is not None:
        state.fill.store_token = None


class Coalescer:
    def __init__(self, shared: Shared, answer_collapsed: AnswerCollapsed) -> None:
        self.shared = shared
        self.fills = Fills()
        self._answer_collapsed = answer_collapsed

    def begin(self, flow: http.HTTPFlow, state: FlowState,
              headers: list[tuple[str, str]]) -> Awaitable[None] | None:
        """Lead the fill of the flow's key, or wait for the one in flight (in this process or
        another); None when the flow goes to the origin at once."""
        bound = self.shared.settings.lock_timeout
        store = self.shared.store
        if bound <= 0 or store is None or state.directives.no_cache:
            return None  # (a no-cache request could not use another request's answer)
        pending = self.fills.waiting_on(state.key, bound)
        if pending is not None:
            return self._wait_local(flow, state, headers, pending, bound)
        store_token = None
        if store.shared:
            if store.remote:
                return self._lead_over_network(flow, state, headers, bound)
            store_token = store.acquire(state.key, bound)
            if store_token is None:
                return self._wait_other(flow, state, headers, bound)
        state.fill = Fill(state.key, self.fills.lead(state.key), store_token)
        return None

    async def _lead_over_network(self, flow: http.HTTPFlow, state: FlowState,
                                 headers: list[tuple[str, str]], bound: float) -> None:
        """`begin` with the store's lock awaited (a network store: its asyncio client)."""
        store = self.shared.store
        if store is None:
            return
        token = await store.acquire_async(state.key, bound)
        if token is None:
            await self._wait_other(flow, state, headers, bound)
            return
        pending = self.fills.waiting_on(state.key, bound)
        if pending is not None:  # another request of this process began leading meanwhile
            store.release(state.key, token)
            await self._wait_local(flow, state, headers, pending, bound)
            return
        state.fill = Fill(state.key, self.fills.lead(state.key), token)

    def finish(self, state: FlowState) -> None:
        """The flow's fill is over (stored, not storable, or failed): wake its waiters."""
        fill, state.fill = state.fill, None
        if fill is None:
            return
        self.fills.finish(fill.key, fill.token)
        if fill.store_token and self.shared.store is not None:
            self.shared.store.release(fill.key, fill.store_token)

    async def _wait_local(self, flow: http.HTTPFlow, state: FlowState,
                          headers: list[tuple[str, str]], pending: asyncio.Future[None],
                          bound: float) -> None:
        await wait(pending, bound)
        await self._answer_collapsed(flow, state, headers)

    async def _wait_other(self, flow: http.HTTPFlow, state: FlowState,
                          headers: list[tuple[str, str]], bound: float) -> None:
        """Another process fills: poll the store until its answer is there or the lock goes."""
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            await asyncio.sleep(POLL_INTERVAL)
            if await self._answer_collapsed(flow, state, headers):
                return
            store = self.shared.store
            if store is None:
                return
            token = await store.acquire_async(state.key, bound)
            if token is not None:
                # The other fill ended without a usable answer: this request fills instead.
                if await self._answer_collapsed(flow, state, headers):
                    store.release(state.key, token)
                    return
                state.fill = Fill(state.key, self.fills.lead(state.key), token)
                return
