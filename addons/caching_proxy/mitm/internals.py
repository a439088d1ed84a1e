"""The parts of mitmproxy that are not its API but that this proxy needs, each behind one function.

mitmproxy gives an addon no way to replace the error page its HTTP/1 server writes when the
origin fails, nor to cut a flow's origin connection (for the origin timeouts). Both are done
here, and only here, through internals that mitmproxy 11 and 12 share:

- `mitmproxy.proxy.layers.http._http1.make_error_response(status_code, message="")`, looked up
  as a module global by `Http1Server.send` and `Http1Server.read_headers` on every error page;
- `Proxyserver.connections`: client connection id -> its connection handler;
- `ConnectionHandler.transports`: connection -> `ConnectionIO`, whose `handler` is the asyncio
  task serving that connection; cancelling a server connection's task fails its flow.

Two methods of mitmproxy's HTTP/1 origin side are wrapped by their own adapter,
`origin_http1.py` (`Http1Client.read_headers`: interim 1xx responses forwarded, never taken as
final; `HttpStream.handle_protocol_error`: one retry on a dead reused connection); its
`problems()` is part of this module's.

`problems()` lists what of this a given mitmproxy lacks, naming each internal;
tests/unit/test_internals.py fails on any, and drives both functions through a real proxy.
At run time nothing here raises: a missing internal turns off the feature it serves (mitmproxy's
own error page; no timeout cut) and is logged once.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from mitmproxy import connection

log = logging.getLogger(__name__)

ERROR_PAGE_MODULE = "mitmproxy.proxy.layers.http._http1"
ERROR_PAGE_FUNCTION = "make_error_response"
ERROR_PAGE_CALLERS = ("send", "read_headers")  # methods of its Http1Server
_warned: set[str] = set()


def _warn_once(what: str, consequence: str) -> None:
    if what not in _warned:
        _warned.add(what)
        log.warning(f"caching-proxy: this mitmproxy has no {what}: {consequence}")


def _error_page_module() -> ModuleType | None:
    try:
        return importlib.import_module(ERROR_PAGE_MODULE)
    except ImportError:
        return None


def install_error_page(page: Callable[[int, str], bytes]) -> bool:
    """Make mitmproxy's HTTP/1 server write `page(status_code, message)` (a whole HTTP/1
    response) wherever it writes an error page. Idempotent. False, leaving mitmproxy's page,
    where this mitmproxy has no such hook point."""
    module = _error_page_module()
    if module is None or not callable(getattr(module, ERROR_PAGE_FUNCTION, None)):
        _warn_once(f"{ERROR_PAGE_MODULE}.{ERROR_PAGE_FUNCTION}",
                   "origin failures get mitmproxy's HTML error page")
        return False
    setattr(module, ERROR_PAGE_FUNCTION, page)
    return True


def cancel_origin_connections(master: Any, client_id: str, reason: str) -> int:
    """Cancel the task of every origin connection of the client connection `client_id`, which
    makes mitmproxy fail the flow on it and run the `error` hook (`reason` becomes the flow's
    error while the connection is still being opened). How many were cancelled: 0 when the
    client connection is gone or this mitmproxy lacks the internals."""
    handlers = getattr(master.addons.get("proxyserver"), "connections", None)
    if not isinstance(handlers, Mapping):
        _warn_once("Proxyserver.connections", "origin timeouts cannot cut a connection")
        return 0
    handler = handlers.get(client_id)
    if handler is None:
        return 0
    transports = getattr(handler, "transports", None)
    if not isinstance(transports, Mapping):
        _warn_once("ConnectionHandler.transports", "origin timeouts cannot cut a connection")
        return 0
    cancelled = 0
    for conn, io in list(transports.items()):
        task = getattr(io, "handler", None)
        if isinstance(conn, connection.Server) and isinstance(task, asyncio.Task):
            task.cancel(reason)
            cancelled += 1
    return cancelled


# -- client connections (client_limits.py): mitmproxy gives an addon no way to close an idle
# -- client connection, to learn when its bytes arrive, or whether a response is still being
# -- written to it. Relied on, besides Proxyserver.connections: `ConnectionHandler.client`, and
# -- the client's `ConnectionIO` in `transports`: `reader` (read only by
# -- `ConnectionHandler.handle_connection`, which fetches it after the client_connected hook),
# -- `writer` (an asyncio.StreamWriter) and `handler` (the task reading the connection; cancelled,
# -- mitmproxy closes the connection and runs client_disconnected).


class _ReadsNoted:
    """A client connection's reader that calls `on_data` before handing on what it read."""

    def __init__(self, reader: Any, on_data: Callable[[], None]) -> None:
        self._reader = reader
        self._on_data = on_data

    async def read(self, n: int = -1) -> bytes:
        data: bytes = await self._reader.read(n)
        if data:
            self._on_data()
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


def _client_io(master: Any, client_id: str) -> Any:
    """The ConnectionIO of the client connection `client_id`, or None."""
    handlers = getattr(master.addons.get("proxyserver"), "connections", None)
    if not isinstance(handlers, Mapping):
        _warn_once("Proxyserver.connections", "client timeouts cannot close a connection")
        return None
    handler = handlers.get(client_id)
    if handler is None:
        return None
    transports = getattr(handler, "transports", None)
    client = getattr(handler, "client", None)
    if not isinstance(transports, Mapping) or client is None:
        _warn_once("ConnectionHandler.transports", "client timeouts cannot close a connection")
        return None
    return transports.get(client)


