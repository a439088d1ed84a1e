"""The hit lane: a plain HTTP/1 GET or HEAD that the store answers fresh is served from the client
connection's reader, past mitmproxy's protocol layers and its task per hook (the lean master
only; mitmweb and `mitmdump -s` keep mitmproxy's path for every request).

Per hit, mitmproxy's layers, events and hook tasks cost about three times what the cache itself
does (its `ceiling` bench row: an addon answering at once from one prepared response). The lane
does what those layers do for such a request, with mitmproxy's own functions, and nothing else:

- the head is read by mitmproxy's HTTP/1 parser (`read_request_head`) and checked by its
  `validate_request`; the flow gets the origin's scheme, host and port and, unless
  keep_host_header, its Host, as reverse mode sets them;
- the same addons see the same hooks in the same order (requestheaders, request,
  responseheaders, response, through the lean master's HookTable, awaited inline), so guards,
  client timeouts, counters, metrics and the access log see a lane hit as any other;
- the answer's head is mitmproxy's `assemble_response_head`, its body written as its Http1Server
  writes it, and the connection closed where that server would close it (HTTP/1.0 without
  keep-alive, `Connection: close` either way, a response framed by the close).

What the lane takes: on a cleartext connection in reverse mode toward an http or https origin,
a complete head of CRLF lines only, no other control byte, at most 8 KiB, `GET` or `HEAD` in
origin-form over HTTP/1.0 or 1.1, without Content-Length, Transfer-Encoding, Expect or Upgrade,
for which `Reuse.pin_hit` finds a fresh stored response. Anything else, byte for byte as it
came, goes to mitmproxy.

A connection whose requests the lane keeps passing on (misses: a new URL each time) is looked
at less often: after PASS_STREAK passes in a row, 1, 2, 4, ... up to MAX_SKIP requests go to
mitmproxy unlooked at between two looks, until a look finds a hit. Either path gives the same
answer; this only spares a miss the lane's parse, flow and key.

Guarantees: answers leave a connection in the order of its requests. The lane answers only while
mitmproxy holds no request of that connection (none handed to it yet, or its HTTP/1 server
waiting for a head with nothing buffered), and once it hands bytes over, the rest of what was
read goes with them. A request is either all the lane's or all mitmproxy's: the lane decides
before any hook runs, and the store read that decided is the one answered from.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from mitmproxy import connection, ctx, flow, http
from mitmproxy.addonmanager import Loader
from mitmproxy.net.http import http1, url
from mitmproxy.proxy import layer
from mitmproxy.proxy.layers import http as http_layers
from mitmproxy.proxy.layers.http._http1 import Http1Server
from mitmproxy.proxy.mode_specs import ReverseMode

from caching_proxy.cache.lookup import Reuse
from caching_proxy.cli import options as opts
from caching_proxy.edge.guard import head_refusal
from caching_proxy.mitm.client_http1 import REQUEST_LINE
from caching_proxy.mitm.hook_table import HookTable, call_each

log = logging.getLogger(__name__)

MAX_HEAD = 8192  # larger heads go to mitmproxy (and the guard's limits)
STARTS = (b"GET ", b"HEAD ")
# Fields that give a GET a body or another protocol: left to mitmproxy.
NOT_FOR_LANE = frozenset({b"content-length", b"transfer-encoding", b"expect", b"upgrade"})
# Any control byte but CR and LF (which must come as CRLF pairs): the guard's refusals.
CONTROL = re.compile(rb"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f]")
HTTP1 = frozenset({"HTTP/1.0", "HTTP/1.1"})
ANSWERED, CLOSE, PASS = range(3)
_warned: set[str] = set()


def read_head(head: bytes, validate_headers: bool) -> http.Request | None:
    """The request of `head` (up to its blank line) as mitmproxy's HTTP/1 server reads it, or
    None when it is not the lane's."""
    if len(head) > MAX_HEAD or CONTROL.search(head):
        return None
    lf = head.count(b"\n")
    if head.count(b"\r") != lf or head.count(b"\r\n") != lf:
        return None  # a bare CR or LF: the line ends are mitmproxy's to read
    if not REQUEST_LINE.match(head):
        return None  # mitmproxy's parser takes any whitespace: refused there (client_http1)
    try:
        request = http1.read_request_head(head[:-4].split(b"\r\n"))
    except ValueError:
        return None
    # The raw method: mitmproxy upper-cases `method`, and `get` is not GET (the guard's 400).
    if (request.data.method not in (b"GET", b"HEAD") or request.http_version not in HTTP1
            or request.authority or not request.data.path.startswith(b"/")
            or head_refusal(request) is not None):
        return None
    for name, _ in request.headers.fields:
        if name.lower() in NOT_FOR_LANE:
            return None
    if http_layers.validate_request(http_layers.HTTPMode.transparent, request, validate_headers):
        return None
    return request


