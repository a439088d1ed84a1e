"""How the Redis backend (store/redis/store.py) reaches Redis: its clients (store/redis/clients.py),
every failure turned into StoreUnavailable with a second of immediate answers after it, and the
requests of one call (store/redis/requests.py) sent on the sync client or on the asyncio one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, TypeVar, cast

from caching_proxy.store.redis.clients import Clients
from caching_proxy.store.redis.requests import Ops, Pipeline, Request
from caching_proxy.store.redis.urls import parse_store_url, redact_store_url

OUTAGE_BACKOFF = 1.0  # seconds of immediate pass-through after a failure
T = TypeVar("T")


class StoreUnavailable(OSError):
    """The Redis server cannot be reached or failed."""


class Sender:
    """The clients of one store URL, and the sending of requests on them."""

    def __init__(self, url: str, timeout: float) -> None:
        self.location = redact_store_url(url)  # as shown: in StoreUnavailable, so warnings
        self._clients = Clients(parse_store_url(url), timeout)
        self._down_until = 0.0

    # -- sending -------------------------------------------------------------------------------

    def _call(self, fn: Callable[[Any], T], background: bool = False) -> T:
        """`fn(client)`, every Redis failure turned into StoreUnavailable."""
        with self._outage(self._clients.failed, background):
            return fn(self._clients.client())

    async def _call_async(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """`_call` with the asyncio client: on the event loop, each socket operation bounded by
        the client's timeout. A cancellation (the caller's timeout) is no Redis failure: redis-py
        drops the connection it was on, and the outage state is left as it was."""
        with self._outage(self._clients.async_failed):
            return await fn(self._clients.async_client())

    @contextlib.contextmanager
    def _outage(self, failed: Callable[[Exception], None],
                background: bool = False) -> Iterator[None]:
        """Around one call: at once "unavailable" for OUTAGE_BACKOFF after a failure, except a
        `background` one's (the counters' key may be on the one cluster master that hangs); a
        Redis error becomes StoreUnavailable (`failed(error)` lets the client be made anew)."""
        if self._down_until and time.monotonic() < self._down_until:
            raise StoreUnavailable(f"Redis at {self.location} is unavailable")
        try:
            yield
        except self._clients.errors as e:
            failed(e)
            if not background:
                self._down_until = time.monotonic() + OUTAGE_BACKOFF
            raise StoreUnavailable(f"Redis at {self.location}: {e}") from e
        self._down_until = 0.0

    def _send(self, ops: Ops[T]) -> T:
        """What `ops` return, each request sent on the sync client."""
        answer: Any = None
        while True:
            try:
                request: Request = ops.send(answer)
            except StopIteration as done:
                return cast(T, done.value)
            answer = self._call(request.send)

    async def _send_async(self, ops: Ops[T]) -> T:
        """`_send` on the asyncio client, on the event loop."""
        answer: Any = None
        while True:
            try:
                request: Request = ops.send(answer)
            except StopIteration as done:
                return cast(T, done.value)
            answer = await self._call_async(request.send_async)

    def _pipelined(self, commands: Iterable[tuple[Any, ...]]) -> list[Any]:
        """The answers of `commands` in one pipeline (requests.Pipeline), on the sync client."""
        return self._call(Pipeline(list(commands)).send)
