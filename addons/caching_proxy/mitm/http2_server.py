"""Two things mitmproxy's HTTP/2 side does not do, added by wrapping two methods: a byte bound on
header blocks, and this proxy's answers in place of mitmproxy's HTML error page. One of the
internals behind caching_proxy.mitm.internals (whose `problems()` includes this module's).

**Header blocks bounded by bytes** (the CONTINUATION flood). h2 keeps a header block (HEADERS
without END_HEADERS, then CONTINUATION frames) undecoded until its last frame, up to 64 frames
(`h2.frame_buffer.CONTINUATION_BACKLOG`) of up to the frame size mitmproxy advertises (128 KiB):
8 MiB held per connection. And h2 checks a frame's announced length only once all of it has
arrived, so a frame header announcing 16 MiB is buffered whole before it is refused. The
wrapper of `h2.frame_buffer.FrameBuffer.__next__` judges each frame by its 9-byte header as
soon as that is in, before h2 waits for the body:

- a HEADERS, PUSH_PROMISE or CONTINUATION frame that would take the undecoded block past
  `MAX_HEADER_BLOCK` (the HTTP/1 guard's 64 KiB of fields plus 8 KiB of target) raises h2's
  `DenialOfServiceError`: h2 queues GOAWAY(ENHANCE_YOUR_CALM), mitmproxy a GOAWAY
  (PROTOCOL_ERROR) after it and closes the connection, as nghttp2 ends such a connection;
- any frame announcing more than the advertised frame size raises h2's own
  `FrameTooLargeError` (GOAWAY FRAME_SIZE_ERROR) then, not once its whole body is read.

Either way what the buffer held is dropped at once. So no header block past 72 KiB is ever held,
nor any frame past the advertised size. A block that large would hardly have been accepted
anyway: it decodes to more than the 64 KiB header list h2 accepts (its decoder's
`max_header_list_size`: each field counts 32 bytes more than its name and value, and HPACK only
shrinks them), which ends the connection the same way. It applies to every h2 connection of the
process: clients', and origins' over HTTP/2.

**This proxy's answers to HTTP/2 clients.** When the origin fails, mitmproxy's HTTP/2 server
(`Http2Server._handle_event`, the ResponseProtocolError branch of `Http2Connection`) writes its
own HTML page; `error_page` only replaces the HTTP/1 one. The wrapper takes that branch over
where mitmproxy would write its page (stream open for us, no head sent yet, not a kill) and
sends `error_page.answer_for(...)` instead: the answer the `error` hook chose (a stored stale
response, a 504 for an origin timeout) or this proxy's own 502 (text/plain, X-Cache: MISS,
Cache-Status), with lowercased field names and no connection-specific fields, ending the
stream. The connection stays open (an HTTP/1 client's is closed after such an answer, as
mitmproxy does after any error page). A stream mitmproxy would reset is still reset.

Written against mitmproxy 11 with h2 4.1 and mitmproxy 12 with h2 4.4, which differ in two places
the wrappers meet: h2 4.4 keeps the frame buffer's bytes in a bytearray `_data` (4.1: bytes
`data`; `data_attribute` finds which), and mitmproxy 12's ResponseProtocolError.code is an
ErrorCode naming its page's status (11: the status; `page_status`). `problems()` names anything
another version changed, and tests/e2e/test_http2_hostile.py drives both behaviours through a
real proxy. Where something is missing nothing is patched (warned once).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Generator
from typing import Any

from mitmproxy import http

from caching_proxy.edge.guard import MAX_FIELDS_SIZE, MAX_TARGET
from caching_proxy.mitm import error_page

log = logging.getLogger(__name__)

MAX_HEADER_BLOCK = MAX_FIELDS_SIZE + MAX_TARGET  # undecoded header block bytes, per block

FRAME_BUFFER_MODULE = "h2.frame_buffer"
HTTP2_MODULE = "mitmproxy.proxy.layers.http._http2"
EVENTS_MODULE = "mitmproxy.proxy.layers.http._events"
# RFC 9113 8.2.2; and the fields Connection names.
CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection",
                                 b"transfer-encoding", b"upgrade", b"te"})
FRAME_HEADER = 9  # bytes: length (3), type, flags, stream id (4)
BLOCK_FRAME_TYPES = frozenset({0x1, 0x5, 0x9})  # HEADERS, PUSH_PROMISE, CONTINUATION (RFC 9113 6)

# Where FrameBuffer keeps its unparsed bytes: `_data`, a bytearray (h2 4.4); `data`, bytes (4.1).
DATA_ATTRIBUTES = ("_data", "data")

_ORIGINAL = "_caching_proxy_original"  # on a wrapper: the function it wraps

Gen = Generator[Any, Any, Any]
_originals: dict[str, Callable[..., Any]] = {}
_data_attribute = "data"  # of FrameBuffer: set by install() (data_attribute)


# -- header blocks ----------------------------------------------------------------------------

def _next(self: Any) -> Any:
    """FrameBuffer.__next__: the frame at the head of the buffer judged by its header alone.
    h2's own __next__ calls `self.__next__()` for the frame after one it keeps back (a header
    block's), so every frame comes through here."""
    from h2.exceptions import DenialOfServiceError, FrameTooLargeError  # type: ignore[import-untyped]

    data = getattr(self, _data_attribute)
    if len(data) >= FRAME_HEADER:
        length = int.from_bytes(data[:3], "big")
        if data[3] in BLOCK_FRAME_TYPES:
            held = sum(len(f.data) for f in self._headers_buffer)
            if held + length > MAX_HEADER_BLOCK:
                # The connection ends here: what it buffered is freed now, not once the cyclic
                # garbage collector gets to the dead connection's objects.
                self._headers_buffer = []
                setattr(self, _data_attribute, data[:0])  # empty, of h2's type
                raise DenialOfServiceError(
                    f"header block over {MAX_HEADER_BLOCK} bytes ({held} held, a frame of "
                    f"{length} more)")
        # h2 sets max_frame_size before it iterates; 0 only on a buffer never fed.
        if self.max_frame_size and length > self.max_frame_size:
            setattr(self, _data_attribute, data[:0])
            raise FrameTooLargeError(f"Received overlong frame: length {length}, "
                                     f"max {self.max_frame_size}")
    return _originals["__next__"](self)


