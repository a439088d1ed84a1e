"""Two things mitmproxy's HTTP/1 origin side does not do, added by wrapping two of its methods:
interim responses and one retry on a dead reused connection. One of the internals behind
caching_proxy.mitm.internals (whose `problems()` includes this module's).

**Interim responses** (RFC 9110 15.2). mitmproxy's `Http1Client.read_headers` takes the first
head the origin sends as the final one, so a `103 Early Hints` or `102 Processing` became the
response and the final head that followed was dropped as "Unexpected data from server" (the
client hung). The wrapper looks at the head at the start of the buffer before mitmproxy does: a
1xx other than 101 is taken out of the buffer and forwarded, as Squid, Apache httpd and HAProxy
do, to an HTTP/1.1 client (raw bytes on the client connection, so mitmproxy's HTTP/1 server keeps
no trace of it and can still write an error page) or an HTTP/2 client (as informational
HEADERS, the way mitmproxy sends its own 100 Continue); an HTTP/1.0 client gets none (RFC 9110
15.2: it cannot parse them). `100 Continue` from the origin is dropped: mitmproxy answers the
client's `Expect: 100-continue` itself and does not forward the expectation. The interim head
never reaches the flow: never stored, none of its fields merged into the final response, which
goes through every hook as any other.

**Retry on a dead reused connection** (nginx `proxy_next_upstream error`). When the origin closes
a kept-alive connection just as a request is sent on it, mitmproxy fails the flow ("server
closed connection") and the client gets a 502. The `Http1Client.read_headers` wrapper tags that
failure with what the connection knew (`origin_retry.DeadConnection`: had it carried an exchange
before, did the origin close it, had any response byte arrived); the `HttpStream.
handle_protocol_error` wrapper asks `origin_retry.may_retry` and, when allowed, sends the request
again on a new connection the way mitmproxy sent it the first time (`make_server_connection`,
then the head with no body), without running the `error` hook. Any other failure, and the
second one, goes on to mitmproxy's own handling (the `error` hook, the 502 page).

Both mitmproxy lines this package supports (11 and 12) have the same methods and fields used
here; `problems()` names any that changed and tests/unit/test_origin_http1.py drives both
behaviours through a real proxy. A mitmproxy that lacks one is left unpatched (warned once).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
from collections.abc import Callable, Generator
from typing import Any, Literal

from mitmproxy.connection import ConnectionState
from mitmproxy.net.http import http1
from mitmproxy.proxy import commands, events

from caching_proxy.cache.flow_state import TIMEOUT_KEY
from caching_proxy.edge import hop_by_hop
from caching_proxy.policy.retry import DeadConnection, may_retry

log = logging.getLogger(__name__)

HTTP1_MODULE = "mitmproxy.proxy.layers.http._http1"
HTTP_MODULE = "mitmproxy.proxy.layers.http"
EVENTS_MODULE = "mitmproxy.proxy.layers.http._events"
CLOSED_UNANSWERED = "server closed connection"  # mitmproxy's message for a close before any byte
RETRIES_KEY = "caching_proxy.origin_retries"  # flow.metadata: retries done for the flow

_ORIGINAL = "_caching_proxy_original"  # on a wrapper: the mitmproxy function it wraps
_DEAD = "_caching_proxy_dead"  # on a ResponseProtocolError event: its DeadConnection
_HEADS = "_caching_proxy_heads"  # on an Http1Client: final response heads read on its connection
_ANSWERING = "_caching_proxy_answering"  # on an Http1Client: stream id response bytes came for

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([0-9]{3})[ \r\n]")
_BLANK_LINE = re.compile(rb"\n\r?\n")  # the end of a head, as h11's ReceiveBuffer finds it

Destination = Literal["http1", "http2", "none"]
Gen = Generator[Any, Any, Any]


def is_interim(status: int) -> bool:
    """1xx other than 101, which is final (the connection switches protocols)."""
    return 100 <= status <= 199 and status != 101


def interim_destination(status: int, client_http_version: str, client_alpn: bytes | None,
                        ) -> Destination:
    """Where an interim response from the origin goes: the HTTP/1.1 or HTTP/2 client, or
    nowhere (an HTTP/1.0 client; 100 Continue, which mitmproxy already answered)."""
    if not is_interim(status) or status == 100:
        return "none"
    if client_alpn == b"h2":
        return "http2"
    return "http1" if client_http_version == "HTTP/1.1" else "none"


def _head_at_start(data: bytes) -> tuple[int, list[bytes]] | None:
    """Status and lines (without the blank line) of the complete head `data` starts with."""
    status = _STATUS_LINE.match(data)
    end = _BLANK_LINE.search(data) if status else None
    if status is None or end is None:
        return None
    lines = [line.removesuffix(b"\r") for line in data[: end.end()].split(b"\n")][:-2]
    return int(status.group(1)), lines


# -- the wrappers -----------------------------------------------------------------------------

_originals: dict[str, Callable[..., Gen]] = {}


def _read_headers(self: Any, event: Any) -> Gen:
    """Http1Client.read_headers: interim heads first; a close tagged for the retry decision."""
    original = _originals["read_headers"]
    if isinstance(event, events.DataReceived) and self.request is not None:
        if self.buf:
            setattr(self, _ANSWERING, self.stream_id)
        while self.buf:
            # A copy of what is buffered while no head is complete: one read's worth at most.
            found = _head_at_start(bytes(self.buf))
            if found is None:
                break
            status, lines = found
            if not is_interim(status):
                setattr(self, _HEADS, getattr(self, _HEADS, 0) + 1)
                break
            interim = _parse_head(lines)
            if interim is None:
                break  # mitmproxy reports the malformed head as it does any other
            self.buf.maybe_extract_lines()
            yield from _forward_interim(self, interim)
    elif isinstance(event, events.ConnectionClosed) and self.stream_id is not None:
        dead = DeadConnection(
            reused=getattr(self, _HEADS, 0) > 0,
            # The origin's FIN or RST leaves our side writable; our own close (a timeout cut,
            # the client gone) has already marked the connection closed.
            closed_by_origin=bool(self.conn.state & ConnectionState.CAN_WRITE),
            response_started=bool(self.buf) or getattr(self, _ANSWERING, None) == self.stream_id,
        )
        for command in original(self, event):
            inner = getattr(command, "event", None)
            if getattr(inner, "message", None) == CLOSED_UNANSWERED:
                setattr(inner, _DEAD, dead)
            yield command
        return
    yield from original(self, event)


def _parse_head(lines: list[bytes]) -> Any:
    try:
        return http1.read_response_head(lines)
    except ValueError:
        return None


def _forward_interim(self: Any, interim: Any) -> Gen:
    # The HTTP layer's own modules are imported where used: a mitmproxy without them is
    # refused by problems() at install, never an import error at start-up.
    from mitmproxy.proxy.layers.http import SendHttp
    from mitmproxy.proxy.layers.http._events import ResponseHeaders

    client = self.context.client
    hop_by_hop.strip(interim.headers)  # RFC 9110 7.6.1, as for a final response (guard.py)
    where = interim_destination(interim.status_code, self.request.http_version, client.alpn)
    if where == "http1":
        if client.state & ConnectionState.CAN_WRITE:
            yield commands.SendData(client, http1.assemble_response_head(interim))
    elif where == "http2":
        yield SendHttp(ResponseHeaders(self.stream_id, interim, False), client)
    else:
        yield commands.Log(f"interim response {interim.status_code} from the origin not "
                           f"forwarded to this {self.request.http_version} client", logging.DEBUG)


def _handle_protocol_error(self: Any, event: Any) -> Gen:
    """HttpStream.handle_protocol_error: a dead reused connection is retried once instead."""
    dead = getattr(event, _DEAD, None)
    if isinstance(dead, DeadConnection) and (yield from _retry(self, dead)):
        return
    yield from _originals["handle_protocol_error"](self, event)


def _retry(stream: Any, dead: DeadConnection) -> Gen:
    from mitmproxy.proxy.layers.http import SendHttp
    from mitmproxy.proxy.layers.http._events import RequestEndOfMessage, RequestHeaders

    flow = stream.flow
    request = flow.request
    retries = int(flow.metadata.get(RETRIES_KEY, 0))
    # Only a request wholly sent and still waiting for its response head.
    waiting = (stream.client_state == stream.state_done
               and stream.server_state == stream.state_wait_for_response_headers
               and flow.response is None and flow.error is None)
    if not waiting or not may_retry(
        request.method, has_body=bool(request.raw_content) or bool(request.trailers),
        streamed=bool(request.stream), dead=dead, retries=retries,
        timed_out=TIMEOUT_KEY in flow.metadata,
    ):
        return False
    flow.metadata[RETRIES_KEY] = retries + 1
    yield commands.Log(f"caching-proxy: the origin closed a reused connection before answering "
                       f"{request.method} {request.path}; sending it again on a new connection",
                       # WARNING: mitmproxy's connection log is quiet without --verbose, and a
                       # retry is worth seeing (nginx logs its upstream errors too).
                       logging.WARNING)
    # A failure to connect is handled (502, error hook) inside make_server_connection.
    if (yield from stream.make_server_connection()):
        # As HttpStream.state_consume_request_body sends a request without body or trailers.
        yield SendHttp(RequestHeaders(stream.stream_id, request, True), stream.context.server)
        yield SendHttp(RequestEndOfMessage(stream.stream_id), stream.context.server)
    return True


# -- installing and checking ------------------------------------------------------------------

_WRAPPERS: dict[str, tuple[str, str, Callable[..., Gen]]] = {
    "read_headers": (HTTP1_MODULE, "Http1Client", _read_headers),
    "handle_protocol_error": (HTTP_MODULE, "HttpStream", _handle_protocol_error),
}


def _class(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def _unwrapped(cls: Any, method: str) -> Any:
    function = getattr(cls, method, None)
    return getattr(function, _ORIGINAL, function)


def install() -> bool:
    """Wrap the two methods (idempotent). False, changing nothing, where this mitmproxy lacks
    what the wrappers rely on (see problems(); logged once)."""
    found = problems()
    if found:
        log.warning("caching-proxy: this mitmproxy's HTTP/1 origin side changed (%s): interim "
                    "responses are not forwarded and dead reused connections not retried",
                    "; ".join(found))
        return False
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
    """Put mitmproxy's methods back (for tests that show what mitmproxy does alone)."""
    for method, (module, name, _) in _WRAPPERS.items():
        cls = _class(module, name)
        if cls is not None and method in _originals:
            setattr(cls, method, _originals[method])


