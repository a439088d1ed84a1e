"""Origin timeouts: connect, first byte, whole response (nginx proxy_connect_timeout,
proxy_read_timeout; Varnish connect_timeout, first_byte_timeout).

mitmproxy has no such timeouts (only a 10-minute idle timeout per client connection), so a hung
origin would hang the client. One timer per forwarded request checks the phase it is in; on
expiry the origin connections of that client connection are cancelled, which makes mitmproxy fail
the flow and run the `error` hook: the cache answers stale where allowed, else this addon
answers 504 Gateway Timeout. A response already being streamed is cut, as nginx does.
"""

from __future__ import annotations

import asyncio
import logging
import time

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader

from caching_proxy.cache.flow_state import TIMEOUT_KEY
from caching_proxy.cache.serve import own_answer
from caching_proxy.cli import options as opts
from caching_proxy.mitm import error_page, internals

log = logging.getLogger(__name__)

# flow.metadata key, set when this addon ended the flow: "connect", "first byte" or "response".
CONNECT_POLL = 0.2


class OriginTimeouts:
    def __init__(self) -> None:
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def load(self, loader: Loader) -> None:
        opts.declare(loader, self)

    def configure(self, updated: set[str]) -> None:
        for name in opts.read_by(self) & updated:
            if getattr(ctx.options, name) < 0:
                raise exceptions.OptionsError(f"{name} must not be negative")

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or not flow.live:
            return
        if not (ctx.options.cache_connect_timeout or ctx.options.cache_first_byte_timeout
                or ctx.options.cache_response_timeout):
            return
        self._check(flow, time.time())

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if self._timers and flow.id in self._timers:
            self._stop(flow)
            if ctx.options.cache_response_timeout:
                self._check(flow, flow.request.timestamp_end or time.time(), body=True)

    def response(self, flow: http.HTTPFlow) -> None:
        if self._timers:
            self._stop(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._stop(flow)
        phase = flow.metadata.get(TIMEOUT_KEY)
        # A response still held (its head not sent) gives way to the 504; a streamed one is cut.
        if phase is None or error_page.has_answer(flow) or (
            flow.response is not None and flow.response.stream
        ):
            return
        response = own_answer(
            504, f"504 Gateway Timeout: the origin did not answer in time ({phase})\n",
            fwd="miss", detail="origin-timeout")
        error_page.answer_instead(flow, response)

    def done(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    # ------------------------------------------------------------------------------------------

    def _stop(self, flow: http.HTTPFlow) -> None:
        timer = self._timers.pop(flow.id, None)
        if timer is not None:
            timer.cancel()

    def _check(self, flow: http.HTTPFlow, started: float, body: bool = False) -> None:
        """Abort the exchange if its current phase is over time, else check again when the
        phase would end."""
        self._timers.pop(flow.id, None)
        if not flow.live:
            return
        now = time.time()
        deadlines: list[tuple[float, str]] = []
        opts = ctx.options
        if opts.cache_response_timeout:
            deadlines.append((started + opts.cache_response_timeout, "response"))
        if not body:
            server = flow.server_conn
            # Before mitmproxy has a connection for the flow, server_conn is not connected.
            if not server.connected:
                if opts.cache_connect_timeout:
                    deadlines.append((started + opts.cache_connect_timeout, "connect"))
                # Look again soon: once connected, the first-byte phase starts.
                deadlines.append((now + CONNECT_POLL, ""))
            elif opts.cache_first_byte_timeout:
                since = max(started, server.timestamp_tcp_setup or started)
                deadlines.append((since + opts.cache_first_byte_timeout, "first byte"))
        if not deadlines:
            return
        deadline, phase = min(deadlines)
        if now >= deadline and phase:
            self._abort(flow, phase)
            return
        loop = asyncio.get_running_loop()
        self._timers[flow.id] = loop.call_later(
            max(0.0, deadline - now), self._check, flow, started, body
        )

    def _abort(self, flow: http.HTTPFlow, phase: str) -> None:
        log.warning(f"caching-proxy: origin {phase} timeout for {flow.request.url}")
        flow.metadata[TIMEOUT_KEY] = phase
        internals.cancel_origin_connections(ctx.master, flow.client_conn.id,
                                            f"origin {phase} timeout")
