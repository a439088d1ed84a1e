"""The parts of mitmproxy that are not its API but that this proxy needs, each behind one function.

mitmproxy gives an addon no way to replace the error page its HTTP/1 server writes when the
origin fails, nor to cut a flow's origin connection (for the origin timeouts). Both are done
here, and only here, through internals that mitmproxy 11 and 12 share:

- `mitmproxy.proxy.layers.http._http1.make_error_response(status_code, message="")`, looked up
  as a module global by `Http1Server.send` and `Http1Server.read_headers` on every error page;
- `Proxyserver.connections`: client connection id -> its connection handler;
- `ConnectionHandler.transports`: connection -> `ConnectionIO`, whose `handler` is the asyncio
  task serving that connection; cancelling a server connection's task fails its flow.

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


def problems() -> list[str]:
    """What of the internals above this mitmproxy lacks or has changed, one line each naming
    the internal; empty when all are as expected."""
    found: list[str] = []
    module = _error_page_module()
    if module is None:
        return [f"module {ERROR_PAGE_MODULE} is gone", *_connection_problems()]
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
        code = getattr(getattr(server, method, None), "__code__", None)
        if code is None or ERROR_PAGE_FUNCTION not in code.co_names:
            found.append(f"{ERROR_PAGE_MODULE}.Http1Server.{method} no longer calls the module's "
                         f"{ERROR_PAGE_FUNCTION}: replacing it changes no error page")
    return found + _connection_problems()


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
    return found