def http1_idle(handler: Any) -> bool:
    """Whether mitmproxy's HTTP/1 server of this client connection waits for a head with nothing
    buffered (False when it is anything else, or cannot be found)."""
    current = getattr(handler, "layer", None)
    for _ in range(16):
        if current is None:
            return False
        if isinstance(current, http_layers.HttpLayer):
            server = current.connections.get(handler.client)
            return (isinstance(server, Http1Server)
                    and server.state == server.read_headers and not server.buf)
        current = current.layer if isinstance(current, layer.NextLayer) else getattr(
            current, "child_layer", None)
    return False


def must_close(request: http.Request, response: http.Response) -> bool:
    """Where mitmproxy's Http1Server closes the connection after this exchange."""
    if (request.data.http_version == response.data.http_version == b"HTTP/1.1"
            and not _has(request, b"connection") and _has(response, b"content-length")
            and not _has(response, b"connection") and not _has(response, b"transfer-encoding")):
        return False  # the common case, read off the raw fields (mitmproxy's checks: 3 us)
    try:
        until_eof = http1.expected_http_body_size(request, response) == -1
    except ValueError:
        until_eof = False
    return (until_eof or http1.connection_close(request.http_version, request.headers)
            or http1.connection_close(response.http_version, response.headers))


def encoded_body(request: http.Request, response: http.Response) -> list[bytes | memoryview]:
    """The body's bytes on the wire, as mitmproxy's Http1Server sends them."""
    content = response.raw_content or b""
    if not _has(response, b"transfer-encoding") or (
            "chunked" not in response.headers.get("transfer-encoding", "").lower()):
        return [content] if content else []
    out: list[bytes | memoryview] = [b"%x\r\n" % len(content), content, b"\r\n"] if content else []
    if request.method.upper() != "HEAD":
        out.append(b"0\r\n\r\n")
    return out


def _has(message: http.Message, name: bytes) -> bool:
    """Whether `message` has field `name` (lower case), read off its raw fields."""
    return any(k.lower() == name for k, _ in message.headers.fields)


class Lane:
    """What the lane needs of the proxy, read once per configuration; shared by connections."""

    def __init__(self, table: HookTable, reuse: Reuse, spec: ReverseMode,
                 keep_host_header: bool, validate_headers: bool) -> None:
        self.table = table
        self.reuse = reuse
        self.scheme = "https" if spec.scheme == "https" else "http"
        self.host, self.port = spec.address
        self.host_header = None if keep_host_header else url.hostport(
            self.scheme, self.host, self.port)
        self.validate_headers = validate_headers

    def request_of(self, head: bytes) -> http.Request | None:
        request = read_head(head, self.validate_headers)
        if request is None:
            return None
        # As HttpStream sets them in reverse mode (the origin's address, transparent mode).
        request.data.host = self.host
        request.data.port = self.port
        request.scheme = self.scheme
        if self.host_header is not None:
            request.host_header = self.host_header
        return request