def data_attribute(buffer: Any) -> str | None:
    """Where FrameBuffer keeps the bytes not yet parsed: the attribute its __init__ sets and its
    own __next__ reads; None if neither name is."""
    init, step = _names(getattr(buffer, "__init__", None)), _names(_unwrapped(buffer, "__next__"))
    return next((name for name in DATA_ATTRIBUTES if name in init and name in step), None)


# -- answers instead of mitmproxy's error page ------------------------------------------------

def _handle_event(self: Any, event: Any) -> Gen:
    """Http2Server._handle_event: this proxy's answer where mitmproxy would write its page."""
    from mitmproxy.proxy.layers.http._events import ResponseProtocolError

    if isinstance(event, ResponseProtocolError):
        status = page_status(event.code)
        if status is not None and _would_write_page(self, event):
            response = error_page.answer_for(status, event.message)
            yield from _send(self, event.stream_id, response)
            return
        error_page.take_answer(event.message)  # a reset stream: nothing to answer on
    yield from _originals["_handle_event"](self, event)


def page_status(code: Any) -> int | None:
    """The status of the page for a ResponseProtocolError's `code`; None where mitmproxy writes
    none. mitmproxy 11 gives the status itself (NO_RESPONSE: none); 12 an ErrorCode, which
    names its status (None: none)."""
    from mitmproxy.net.http import status_codes

    if isinstance(code, int):
        return None if code == status_codes.NO_RESPONSE else code
    status = code.http_status_code() if callable(getattr(code, "http_status_code", None)) else None
    return status if isinstance(status, int) else None


