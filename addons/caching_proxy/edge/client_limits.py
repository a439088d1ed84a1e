"""Slow and idle clients: a header timeout, a keep-alive timeout and a bound on client
connections (nginx client_header_timeout, keepalive_timeout, worker_connections).

mitmproxy closes a client connection only after 10 minutes without any activity, and every byte
counts as activity, so a client that trickles a request head (slowloris), or just keeps an idle
connection, holds a connection and its file descriptor for as long as it likes. This addon
keeps one timer per client connection, in one of these phases:

- `head`: from accepting the connection (the TLS handshake included), or on a kept-alive
  HTTP/1 connection from the first byte after the previous response, until the request head is
  complete (`requestheaders`). Past `cache_header_timeout` the connection is closed, with a
  `408 Request Timeout` first when bytes of a head arrived on a cleartext HTTP/1 connection
  (over TLS the answer would have to go through mitmproxy's TLS layer, so it is only closed; a
  connection that sent nothing is closed silently, as nginx does).
- `busy`: a request is in progress (from its head until its response hook or error, every
  HTTP/2 stream counted; a WebSocket until it ends): no timer; the origin timeouts govern it.
- `idle`: no request in progress and the last response handed to the kernel. Past
  `cache_keepalive_timeout` the connection is closed. While the last response is still being
  written (a slow reader), the timer waits for it, polling once a second.

A request moves the deadline, not the timer: each connection has at most one timer, which on
firing re-arms itself for a deadline that moved later (so a hit costs two float assignments
instead of scheduling and cancelling two asyncio timers; the timers cost 6% of a hit).

Guarantees: a connection is closed by a timer only when no request is in progress on it,
never before its phase's deadline; a response is never cut by these timers. Past
`cache_max_connections` client connections, a new one is closed as soon as it is accepted
(mitmproxy's `client.error`), and those held are served as before. The private mitmproxy parts
this needs are in internals.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from mitmproxy import connection, ctx, exceptions, http
from mitmproxy.addonmanager import Loader
from mitmproxy.net.http import http1

from caching_proxy.cache.serve import own_answer
from caching_proxy.cli import option_values
from caching_proxy.cli import options as opts
from caching_proxy.edge.fail_closed import fail_closed
from caching_proxy.mitm import internals

log = logging.getLogger(__name__)

DRAIN_POLL = 1.0  # seconds between looks at a connection still writing its last response
# Written raw to the connection (no flow exists yet), built as every answer of the proxy's own.
REQUEST_TIMEOUT = bytes(http1.assemble_response(own_answer(
    408, "408 Request Timeout: the request head did not arrive in time\n", fwd="bypass",
    detail="client-timeout")))


@dataclass
class Held:
    """What this addon knows of one client connection."""

    client: connection.Client
    phase: str = "head"  # head | busy | idle
    got_bytes: bool = False  # bytes arrived in this head phase
    flows: set[str] = field(default_factory=set)  # requests in progress
    deadline: float = 0.0  # loop time the current phase ends; 0: none (busy, or disabled)
    timer: asyncio.TimerHandle | None = None
    timer_at: float = 0.0  # when `timer` fires: at or before `deadline`

    def stop(self) -> None:
        self.deadline = 0.0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class ClientLimits:
    def __init__(self) -> None:
        self._held: dict[str, Held] = {}
        self._limit = 0
        self._refusing = False  # logged that new connections are refused, until under the bound
        self._header_timeout = 60.0
        self._keepalive_timeout = 75.0

    def load(self, loader: Loader) -> None:
        opts.declare(loader, self)

    def configure(self, updated: set[str]) -> None:
        if not updated & opts.read_by(self):
            return
        for name in ("cache_header_timeout", "cache_keepalive_timeout"):
            if name in updated and getattr(ctx.options, name) < 0:
                raise exceptions.OptionsError(f"{name} must not be negative")
        # Read once here: an option lookup per request cost more than the timer itself.
        self._header_timeout = ctx.options.cache_header_timeout
        self._keepalive_timeout = ctx.options.cache_keepalive_timeout
        if "cache_max_connections" in updated:
            try:
                self._limit = option_values.max_connections_of(ctx.options.cache_max_connections)
            except ValueError:
                raise exceptions.OptionsError(
                    "cache_max_connections must be auto or a whole number >= 0") from None

    # -- hooks ----------------------------------------------------------------------------------

    @fail_closed
    def client_connected(self, client: connection.Client) -> None:
        if self._limit and len(self._held) >= self._limit:
            client.error = "too many client connections"
            if not self._refusing:
                self._refusing = True
                log.warning(f"caching-proxy: {len(self._held)} client connections held "
                            "(cache_max_connections): closing new ones until some end")
            return
        held = Held(client)
        self._held[client.id] = held
        # Where mitmproxy lacks the internal, a kept-alive connection's next head is timed from
        # the end of the previous response instead of from its first byte (the keep-alive timer).
        internals.watch_client_reads(ctx.master, client.id, lambda: self._bytes_in(held))
        self._arm(held, self._header_timeout)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        held = self._held.get(flow.client_conn.id)
        if held is not None:
            held.flows.add(flow.id)
            held.phase = "busy"
            held.deadline = 0.0  # its timer, if pending, finds no deadline and lapses

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.websocket is None:  # a WebSocket keeps its connection busy until it ends
            self._ended(flow)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self._ended(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._ended(flow)

    def client_disconnected(self, client: connection.Client) -> None:
        held = self._held.pop(client.id, None)
        if held is not None:
            held.stop()
        if self._refusing and len(self._held) < self._limit:
            self._refusing = False

    def done(self) -> None:
        for held in self._held.values():
            held.stop()
        self._held.clear()

    # -- phases ---------------------------------------------------------------------------------

    def _ended(self, flow: http.HTTPFlow) -> None:
        held = self._held.get(flow.client_conn.id)
        if held is None:
            return
        held.flows.discard(flow.id)
        if not held.flows and held.phase == "busy":
            held.phase = "idle"
            self._arm(held, self._keepalive_timeout)

    def _bytes_in(self, held: Held) -> None:
        """Bytes arrived from the client (before mitmproxy handles them)."""
        if held.phase == "head":
            held.got_bytes = True
        elif held.phase == "idle" and held.client.alpn != b"h2":
            # The next request's head has begun: from now on the header timeout applies, as in
            # nginx. (An HTTP/2 connection's idle bytes are pings and window updates.)
            held.phase = "head"
            held.got_bytes = True
            self._arm(held, self._header_timeout)

    def _arm(self, held: Held, seconds: float) -> None:
        if not seconds:
            held.stop()
            return
        loop = asyncio.get_running_loop()
        held.deadline = loop.time() + seconds
        if held.timer is not None and held.timer_at <= held.deadline:
            return  # it fires first and moves itself on to the deadline
        if held.timer is not None:
            held.timer.cancel()
        self._schedule(held, held.deadline, self._due)

    @staticmethod
    def _schedule(held: Held, at: float, callback: Callable[[Held], None]) -> None:
        held.timer_at = at
        held.timer = asyncio.get_running_loop().call_at(at, callback, held)

    def _due(self, held: Held) -> None:
        held.timer = None
        if not held.deadline or held.phase == "busy" or held.client.id not in self._held:
            return
        if asyncio.get_running_loop().time() < held.deadline:
            self._schedule(held, held.deadline, self._due)
            return
        self._expired(held)

    def _expired(self, held: Held) -> None:
        client_id = held.client.id
        if held.phase == "idle" and internals.client_unsent_bytes(ctx.master, client_id):
            # The last response is still being written: the idle time starts once it is sent.
            held.deadline = 0.0
            self._schedule(held, asyncio.get_running_loop().time() + DRAIN_POLL, self._drained)
            return
        if held.phase == "head":
            last_words = REQUEST_TIMEOUT if held.got_bytes and not held.client.tls else b""
            internals.close_client(ctx.master, client_id, "header timeout", last_words)
        else:
            internals.close_client(ctx.master, client_id, "keep-alive timeout")

    def _drained(self, held: Held) -> None:
        held.timer = None
        if held.client.id not in self._held:
            return
        if held.phase != "idle":
            if held.deadline:  # the next head began meanwhile: its deadline has no timer yet
                self._schedule(held, held.deadline, self._due)
            return
        if internals.client_unsent_bytes(ctx.master, held.client.id):
            self._schedule(held, asyncio.get_running_loop().time() + DRAIN_POLL, self._drained)
        else:
            self._arm(held, self._keepalive_timeout)