class LaneReader:
    """A client connection's reader, for mitmproxy's read loop: it answers what is the lane's
    and returns the rest. Installed in client_connected, before mitmproxy reads."""

    def __init__(self, reader: Any, lane: Lane, handler: Any, io: Any) -> None:
        self._reader = reader
        self._lane = lane
        self._handler = handler
        self._io = io
        self._server = connection.Server(address=(lane.host, lane.port))
        self._held = b""  # the start of a head the lane may take, not complete yet
        self._handed = False  # mitmproxy has had bytes of this connection
        self._ended = False
        self._passed = 0  # requests in a row the lane looked at and passed on (see _serve)
        self._skip = 0  # requests to hand to mitmproxy unlooked at

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)

    async def read(self, n: int = -1) -> bytes:
        while not self._ended:
            data: bytes = await self._reader.read(n)
            if not data:  # end of stream: mitmproxy gets what was held, then the end
                data, self._held = self._held, b""
                return data
            if self._held:
                data, self._held = self._held + data, b""
            rest = await self._serve(data)
            if rest:
                self._handed = True
                return rest
        return b""  # the lane answered with a close: mitmproxy reads the end and closes

    async def _serve(self, data: bytes) -> bytes:
        """Answer the lane's requests at the front of `data`; what is left for mitmproxy."""
        pos = 0
        while pos < len(data):
            if self._handed and not http1_idle(self._handler):
                break
            end = data.find(b"\r\n\r\n", pos)
            if end < 0:
                rest = data[pos:]
                # Held while it may still become the lane's: a bare LF may already end the
                # head for mitmproxy's reader.
                if (len(rest) <= MAX_HEAD and rest.count(b"\n") == rest.count(b"\r\n")
                        and (rest.startswith(STARTS) or any(s.startswith(rest) for s in STARTS))):
                    self._held = rest
                    return b""
                break
            if self._skip:
                # A connection of misses: the lane's look (a parse, a flow, a key: about 30 us
                # in-process, more under load) would only be paid again.
                self._skip -= 1
                break
            done = await self._answer(data[pos:end + 4])
            if done == PASS:
                self._passed += 1
                if self._passed >= PASS_STREAK:
                    # The shift bounded too: a connection of a million misses shifts by 4.
                    self._skip = 1 << min(self._passed - PASS_STREAK, MAX_SKIP.bit_length() - 1)
                break
            self._passed = 0
            pos = end + 4
            if done == CLOSE:
                self._ended = True
                return b""
        return data[pos:]

    async def _answer(self, head: bytes) -> int:
        if self._io.writer.transport.is_closing():
            # The client is gone (a reset seen on an earlier write): answers to the rest of
            # what it pipelined would be neither sent nor worth logging and counting as sent.
            return CLOSE
        lane = self._lane
        request = lane.request_of(head)
        if request is None:
            return PASS
        f = http.HTTPFlow(self._handler.client, self._server)
        f.request = request
        f.live = True
        pinned = lane.reuse.pin_hit(f)
        if not isinstance(pinned, bool):
            pinned = await pinned
        if not pinned:
            return PASS
        self._handler.timeout_watchdog.register_activity()
        request.timestamp_end = time.time()
        table = lane.table
        for hook in ("requestheaders", "request"):
            await call_each(table.handlers(hook), (f,))
            if killed(f):
                await call_each(table.handlers("error"), (f,))
                return CLOSE
        for hook in ("responseheaders", "response"):
            response = f.response
            if response is None:  # an addon took the cache's answer away: nothing to send
                _warn_once("a hit-lane request was left without an answer; its connection "
                           "was closed")
                await call_each(table.handlers("error"), (f,))
                return CLOSE
            # As mitmproxy stamps an addon's answer: its start before responseheaders, its end
            # before the response hook.
            if hook == "responseheaders":
                response.timestamp_start = time.time()
            else:
                response.timestamp_end = time.time()
            await call_each(table.handlers(hook), (f,))
            if killed(f):
                if hook == "responseheaders":
                    await call_each(table.handlers("error"), (f,))
                return CLOSE
        response = f.response
        if response is None:
            return CLOSE
        writer = self._io.writer
        wire = [http1.assemble_response_head(response), *encoded_body(request, response)]
        if sum(map(len, wire)) <= JOIN_BELOW:
            writer.write(b"".join(wire))  # one send: a small answer's copy costs less
        else:
            for chunk in wire:  # not writelines: Python 3.11's joins, copying a mapped body
                writer.write(chunk)
        f.live = False
        if must_close(request, response):
            return CLOSE
        if writer.transport.get_write_buffer_size() > WRITE_HIGH:
            await writer.drain()  # a slow reader holds its own connection, not the loop
        return ANSWERED