def watch_client_reads(master: Any, client_id: str, on_data: Callable[[], None]) -> bool:
    """Call `on_data()` each time bytes arrive on the client connection `client_id`, before
    mitmproxy handles them. Works only from the client_connected hook (mitmproxy starts reading
    after it). False when the connection is gone or this mitmproxy lacks the internals."""
    io = _client_io(master, client_id)
    reader = getattr(io, "reader", None)
    if reader is None or not callable(getattr(reader, "read", None)):
        if io is not None:
            _warn_once("ConnectionIO.reader", "a kept-alive connection's next request head is "
                       "timed from the previous response, not from its first byte")
        return False
    if not isinstance(reader, _ReadsNoted):
        io.reader = _ReadsNoted(reader, on_data)
    return True


def close_client(master: Any, client_id: str, reason: str, last_words: bytes = b"") -> bool:
    """Write `last_words` as they are (raw: on a TLS connection they would go unencrypted, so
    give none there) to the client connection `client_id`, then close it: the task reading it is
    cancelled, mitmproxy fails the flows on it, flushes what was written and runs
    client_disconnected. False when the connection is gone or this mitmproxy lacks the
    internals."""
    io = _client_io(master, client_id)
    task = getattr(io, "handler", None)
    if not isinstance(task, asyncio.Task):
        if io is not None:
            _warn_once("ConnectionIO.handler", "client timeouts cannot close a connection")
        return False
    writer = getattr(io, "writer", None)
    if last_words and isinstance(writer, asyncio.StreamWriter) and not writer.is_closing():
        writer.write(last_words)
    task.cancel(reason)
    return True


def client_unsent_bytes(master: Any, client_id: str) -> int:
    """Bytes mitmproxy wrote to the client connection `client_id` that the kernel has not taken
    yet (asyncio's write buffer): a response still being sent. 0 when none or unknown."""
    writer = getattr(_client_io(master, client_id), "writer", None)
    transport = getattr(writer, "transport", None)
    try:
        return int(transport.get_write_buffer_size()) if transport is not None else 0
    except (AttributeError, RuntimeError):
        return 0


def problems() -> list[str]:
    """What of the internals above this mitmproxy lacks or has changed, one line each naming
    the internal; empty when all are as expected."""
    found: list[str] = []
    module = _error_page_module()
    if module is None:
        return [f"module {ERROR_PAGE_MODULE} is gone", *_connection_problems(),
                *_origin_http1_problems(), *_client_http1_problems(), *_http2_server_problems()]
    page = getattr(module, ERROR_PAGE_FUNCTION, None)
    if not callable(page):
        found.append(f"{ERROR_PAGE_MODULE}.{ERROR_PAGE_FUNCTION} is gone")
    else:
        params = list(inspect.signature(page).parameters.values())
        if [p.name for p in params] != ["status_code", "message"] or params[1].default != "":
            found.append(f"{ERROR_PAGE_MODULE}.{ERROR_PAGE_FUNCTION}{inspect.signature(page)} "
                         "is no longer (status_code, message='')")
    server = getattr(module, "Http1Server", None)
    for method in ERROR_PAGE_CALLERS:
        func = getattr(server, method, None)
        # client_http1 wraps read_headers: what calls the page is the function it wraps.
        code = getattr(getattr(func, "_caching_proxy_original", func), "__code__", None)
        if code is None or ERROR_PAGE_FUNCTION not in code.co_names:
            found.append(f"{ERROR_PAGE_MODULE}.Http1Server.{method} no longer calls the module's "
                         f"{ERROR_PAGE_FUNCTION}: replacing it changes no error page")
    return (found + _connection_problems() + _origin_http1_problems() + _client_http1_problems()
            + _http2_server_problems())


def _origin_http1_problems() -> list[str]:
    from caching_proxy.mitm import origin_http1

    return origin_http1.problems()


def _client_http1_problems() -> list[str]:
    from caching_proxy.mitm import client_http1

    return client_http1.problems()


def _http2_server_problems() -> list[str]:
    from caching_proxy.mitm import http2_server

    return http2_server.problems()


def _connection_problems() -> list[str]:
    from mitmproxy.addons import proxyserver
    from mitmproxy.proxy import server

    found = []
    if "connections" not in getattr(proxyserver.Proxyserver, "__annotations__", {}):
        found.append("mitmproxy.addons.proxyserver.Proxyserver.connections is gone")
    if "transports" not in getattr(server.ConnectionHandler, "__annotations__", {}):
        found.append("mitmproxy.proxy.server.ConnectionHandler.transports is gone")
    fields = getattr(server.ConnectionIO, "__dataclass_fields__", {})
    if "handler" not in fields:
        found.append("mitmproxy.proxy.server.ConnectionIO.handler is gone")
    for name in ("reader", "writer"):  # client_limits.py
        if name not in fields:
            found.append(f"mitmproxy.proxy.server.ConnectionIO.{name} is gone")
    if "client" not in getattr(server.ConnectionHandler, "__annotations__", {}):
        found.append("mitmproxy.proxy.server.ConnectionHandler.client is gone")
    reads = getattr(server.ConnectionHandler.handle_connection, "__code__", None)
    if reads is None or "reader" not in reads.co_varnames:
        found.append("mitmproxy.proxy.server.ConnectionHandler.handle_connection no longer "
                     "reads ConnectionIO.reader: client bytes are not noticed")
    return found
