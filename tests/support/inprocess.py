"""The cache addon in-process: mitmproxy's own test helpers (`taddons`, `tutils`), a real
diskcache folder, a real counting origin (tests/support/origin.py) and a clock the test moves.

`Harness.get(path)` plays what mitmproxy does with a flow: the request hooks of the addons, then,
if none answered, the exchange with the origin (over a real socket, with http.client), then the
response hooks. Time passes only when the test says so (`clock.advance`).
"""

from __future__ import annotations

import asyncio
import http.client as httpclient
import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mitmproxy import flow as mflow
from mitmproxy import http
from mitmproxy.addons import proxyserver
from mitmproxy.test import taddons, tflow, tutils

from caching_proxy.cache.addon import CacheAddon
from caching_proxy.edge.body_limit import BodyLimit
from caching_proxy.edge.purge import Purge
from caching_proxy.ops.counters import Counters
from caching_proxy.policy import format_http_date
from support.origin import Origin


class Clock:
    """Starts at the real time, on a whole second, and then stands still; the origin's Date
    fields are read from it (see Harness._forward)."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def run_hook(result: Any) -> None:
    if result is not None and inspect.isawaitable(result):
        await result


class Harness:
    def __init__(self, origin: Origin, cache_dir: Path, **options: Any) -> None:
        self.origin = origin
        self.clock = Clock()
        self.cache = CacheAddon(clock=self.clock)
        self.counters = Counters(self.cache)
        self.addons: list[Any] = [Purge(self.cache), BodyLimit(), self.cache, self.counters]
        # Proxyserver declares the proxy options the cache sets (stream_large_bodies); it serves
        # nothing here, since the context never runs.
        self.context = taddons.context(proxyserver.Proxyserver(), *self.addons)
        self.response_hook_waited = False  # whether the cache's response hook was a coroutine
        self.options = {"cache_dir": str(cache_dir), **options}

    def __enter__(self) -> Harness:
        self.tctx = self.context.__enter__()
        # Background refreshes reach the origin the same way as the forwarded requests.
        self.cache.refresher.fetch = lambda request, *_: self._forward(request)
        self.configure(**self.options)
        return self

    def __exit__(self, *exc: object) -> None:
        closing = self.cache.done()  # a coroutine only for a network store, not used here
        assert closing is None, "a network store is closed by awaiting done()"
        self.context.__exit__(*exc)

    def configure(self, **options: Any) -> None:
        self.tctx.options.update(**options)

    def flow(self, path: str, method: str = "GET", headers: dict[str, str] | None = None,
             body: bytes = b"") -> http.HTTPFlow:
        request = tutils.treq(host="127.0.0.1", port=self.origin.port, method=method.encode(),
                              path=path.encode(), headers=http.Headers(
                                  [(k.encode(), v.encode()) for k, v in (headers or {}).items()]),
                              content=body)
        return tflow.tflow(req=request)

    async def send(self, flow: http.HTTPFlow,
                   before_response: Callable[[http.HTTPFlow], None] | None = None) -> http.HTTPFlow:
        """Carry `flow` through the hooks and, unless answered, to the origin."""
        for addon in self.addons:
            if flow.response is None and hasattr(addon, "request"):
                await run_hook(addon.request(flow))
        if flow.response is not None:
            return flow
        flow.response = await asyncio.to_thread(self._forward, flow.request)
        for addon in self.addons:
            if hasattr(addon, "responseheaders"):
                addon.responseheaders(flow)
        if before_response is not None:
            before_response(flow)
        for addon in self.addons:
            if hasattr(addon, "response"):
                result = addon.response(flow)
                if addon is self.cache:
                    self.response_hook_waited = inspect.isawaitable(result)
                await run_hook(result)
        return flow

    async def fail(self, flow: http.HTTPFlow, message: str) -> http.HTTPFlow:
        """Carry `flow` through the request hooks, then fail it as mitmproxy does."""
        for addon in self.addons:
            if flow.response is None and hasattr(addon, "request"):
                await run_hook(addon.request(flow))
        flow.error = mflow.Error(message)
        for addon in self.addons:
            if hasattr(addon, "error"):
                addon.error(flow)
        return flow

    async def get(self, path: str, method: str = "GET", **headers: str) -> http.HTTPFlow:
        return await self.send(self.flow(path, method, {k.replace("_", "-"): v
                                                       for k, v in headers.items()}))

    def _forward(self, request: http.Request) -> http.Response:
        conn = httpclient.HTTPConnection("127.0.0.1", self.origin.port, timeout=10)
        try:
            conn.putrequest(request.method, request.path, skip_host=True,
                            skip_accept_encoding=True)
            for name, value in request.headers.fields:
                conn.putheader(name.decode(), value.decode())
            conn.endheaders(request.raw_content or None)
            answer = conn.getresponse()
            body = answer.read()
            # The origin lives on the test's clock too: its Date is the clock's now.
            fields = [(k.encode(), format_http_date(self.clock()).encode() if k.lower() == "date"
                       else v.encode()) for k, v in answer.getheaders()]
            return http.Response(b"HTTP/1.1", answer.status, answer.reason.encode(),
                                 http.Headers(fields), body, None, self.clock(), self.clock())
        finally:
            conn.close()


def x_cache(flow: http.HTTPFlow) -> str:
    assert flow.response is not None
    return flow.response.headers.get("X-Cache", "")


def cache_status(flow: http.HTTPFlow) -> list[str]:
    assert flow.response is not None
    return flow.response.headers.get_all("Cache-Status")