def _would_write_page(self: Any, event: Any) -> bool:
    """The condition of Http2Connection._handle_event for writing its error page (its status
    aside: page_status)."""
    stream_id = event.stream_id
    if self.is_closed(stream_id) or not self.is_open_for_us(stream_id):
        return False
    stream = self.h2_conn.streams[stream_id]
    return not stream.state_machine.headers_sent


def h2_fields(response: http.Response) -> list[tuple[bytes, bytes]]:
    """`response`'s head as HTTP/2 fields: :status first, names lowercased, no
    connection-specific field (nor any the Connection field names)."""
    fields = response.headers.fields
    named = {token.strip().lower() for name, value in fields if name.lower() == b"connection"
             for token in value.split(b",")}
    return [(b":status", b"%d" % response.status_code), *(
        (name.lower(), value) for name, value in fields
        if name.lower() not in CONNECTION_SPECIFIC and name.lower() not in named)]


def _send(self: Any, stream_id: int, response: http.Response) -> Gen:
    from mitmproxy.proxy.commands import SendData

    body = response.raw_content or b""
    self.h2_conn.send_headers(stream_id, h2_fields(response), end_stream=not body)
    if body:
        # mitmproxy's BufferedH2Connection splits and queues it by the flow-control window.
        self.h2_conn.send_data(stream_id, body, end_stream=True)
    yield SendData(self.conn, self.h2_conn.data_to_send())


# -- installing and checking ------------------------------------------------------------------

_WRAPPERS: dict[str, tuple[str, str, Callable[..., Any]]] = {
    "__next__": (FRAME_BUFFER_MODULE, "FrameBuffer", _next),
    "_handle_event": (HTTP2_MODULE, "Http2Server", _handle_event),
}