# After this many requests in a row of one connection that the lane looked at and passed on
# (misses, stale answers, requests not its own), it hands the next ones to mitmproxy without a
# look: 1, 2, 4, ... up to MAX_SKIP between two looks, until a look finds a hit again. Which
# path answers never changes an answer (the lane's differential test), only what it costs.
PASS_STREAK = 4
MAX_SKIP = 16
WRITE_HIGH = 64 * 1024
JOIN_BELOW = 64 * 1024  # an answer up to this size leaves in one write


def killed(f: http.HTTPFlow) -> bool:
    return f.error is not None and f.error.msg == flow.Error.KILLED_MESSAGE


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(f"caching-proxy: {message}")


# What the lane is made of: its own options and the mitmproxy ones it reads per connection.
LANE_OPTIONS = frozenset({"cache_hit_lane", "cache_tls_cert", "keep_host_header",
                          "validate_inbound_headers", "mode"})


class HitLane:
    """The addon: a LaneReader for each cleartext client connection, while the cache_hit_lane
    option is on, the master dispatches through a HookTable (the lean master) and the listener
    serves no TLS itself."""

    def __init__(self) -> None:
        self._lane_for: dict[ReverseMode, Lane] = {}
        self._on = False
        self._reuse: Reuse | None = None
        self._table: HookTable | None = None

    def load(self, loader: Loader) -> None:
        opts.declare(loader, self)

    def configure(self, updated: set[str]) -> None:
        if not updated & LANE_OPTIONS:
            return
        self._lane_for.clear()
        table = ctx.master.addons
        cache = table.get("cacheaddon")
        missing = problems() if ctx.options.cache_hit_lane else []
        for line in missing:
            _warn_once(f"{line}: the hit lane is off (every hit takes mitmproxy's path)")
        self._on = bool(
            ctx.options.cache_hit_lane and not ctx.options.cache_tls_cert
            and isinstance(table, HookTable) and cache is not None and not missing)
        self._reuse = cache.reuse if cache is not None else None
        self._table = table if isinstance(table, HookTable) else None

    def client_connected(self, client: connection.Client) -> None:
        spec = client.proxy_mode
        if (not self._on or client.error or client.transport_protocol != "tcp"
                or not isinstance(spec, ReverseMode) or spec.scheme not in ("http", "https")):
            return
        handlers = getattr(ctx.master.addons.get("proxyserver"), "connections", None)
        handler = handlers.get(client.id) if isinstance(handlers, Mapping) else None
        io = getattr(handler, "transports", {}).get(client)
        if io is None or getattr(io, "reader", None) is None:
            return
        lane = self._lane_for.get(spec)
        if lane is None:
            assert self._reuse is not None and self._table is not None
            lane = self._lane_for[spec] = Lane(
                self._table, self._reuse, spec, ctx.options.keep_host_header,
                ctx.options.validate_inbound_headers)
        io.reader = LaneReader(io.reader, lane, handler, io)


def problems() -> list[str]:
    """What of mitmproxy's internals the lane relies on this mitmproxy lacks, one line each;
    empty when all are there (the lane is off otherwise)."""
    from mitmproxy.proxy import server

    found = []
    for name in ("validate_request", "HTTPMode", "HttpLayer"):
        if not hasattr(http_layers, name):
            found.append(f"mitmproxy.proxy.layers.http.{name} is gone")
    for name in ("read_headers", "buf", "state"):
        if not any(name in vars(c) or name in vars(c).get("__annotations__", {})
                   for c in Http1Server.__mro__):
            found.append(f"mitmproxy's Http1Server.{name} is gone")
    if "timeout_watchdog" not in server.ConnectionHandler.__init__.__code__.co_names:
        found.append("mitmproxy.proxy.server.ConnectionHandler.timeout_watchdog is gone")
    return found
