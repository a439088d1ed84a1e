"""What mitmproxy's HTTP/1 server (the client side) does not refuse or does not wait for, added by
wrapping three of its methods. One of the internals behind caching_proxy.mitm.internals (whose
`problems()` includes this module's).

**A bounded head** (mitmproxy's own FIXME in `Http1Server.read_headers`): mitmproxy buffers a
request head that never ends without limit (400 MiB of header lines took a process from 66 to
834 MiB). The wrapper counts the bytes buffered while no complete head is there: a request line
with no line end within `guard.MAX_TARGET` bytes is answered 414, a head past `MAX_HEAD` 431
(nginx answers 400 past its 32 KiB of `large_client_header_buffers`), and the connection is
closed. What a connection can hold is then MAX_HEAD plus one read.

**A strict request line** (RFC 9112 3): `method SP request-target SP HTTP-version`, single
spaces, nothing before the method. mitmproxy splits the line on any whitespace, so a tab, VT, FF,
a leading space or two spaces were accepted, where an origin or another proxy in the chain may
split it differently. Anything else is answered 400, as nginx does.

**Host** (RFC 9112 3.2): an HTTP/1.1 request without Host, with two, or with an empty one, is
answered 400 (`guard.head_refusal`) as its head is parsed, before reverse mode writes the
origin's Host into the request and hides what the client sent.

**Empty lines before a request** (RFC 9112 2.2: a server SHOULD ignore at least one): h11's
buffer takes a leading CRLF off and reports no head, so mitmproxy waited for more bytes; a stray
CRLF after a POST body left the next pipelined request unanswered. The wrapper drops them first.

**Half-closed clients** (RFC 9112 9.6 leaves it open; nginx answers them): mitmproxy takes a FIN
while it waits for the origin's answer as "the client went away" and fails the flow. The
`wait` wrapper keeps the request going instead, and `mark_done` closes the connection once
every request that arrived before the FIN is answered.

Both mitmproxy lines this package supports (11 and 12) have the methods and fields used here;
`problems()` names any that changed. A mitmproxy that lacks one is left unpatched (warned once).
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable, Generator
from typing import Any

from mitmproxy.connection import ConnectionState
from mitmproxy.net.http import http1
from mitmproxy.proxy import commands, events
from mitmproxy.proxy.layers.http._base import ReceiveHttp
from mitmproxy.proxy.layers.http._events import RequestHeaders

from caching_proxy.edge.guard import MAX_FIELDS_SIZE, MAX_TARGET, head_refusal
from caching_proxy.edge.refusals import refusal_response

log = logging.getLogger(__name__)

HTTP1_MODULE = "mitmproxy.proxy.layers.http._http1"
# The whole head while no blank line has come: the guard's limits (request line, every field
# line with its CRLF) plus room for the line ends the guard does not count.
MAX_HEAD = MAX_TARGET + MAX_FIELDS_SIZE + 1024
# RFC 9112 3: method token, one SP, a target of visible characters, one SP, the version.
LINE_WINDOW = MAX_TARGET + 64  # a request line with its method, version and line end
REQUEST_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ [\x21-\x7e\x80-\xff]+ HTTP/[0-9]\.[0-9]\r?\n")

EMPTY_LINES = re.compile(rb"(?:\r?\n)*")  # RFC 9112 2.2: empty lines before a request
_ORIGINAL = "_caching_proxy_original"  # on a wrapper: the mitmproxy function it wraps
_CHECKED = "_caching_proxy_line_checked"  # on an Http1Server: stream id whose line was checked
_HALF_CLOSED = "_caching_proxy_half_closed"  # on an Http1Server: the client sent its FIN
_originals: dict[str, Callable[..., Any]] = {}

Gen = Generator[Any, Any, Any]


def line_refusal(buffered: bytes | bytearray) -> tuple[int, str] | None:
    """Why the start of a request head, `buffered`, with no blank line yet, is refused: its
    request line malformed (400) or longer than the guard takes (414); None while it may
    still become a valid line. Reads at most LINE_WINDOW bytes of it."""
    end = buffered.find(b"\n", 0, LINE_WINDOW)
    if end < 0:
        return (414, "request line too long") if len(buffered) >= LINE_WINDOW else None
    if not REQUEST_LINE.fullmatch(buffered, 0, end + 1):
        return 400, "malformed request line"
    return None


def _refuse(server: Any, status: int, reason: str) -> Gen:
    peer = getattr(server.conn, "peername", None)
    log.info(f"caching-proxy: refused a request from {peer[0] if peer else '?'} ({status}): "
             f"{reason}")
    yield commands.SendData(server.conn, bytes(http1.assemble_response(
        refusal_response(status, reason))))
    yield commands.CloseConnection(server.conn)
    server.state = server.done


def _drop_empty_lines(buf: Any) -> None:
    """Take CRLF and LF lines off the front of `buf` (an h11 ReceiveBuffer). One regular
    expression over the buffer, not a Python loop per line: a client sending nothing but empty
    lines costs what reading them costs (until the header timeout closes it)."""
    data = buf._data  # h11's buffer, a bytearray: see problems()
    found = EMPTY_LINES.match(data)  # always matches, if only the empty string
    end = found.end() if found is not None else 0
    if end:
        buf.maybe_extract_at_most(end)


def read_headers(self: Any, event: events.ConnectionEvent) -> Gen:
    if isinstance(event, events.DataReceived) and self.buf:
        _drop_empty_lines(self.buf)
        data = self.buf._data  # h11's buffer, a bytearray: see problems()
        if data and getattr(self, _CHECKED, None) != self.stream_id:
            refused = line_refusal(data)
            if refused is not None:
                yield from _refuse(self, *refused)
                return
            if data.find(b"\n", 0, LINE_WINDOW) >= 0:
                setattr(self, _CHECKED, self.stream_id)  # its line is good: not looked at again
    original = _originals["read_headers"](self, event)
    try:
        command = next(original)
        while True:
            if isinstance(command, ReceiveHttp) and isinstance(command.event, RequestHeaders):
                # The head as parsed, before the request goes to the layer above (and reverse
                # mode writes the origin's Host into it).
                refused = head_refusal(command.event.request)
                if refused is not None:
                    original.close()
                    yield from _refuse(self, *refused)
                    return
            command = original.send((yield command))
    except StopIteration:
        pass
    if self.state == self.read_headers and len(self.buf) > MAX_HEAD:
        yield from _refuse(self, 431, "request head too large")


def wait(self: Any, event: events.Event) -> Gen:
    if (isinstance(event, events.ConnectionClosed) and event.connection is self.conn
            and self.conn.state & ConnectionState.CAN_WRITE):
        # A FIN, not a reset: the request in progress is still answered (mark_done closes).
        setattr(self, _HALF_CLOSED, True)
        return
    yield from _originals["wait"](self, event)


def mark_done(self: Any, *, request: bool = False, response: bool = False) -> Gen:
    yield from _originals["mark_done"](self, request=request, response=response)
    if getattr(self, _HALF_CLOSED, False) and self.state == self.read_headers:
        # Every request that came before the FIN is answered: nothing more can come.
        yield commands.CloseConnection(self.conn)
        self.state = self.done


_WRAPPERS: dict[str, Callable[..., Any]] = {
    "read_headers": read_headers, "wait": wait, "mark_done": mark_done}


def _server_class() -> Any:
    try:
        return getattr(importlib.import_module(HTTP1_MODULE), "Http1Server", None)
    except ImportError:
        return None


def _unwrapped(cls: Any, name: str) -> Any:
    func = getattr(cls, name, None)
    return getattr(func, _ORIGINAL, func)


def install() -> bool:
    """Wrap the three methods (idempotent). False, changing nothing, where this mitmproxy lacks
    what the wrappers rely on (see problems(); logged once)."""
    found = problems()
    if found:
        log.warning("caching-proxy: this mitmproxy's HTTP/1 server changed (%s): request heads "
                    "are not bounded and half-closed clients not answered", "; ".join(found))
        return False
    cls = _server_class()
    for name, wrapper in _WRAPPERS.items():
        original = _unwrapped(cls, name)
        _originals[name] = original
        setattr(wrapper, _ORIGINAL, original)
        setattr(cls, name, wrapper)
    return True


def installed() -> bool:
    cls = _server_class()
    return all(getattr(cls, name, None) is wrapper for name, wrapper in _WRAPPERS.items())


def uninstall() -> None:
    """Put mitmproxy's methods back (for tests that show what mitmproxy does alone)."""
    cls = _server_class()
    for name in _WRAPPERS:
        if cls is not None and name in _originals:
            setattr(cls, name, _originals[name])


