"""A short plain-text answer, marked as a cache MISS, when the origin cannot be reached.

mitmproxy writes its own HTML error page when the connection to the origin fails or breaks; no
addon hook can replace that page (the `error` hook runs before it and cannot set a response). Its
HTTP/1 server builds the page with one module-level function, which `install` swaps (through
internals.py) for one that answers in the form every other response of this proxy has: X-Cache
and Cache-Status present.

The same function lets the `error` hook choose the answer after all (`answer_instead`): a stored
stale response (stale-if-error) or a 504 for an origin timeout. mitmproxy passes the page
function the very message string it put in `flow.error.msg`, which identifies the flow.
"""

from __future__ import annotations

from collections import OrderedDict

from mitmproxy import http
from mitmproxy.net.http import status_codes

from caching_proxy.options import CACHE_NAME
from caching_proxy.policy import cache_status

# id(message) -> (message, the answer's bytes); bounded in case a client left before its answer.
_instead: OrderedDict[int, tuple[str, bytes]] = OrderedDict()
_MAX_PENDING = 1024


def answer_instead(flow: http.HTTPFlow, response: http.Response) -> None:
    """Send `response` (then close, as for any error page) instead of the error page of the
    failed `flow`. Call from the `error` hook. HTTP/1 clients only: mitmproxy resets HTTP/2
    streams without a page."""
    from mitmproxy.net.http import http1

    if flow.error is None:
        return
    response.headers["Connection"] = "close"
    message = flow.error.msg
    _instead[id(message)] = (message, bytes(http1.assemble_response(response)))
    while len(_instead) > _MAX_PENDING:
        _instead.popitem(last=False)


def has_answer(flow: http.HTTPFlow) -> bool:
    return flow.error is not None and id(flow.error.msg) in _instead


def make_error_response(status_code: int, message: str = "") -> bytes:
    from mitmproxy.net.http import http1

    pending = _instead.pop(id(message), None)
    if pending is not None and pending[0] is message:
        return pending[1]

    reason = status_codes.RESPONSES.get(status_code, "Error")
    text = f"{status_code} {reason}: {message.strip()}\n" if message else f"{status_code} {reason}\n"
    detail = "origin-error" if status_code in (502, 504) else "client-error"
    response = http.Response.make(
        status_code,
        text.encode("utf-8", "replace"),
        http.Headers(
            Content_Type="text/plain; charset=utf-8",
            Connection="close",
            X_Cache="MISS",
            Cache_Status=cache_status(CACHE_NAME, hit=False, fwd="miss", detail=detail),
        ),
    )
    return bytes(http1.assemble_response(response))


def install() -> bool:
    """Idempotent; a mitmproxy without the hook point keeps its own page (False)."""
    from caching_proxy import internals

    return internals.install_error_page(make_error_response)