def _class(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def _unwrapped(cls: Any, method: str) -> Any:
    function = cls.__dict__.get(method) if cls is not None else None
    return getattr(function, _ORIGINAL, function)


def install() -> bool:
    """Wrap the two methods (idempotent). False, changing nothing, where this mitmproxy or h2
    lacks what the wrappers rely on (see problems(); logged once)."""
    found = problems()
    if found:
        log.warning("caching-proxy: this mitmproxy's HTTP/2 side changed (%s): header blocks "
                    "are bounded only by h2, and HTTP/2 clients get mitmproxy's error page",
                    "; ".join(found))
        return False
    global _data_attribute
    _data_attribute = data_attribute(_class(FRAME_BUFFER_MODULE, "FrameBuffer")) or "data"
    for method, (module, name, wrapper) in _WRAPPERS.items():
        cls = _class(module, name)
        original = _unwrapped(cls, method)
        _originals[method] = original
        setattr(wrapper, _ORIGINAL, original)
        setattr(cls, method, wrapper)
    return True


def installed() -> bool:
    return all(getattr(_class(module, name), method, None) is wrapper
               for method, (module, name, wrapper) in _WRAPPERS.items())


def uninstall() -> None:
    """Put the original methods back (for tests that show what mitmproxy does alone)."""
    for method, (module, name, _) in _WRAPPERS.items():
        cls = _class(module, name)
        if cls is not None and method in _originals:
            setattr(cls, method, _originals[method])


def _names(function: Any) -> set[str]:
    code = getattr(function, "__code__", None)
    return set(code.co_names) if code is not None else set()


def problems() -> list[str]:
    """What of h2's frame buffer and mitmproxy's HTTP/2 server the wrappers rely on is missing
    or changed, one line each naming it; empty when all is as expected."""
    found: list[str] = []
    buffer = _class(FRAME_BUFFER_MODULE, "FrameBuffer")
    if buffer is None:
        found.append(f"{FRAME_BUFFER_MODULE}.FrameBuffer is gone")
    else:
        step = _unwrapped(buffer, "__next__")
        if step is None or getattr(step, "__code__", None) is None:
            found.append(f"{FRAME_BUFFER_MODULE}.FrameBuffer.__next__ is gone")
        elif not {"parse_frame_header", "_validate_frame_length", "_update_header_buffer",
                  "__next__"} <= _names(step):
            found.append(f"{FRAME_BUFFER_MODULE}.FrameBuffer.__next__ no longer parses the "
                         "frame at the head of its buffer, checks its length, passes it "
                         "through _update_header_buffer and recurses for the next")
        if data_attribute(buffer) is None:
            found.append(f"{FRAME_BUFFER_MODULE}.FrameBuffer keeps the bytes its __next__ "
                         f"parses in none of {', '.join(DATA_ATTRIBUTES)}")
        if not {"max_frame_size", "_headers_buffer"} <= _names(buffer.__init__):
            found.append(f"{FRAME_BUFFER_MODULE}.FrameBuffer.max_frame_size/_headers_buffer "
                         "are gone")
        if "_headers_buffer" not in _names(getattr(buffer, "_update_header_buffer", None)):
            found.append(f"{FRAME_BUFFER_MODULE}.FrameBuffer._update_header_buffer no longer "
                         "keeps a header block's frames in _headers_buffer")
    connection = _class("h2.connection", "H2Connection")
    if not {"incoming_buffer", "max_frame_size"} <= _names(getattr(connection, "receive_data",
                                                                   None)):
        found.append("h2.connection.H2Connection.receive_data no longer feeds incoming_buffer "
                     "and sets its max_frame_size")
    for name in ("DenialOfServiceError", "FrameTooLargeError"):
        if _class("h2.exceptions", name) is None:
            found.append(f"h2.exceptions.{name} is gone")
    found += _server_problems()
    return found


def _server_problems() -> list[str]:
    found: list[str] = []
    server = _class(HTTP2_MODULE, "Http2Server")
    base = _class(HTTP2_MODULE, "Http2Connection")
    handle = _unwrapped(server, "_handle_event")
    code = getattr(handle, "__code__", None)
    if code is None or code.co_varnames[:2] != ("self", "event"):
        found.append(f"{HTTP2_MODULE}.Http2Server._handle_event(self, event) is gone")
    page = _names(getattr(base, "_handle_event", None))
    # Where it writes no page: code NO_RESPONSE (mitmproxy 11); no http_status_code() (12).
    if not ({"ResponseProtocolError", "is_closed", "is_open_for_us", "headers_sent",
             "format_error"} <= page and {"NO_RESPONSE", "http_status_code"} & page):
        found.append(f"{HTTP2_MODULE}.Http2Connection._handle_event no longer writes its error "
                     "page for a ResponseProtocolError on a stream open for us with no head "
                     "sent yet")
    for method in ("is_closed", "is_open_for_us"):
        if not callable(getattr(base, method, None)):
            found.append(f"{HTTP2_MODULE}.Http2Connection.{method} is gone")
    if "h2_conn" not in getattr(base, "__annotations__", {}):
        found.append(f"{HTTP2_MODULE}.Http2Connection.h2_conn is gone")
    buffered = _class("mitmproxy.proxy.layers.http._http_h2", "BufferedH2Connection")
    if "stream_buffers" not in _names(getattr(buffered, "send_data", None)):
        found.append("mitmproxy.proxy.layers.http._http_h2.BufferedH2Connection.send_data no "
                     "longer queues data past the flow-control window")
    machine = _class("h2.stream", "H2StreamStateMachine")
    if "headers_sent" not in _names(getattr(machine, "__init__", None)):
        found.append("h2.stream.H2StreamStateMachine.headers_sent is gone")
    fields = list(getattr(_class(EVENTS_MODULE, "ResponseProtocolError"), "__dataclass_fields__",
                          {}))
    if fields[:3] != ["stream_id", "message", "code"]:
        found.append(f"{EVENTS_MODULE}.ResponseProtocolError(stream_id, message, code) is gone")
    codes = _class(EVENTS_MODULE, "ErrorCode")  # mitmproxy 12's `code`; 11's is the status
    if codes is not None and not callable(getattr(codes, "http_status_code", None)):
        found.append(f"{EVENTS_MODULE}.ErrorCode.http_status_code is gone: page_status cannot "
                     "tell a page's status")
    return found