def problems() -> list[str]:
    """What of mitmproxy's HTTP/1 origin side the wrappers rely on is missing or changed, one
    line each naming it; empty when all is as expected."""
    found: list[str] = []
    client = _class(HTTP1_MODULE, "Http1Client")
    stream = _class(HTTP_MODULE, "HttpStream")
    if client is None:
        found.append(f"{HTTP1_MODULE}.Http1Client is gone")
    else:
        read = getattr(_unwrapped(client, "read_headers"), "__code__", None)
        if read is None or read.co_varnames[:2] != ("self", "event"):
            found.append(f"{HTTP1_MODULE}.Http1Client.read_headers(self, event) is gone")
        else:
            if CLOSED_UNANSWERED not in read.co_consts:
                found.append(f"{HTTP1_MODULE}.Http1Client.read_headers no longer reports a close "
                             f"before any response byte as {CLOSED_UNANSWERED!r}")
            if "maybe_extract_lines" not in read.co_names:
                found.append(f"{HTTP1_MODULE}.Http1Client.read_headers no longer takes the head "
                             "with buf.maybe_extract_lines()")
        fields = {name for cls in client.__mro__ for name in getattr(cls, "__annotations__", {})}
        for field in ("buf", "request", "stream_id"):
            if field not in fields:
                found.append(f"{HTTP1_MODULE}.Http1Connection.{field} is gone")
    if stream is None:
        found.append(f"{HTTP_MODULE}.HttpStream is gone")
    else:
        for method in ("make_server_connection", "state_done", "state_wait_for_response_headers"):
            if not callable(getattr(stream, method, None)):
                found.append(f"{HTTP_MODULE}.HttpStream.{method} is gone")
        handle = getattr(_unwrapped(stream, "handle_protocol_error"), "__code__", None)
        if handle is None or handle.co_varnames[:2] != ("self", "event"):
            found.append(f"{HTTP_MODULE}.HttpStream.handle_protocol_error(self, event) is gone")
        init = getattr(stream.__init__, "__code__", None)
        if init is None or not {"client_state", "server_state"} <= set(init.co_names):
            found.append(f"{HTTP_MODULE}.HttpStream.client_state/server_state are gone")
        # Unwrapped: mitmproxy's @expect decorates it.
        consume = getattr(stream, "state_consume_request_body", None)
        send = getattr(inspect.unwrap(consume), "__code__", None) if consume else None
        if send is None or not {"make_server_connection", "RequestHeaders",
                                "RequestEndOfMessage"} <= set(send.co_names):
            found.append(f"{HTTP_MODULE}.HttpStream.state_consume_request_body no longer sends "
                         "a request as make_server_connection, RequestHeaders, RequestEndOfMessage")
    # The events this module builds, by their leading fields in order.
    expected = {"RequestHeaders": ["stream_id", "request", "end_stream"],
                "ResponseHeaders": ["stream_id", "response", "end_stream"],
                "RequestEndOfMessage": ["stream_id"], "ResponseProtocolError": ["stream_id", "message"]}
    for name, names in expected.items():
        leading = list(getattr(_class(EVENTS_MODULE, name), "__dataclass_fields__", {}))
        if leading[: len(names)] != names:
            found.append(f"{EVENTS_MODULE}.{name}({', '.join(names)}, ...) is gone")
    send_http = getattr(_class(HTTP_MODULE, "SendHttp"), "__dataclass_fields__", {})
    if list(send_http) != ["event", "connection"]:
        found.append(f"{HTTP_MODULE}.SendHttp(event, connection) is gone")
    return found
