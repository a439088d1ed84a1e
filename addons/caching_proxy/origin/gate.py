"""The mitmproxy addon between the cache and the origin: whether a request the cache forwards
may go now, later or not at all.

Runs in the request hook after the cache (a flow without a response is one going to the
origin: a miss, a revalidation, a pass), before the origin timeouts start:

1. --offline: the stored response, however stale (`detail=offline`), else 504.
2. A pause the origin asked for (429/503 with Retry-After, backoff.py): the stored response if
   it may be served stale (`detail=origin-backoff`), else 503 with the pause's Retry-After.
3. The budget (budget.py): wait for a slot and a time in the schedule; past the queue timeout,
   the stored stale response (`detail=origin-budget`), else 503 with Retry-After.

A flow answered here is the cache's answer (Phase.ANSWERED): nothing is stored from it, and a
fill it led is finished, so requests coalesced behind it go on. A request that went forward
gives its slot back in the response or error hook, exactly once.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader

from caching_proxy.cache.addon import CacheAddon
from caching_proxy.cache.flow_state import FlowState, Phase, state_of
from caching_proxy.cache.serve import own_answer
from caching_proxy.cli import options as opts
from caching_proxy.ops.commands import reverse_origin
from caching_proxy.origin.backoff import Backoff
from caching_proxy.origin.budget import Budget, Limits
from caching_proxy.origin.figures import Latency
from caching_proxy.origin.health import Health, HealthSettings
from caching_proxy.policy.origin_budget import parse_rate

log = logging.getLogger(__name__)

WARM_AGENT = "caching-proxy-warm/"  # ops/warm.py's User-Agent

ADMITTED_KEY = "caching_proxy.origin_slot"  # flow.metadata: the budget ticket the flow holds
# flow.metadata: time.monotonic() the gate let the flow go to the origin
FORWARDED_KEY = "caching_proxy.sent_to_origin"


class OriginGate:
    def __init__(self, cache: CacheAddon) -> None:
        self.cache = cache
        self.budget = Budget()
        self.backoff = Backoff()
        self.health = Health()
        self.health.suspended = lambda: self.offline
        self._running = False
        self.offline = False
        self.answered = {"offline": 0, "origin-down": 0, "origin-backoff": 0, "origin-budget": 0}
        self._health_settings = HealthSettings()
        self.seen_429 = 0
        self.latency = Latency()
        cache.refresher.gate = self  # background refreshes ask the same budget

    def load(self, loader: Loader) -> None:
        opts.declare(loader, self)

    def configure(self, updated: set[str]) -> None:
        if not updated & opts.read_by(self):
            return
        try:
            rate = parse_rate(ctx.options.cache_origin_rate)
            queue_timeout = float(ctx.options.cache_origin_queue_timeout)
        except ValueError as e:
            raise exceptions.OptionsError(str(e)) from e
        if ctx.options.cache_origin_concurrency < 0 or not 0 <= queue_timeout <= 3600:
            raise exceptions.OptionsError(
                "cache_origin_concurrency must not be negative, cache_origin_queue_timeout "
                "must be 0-3600 seconds")
        if ctx.options.cache_origin_burst < 1:
            raise exceptions.OptionsError("cache_origin_burst must be at least 1")
        self.budget.limits = Limits(ctx.options.cache_origin_concurrency, rate,
                                    ctx.options.cache_origin_burst, queue_timeout)
        self.offline = bool(ctx.options.cache_offline)
        self._health_settings = self._checks_from_options()
        if self._running:
            self.health.start(self._health_settings)

    def _checks_from_options(self) -> HealthSettings:
        path = ctx.options.cache_health_check
        if not path:
            return HealthSettings()
        if not path.startswith("/"):
            raise exceptions.OptionsError(
                f"cache_health_check must be a path starting with /, not {path!r}")
        try:
            interval = float(ctx.options.cache_health_interval)
        except ValueError:
            interval = -1.0
        if not 0.1 <= interval <= 3600:
            raise exceptions.OptionsError("cache_health_interval must be 0.1-3600 seconds")
        if ctx.options.cache_health_fails < 1:
            raise exceptions.OptionsError("cache_health_fails must be at least 1")
        origin = reverse_origin()
        if origin is None:
            return HealthSettings()  # not a reverse proxy: nothing to check
        return HealthSettings(origin.rstrip("/") + path, interval, ctx.options.cache_health_fails)

    def running(self) -> None:
        self._running = True
        self.health.start(self._health_settings)

    def done(self) -> None:
        self._running = False
        self.health.stop()

    def switch_offline(self, on: bool | None) -> bool:
        """The admin API's POST /offline (from its thread: one attribute written, which the
        loop reads per request); None leaves it as it is. Whether offline now."""
        if on is not None:
            self.offline = on
            log.warning(f"caching-proxy: {'offline: the origin is not asked' if on else 'online'}"
                        " (admin API)")
        return self.offline

    # -- hooks ---------------------------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        if flow.response is not None or not flow.live:
            return None
        if self.offline:
            self._refuse(flow, "offline", 504, None)
            return None
        if not self.health.up:
            self._refuse(flow, "origin-down", 503, self.health.settings.interval)
            return None
        store = self.cache.shared.store
        if (self.backoff.local_remaining() > 0 or self.backoff.paused_since_answer
                or (store is not None and store.shared)):
            return self._checked(flow)
        if self.budget.limits.bounded:
            return self._admit(flow)
        self._let_go(flow)
        return None

    async def _checked(self, flow: http.HTTPFlow) -> None:
        remaining = await self.backoff.remaining(self.cache.shared.store)
        if remaining > 0:
            self._refuse(flow, "origin-backoff", 503, remaining)
        elif not self.backoff.may_probe(flow.id):
            self._refuse(flow, "origin-backoff", 503, 1.0)  # until the probe's answer
        elif self.budget.limits.bounded:
            await self._admit(flow)
        else:
            self._let_go(flow)

    async def _admit(self, flow: http.HTTPFlow) -> None:
        store = self.cache.shared.store
        # --warm's requests go after every client's (a client that claims to be --warm only
        # puts itself last).
        warming = flow.request.headers.get("user-agent", "").startswith(WARM_AGENT)
        ticket = await (self.budget.admit_low(store) if warming else self.budget.admit(store))
        if ticket is not None:
            flow.metadata[ADMITTED_KEY] = ticket
            self._let_go(flow)
            if not flow.live:  # the client left while it waited
                self._release(flow)
            return
        self._refuse(flow, "origin-budget", 503, max(1.0, self.budget.limits.queue_timeout))

    def responseheaders(self, flow: http.HTTPFlow) -> Awaitable[float | None] | None:
        """The origin's own status, before the cache may answer a 429 with a stale response."""
        response = flow.response
        sent = flow.metadata.get(FORWARDED_KEY)
        if response is None or sent is None:
            return None  # an answer of the proxy's own (mitmproxy emulates this hook for it)
        self.latency.observe(time.monotonic() - sent)
        status = response.status_code
        if status == 429:
            self.seen_429 += 1
        elif status != 503 and self.backoff.settled():
            return None  # an ordinary answer with nothing to end: no coroutine for a miss
        return self.backoff.observe(status, response.headers.get("retry-after"),
                                    self.cache.shared.store)

    def response(self, flow: http.HTTPFlow) -> None:
        self._release(flow)

    # -- background refreshes (cache/refresh.py's OriginAdmission) -----------------------------

    async def admit_background(self) -> str | None:
        """Not offline, no pause, and the budget has room now with nobody waiting: the ticket
        `background_done` is owed, or None."""
        store = self.cache.shared.store
        if self.offline or not self.health.up or await self.backoff.remaining(store) > 0:
            return None
        if not self.budget.limits.bounded:
            return ""
        return await self.budget.admit_background(store)

    async def admit_client(self) -> str | None:
        """For the cache's own fetches on a client's behalf (slices): as a client request."""
        store = self.cache.shared.store
        if self.offline or not self.health.up or await self.backoff.remaining(store) > 0:
            return None
        if not self.budget.limits.bounded:
            return ""
        return await self.budget.admit(store)

    async def background_done(self, ticket: str, response: http.Response | None) -> None:
        if self.budget.limits.bounded:
            self.budget.release(ticket, self.cache.shared.store)
        if response is not None:
            await self.backoff.observe(response.status_code,
                                       response.headers.get("retry-after"),
                                       self.cache.shared.store)

    def error(self, flow: http.HTTPFlow) -> None:
        self.backoff.probe_failed(flow.id)
        self._release(flow)

    # ------------------------------------------------------------------------------------------

    @staticmethod
    def _let_go(flow: http.HTTPFlow) -> None:
        flow.metadata[FORWARDED_KEY] = time.monotonic()  # when it left for the origin

    def _release(self, flow: http.HTTPFlow) -> None:
        ticket = flow.metadata.pop(ADMITTED_KEY, None)
        if ticket is not None:
            self.budget.release(ticket, self.cache.shared.store)

    def _refuse(self, flow: http.HTTPFlow, detail: str, status: int,
                retry_after: float | None) -> None:
        """Answer without the origin: the stored response where it may be served, else
        `status` (with Retry-After when the origin may be asked again later)."""
        self.answered[detail] += 1
        state = state_of(flow)
        if state is not None:
            self.cache.coalescer.finish(state)  # requests waiting on this fill go on
            if self.cache.stale.answer_unreached(flow, state, detail,
                                                 forced=detail == "offline"):
                return
        reason = {
            "offline": "the proxy is offline (--offline) and nothing is stored for it",
            "origin-down": "the origin failed its health checks (--health-check)",
            "origin-backoff": "the origin asked for a pause (429/503 with Retry-After)",
            "origin-budget": "the origin budget (--origin-rate, --origin-concurrency) is spent",
        }[detail]
        response = own_answer(status, f"{status} {reason}\n",
                              fwd=state.fwd if state is not None else "miss", detail=detail,
                              close=False)
        if retry_after is not None:
            response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        flow.response = response
        _answered(state)


def _answered(state: FlowState | None) -> None:
    if state is not None:
        state.phase = Phase.ANSWERED
        state.outcome = "unavailable"