def problems() -> list[str]:
    """What of mitmproxy's HTTP/1 server the wrappers rely on is missing or changed, one line
    each naming it; empty when all is as expected."""
    cls = _server_class()
    if cls is None:
        return [f"{HTTP1_MODULE}.Http1Server is gone"]
    found: list[str] = []
    for name in _WRAPPERS:
        code = getattr(_unwrapped(cls, name), "__code__", None)
        if code is None or code.co_varnames[:1] != ("self",):
            found.append(f"{HTTP1_MODULE}.Http1Server.{name}(self, ...) is gone")
    read = getattr(_unwrapped(cls, "read_headers"), "__code__", None)
    if read is not None and "maybe_extract_lines" not in read.co_names:
        found.append(f"{HTTP1_MODULE}.Http1Server.read_headers no longer takes the head with "
                     "buf.maybe_extract_lines()")
    for name in ("buf", "state", "stream_id", "conn"):
        if not any(name in getattr(c, "__annotations__", {}) or name in vars(c)
                   for c in cls.__mro__):
            found.append(f"{HTTP1_MODULE}.Http1Server.{name} is gone")
    for name in ("done", "read_body"):
        if not callable(getattr(cls, name, None)):
            found.append(f"{HTTP1_MODULE}.Http1Server.{name} is gone")
    try:
        from h11._receivebuffer import ReceiveBuffer

        buffer = ReceiveBuffer()
        if not isinstance(getattr(buffer, "_data", None), bytearray) or not callable(
                getattr(buffer, "maybe_extract_at_most", None)):
            found.append("h11's ReceiveBuffer no longer keeps a bytearray _data")
    except ImportError:
        found.append("h11._receivebuffer.ReceiveBuffer is gone")
    return found
