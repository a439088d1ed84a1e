"""A graceful stop: stop accepting, close idle connections, let requests in flight finish.

nginx's graceful shutdown with its `worker_shutdown_timeout`, on SIGTERM (what systemd, Docker
and Kubernetes send): the listener is closed at once; a client connection with no request in
flight (no flow between its request head and its answer, mitmproxy's HTTP/1 server waiting for a
head with nothing buffered, or no HTTP layer yet) is closed at once; the others are closed as
each becomes idle, and every HTTP/1 answer sent meanwhile says `Connection: close`. Once none is
left, or `cache_drain_timeout` seconds have passed, the master shuts down (the rest are cut) and
the process exits 0.

Guarantees: a response is stored only whole, in the response hook (cache/storing.py), so a fill
cut at the timeout leaves nothing stored. A request the hit lane answers is never cut between its
response hook and its write: this addon comes last in the chain and its hooks never yield.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from mitmproxy import ctx, http
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import layer
from mitmproxy.proxy.layers import http as http_layers
from mitmproxy.proxy.layers.http._http1 import Http1Server

from caching_proxy.cli import options as opts

log = logging.getLogger(__name__)

CHECK_INTERVAL = 0.05  # seconds between two looks for connections that became idle
_COUNTED = "caching_proxy.drain.counted"


def http_layer_of(handler: Any) -> Any:
    """The HttpLayer of a connection handler, or None (nothing read yet, a TLS handshake)."""
    current = getattr(handler, "layer", None)
    for _ in range(16):
        if current is None:
            return None
        if isinstance(current, http_layers.HttpLayer):
            return current
        current = current.layer if isinstance(current, layer.NextLayer) else getattr(
            current, "child_layer", None)
    return None


class Drain:
    """Counts the flows in flight per client connection, and drains on `begin`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.in_flight: dict[str, int] = {}
        self.draining = False
        self.task: asyncio.Task[None] | None = None

    def load(self, loader: Loader) -> None:
        opts.declare(loader, self)

    # -- the count -----------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if not flow.metadata.get(_COUNTED):
            flow.metadata[_COUNTED] = True
            key = flow.client_conn.id
            self.in_flight[key] = self.in_flight.get(key, 0) + 1

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._close_after(flow)  # a streamed body's head leaves after this hook

    def response(self, flow: http.HTTPFlow) -> None:
        self._close_after(flow)
        self._done(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._done(flow)

    def client_disconnected(self, client: Any) -> None:
        self.in_flight.pop(client.id, None)

    def _done(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.pop(_COUNTED, None):
            key = flow.client_conn.id
            left = self.in_flight.get(key, 1) - 1
            if left > 0:
                self.in_flight[key] = left
            else:
                self.in_flight.pop(key, None)

    def _close_after(self, flow: http.HTTPFlow) -> None:
        """While draining, an HTTP/1 answer closes its connection (HTTP/2 forbids the field:
        such a connection is closed once idle)."""
        if (self.draining and flow.response is not None
                and flow.request.http_version.startswith("HTTP/1")):
            flow.response.headers["connection"] = "close"

    # -- the drain -----------------------------------------------------------------------------

    def idle(self, handler: Any) -> bool:
        """Whether a connection has no request in flight. Any doubt is "in flight": it is then
        cut at the timeout at worst, never in the middle of an answer it could have finished."""
        client = getattr(handler, "client", None)
        if client is None or self.in_flight.get(client.id):
            return False
        found = http_layer_of(handler)
        if found is None:
            return True
        server = found.connections.get(client)
        if isinstance(server, Http1Server):
            return bool(server.state == server.read_headers and not server.buf)
        return True  # HTTP/2: its requests are the flows counted above

    def begin(self, master: Any) -> None:
        """Start draining (once); the master is shut down when done."""
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._drain(master))

    async def _drain(self, master: Any) -> None:
        try:
            await self._run(master)
        except Exception:  # never keep a process that was asked to stop
            log.exception("caching-proxy: draining failed; stopping now")
        finally:
            master.shutdown()

    async def _run(self, master: Any) -> None:
        self.draining = True
        timeout = ctx.options.cache_drain_timeout
        proxyserver = master.addons.get("proxyserver")
        if proxyserver is None:
            return
        # Every listener closed first: new connections go to another instance (or are refused).
        await proxyserver.servers.update([])
        deadline = self.clock() + timeout
        connections = proxyserver.connections
        busy = sum(not self.idle(h) for h in connections.values())
        if busy:
            log.warning(f"caching-proxy: stopping: {busy} connection"
                        f"{'s' if busy != 1 else ''} in flight, waiting up to {timeout} s")
        while connections:
            for handler in list(connections.values()):
                if self.idle(handler):
                    close(handler)
            if self.clock() >= deadline:
                left = len(connections)
                log.warning(f"caching-proxy: drain timeout ({timeout} s): cutting {left} "
                            f"connection{'s' if left != 1 else ''}")
                return
            await asyncio.sleep(CHECK_INTERVAL)


def close(handler: Any) -> None:
    """Close a client connection as mitmproxy closes one (its handler task cancelled, what was
    written flushed by the transport's close)."""
    client = handler.client
    io = handler.transports.get(client)
    if io is None or io.handler is None:
        writer = getattr(io, "writer", None)
        if writer is not None:
            writer.close()  # not started yet: nothing of it is in flight
        return
    handler.close_connection(client)
