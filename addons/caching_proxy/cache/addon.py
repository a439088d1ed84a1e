"""The mitmproxy addon: each hook hands the flow to the part that owns that step.

A HIT: `request` -> reuse.Reuse looks the key up (keys.py) in the store (store/guarded.py) and
the policy says fresh -> serve.answer sets flow.response; mitmproxy sends it, no origin.
A MISS: `request` -> reuse prepares the forwarded request (validators, HEAD as GET) and
coalescing leads the fill -> the origin answers -> `responseheaders`/`response` -> fill.Filler
stores it (or freshens on 304, or stale.py answers on failure) and wakes the waiters.
Every decision comes from `caching_proxy.policy`; these modules only carry them out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader

from caching_proxy.cache.coalescing import Coalescer
from caching_proxy.cache.flow_state import state_of
from caching_proxy.cache.lookup import Reuse
from caching_proxy.cache.refresh import Refresher
from caching_proxy.cache.settings import Settings, Shared, size_limit
from caching_proxy.cache.slices import Slicer
from caching_proxy.cache.stale import StaleAnswers
from caching_proxy.cache.storing import Filler
from caching_proxy.cli import option_values
from caching_proxy.cli import options as opts
from caching_proxy.mitm import workers
from caching_proxy.store import Store, open_store, shown
from caching_proxy.store.guarded import STORE_ERRORS, GuardedStore

__all__ = ["STORE_ERRORS", "CacheAddon"]

STORE_FLUSH_INTERVAL = 1.0  # seconds between writes of what the store deferred (Store.flush)
# mitmproxy addons that read or serialize response bodies (views, flow files, mitmweb, dumps).
BODY_READERS = ("view", "save", "webaddon", "dumper", "clientplayback")


class CacheAddon:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.shared = Shared(clock=clock)
        # Waiters are answered by the request side, built after the parts it uses.
        self.coalescer = Coalescer(
            self.shared, lambda flow, state, headers: self.reuse.answer_collapsed(
                flow, state, headers))
        self.stale = StaleAnswers(self.shared)
        self.filler = Filler(self.shared, self.coalescer, self.stale)
        self.refresher = Refresher(self.shared, self.filler.on_response)
        self.slicer = Slicer(self.shared, self.refresher)
        self.reuse = Reuse(self.shared, self.coalescer, self.refresher, self.slicer)
        # Called before the store is closed or replaced: addons that buffer writes flush them.
        self.before_close: list[Callable[[], None]] = []
        self._store_key: tuple[str, int, int, int, float] | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._watched = opts.read_by(self) | {"keep_host_header"}

    @property
    def store(self) -> Store | None:
        """The store itself, for the addons that read or clear it (purge, stats, metrics)."""
        return self.shared.store.store if self.shared.store is not None else None

    # -- configuration -------------------------------------------------------------------------

    def load(self, loader: Loader) -> None:
        opts.declare(loader, self)

    def configure(self, updated: set[str]) -> None:
        if not updated & self._watched:
            return  # nothing of the cache's changed: the config file is not read again
        if ctx.options.keep_host_header:
            # The key names the origin, not the client's Host: forwarding that Host would let
            # one client's Host choose the answer stored for everyone.
            raise exceptions.OptionsError(
                "keep_host_header is not supported: the cache key does not hold the client's "
                "Host, so one client could choose what every client is served")
        try:
            self.shared.settings = Settings.from_options(ctx.options)
            key = (ctx.options.cache_store or ctx.options.cache_dir, size_limit(ctx.options),
                   ctx.options.cache_lru_interval, option_values.memory_size(ctx.options),
                   option_values.store_timeout(ctx.options))
        except ValueError as e:
            raise exceptions.OptionsError(str(e)) from e
        if key == self._store_key:
            return
        if (old := self._detach_store()) is not None:
            old.close()
        try:
            store = open_store(key[0], size_limit=key[1], lru_interval=key[2],
                               memory_size=key[3], timeout=key[4])
        except (*STORE_ERRORS, ValueError) as e:  # ValueError: a bad store URL (under mitmdump)
            raise exceptions.OptionsError(
                f"cannot open cache store {shown(key[0])}: {e}") from e
        # Remote and shared are what the store's backend declares (Store.traits); --workers
        # share any store.
        shared = store.traits.shared or workers.worker_number() is not None
        self.shared.store = GuardedStore(store, shared=shared, timeout=key[4])
        self._store_key = key

    def running(self) -> None:
        # Addons that read or serialize response bodies expect bytes (see serve.sendable).
        self.shared.send_views = not any(ctx.master.addons.get(name) for name in BODY_READERS)
        self._maintenance = asyncio.get_running_loop().create_task(self._flush_periodically())

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(STORE_FLUSH_INTERVAL)
            store = self.shared.store
            if store is not None:
                await asyncio.to_thread(store.flush)

    def done(self) -> Awaitable[None] | None:
        """A coroutine for a network store: its asyncio client is closed on the loop (mitmproxy
        awaits it), where an unclosed cluster client would log an error when collected."""
        if self._maintenance is not None:
            self._maintenance.cancel()
        self.refresher.done()
        store = self._detach_store()
        if store is None:
            return None
        if store.remote:
            return store.close_async()
        store.close()
        return None

    def _detach_store(self) -> GuardedStore | None:
        """The store, no longer the addon's, once what is pending for it (the counters) is
        written; for the caller to close."""
        store = self.shared.store
        if store is not None:
            for flush in self.before_close:
                flush()
        self.shared.store = None
        return store

    # -- hooks ---------------------------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """Sync for hits; a coroutine only to read a large entry or wait for another request's
        fill (mitmproxy awaits what a hook returns)."""
        return self.reuse.on_request(flow)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self.filler.on_headers(flow)

    def response(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        return self.filler.on_response(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        state = state_of(flow)
        if state is not None:
            self.coalescer.finish(state)
            self.stale.on_error(flow)
