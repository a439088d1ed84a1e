"""A short plain-text answer, marked as a cache MISS, when the origin cannot be reached.

mitmproxy writes its own HTML error page when the connection to the origin fails or breaks; no
addon hook can replace that page (the `error` hook runs before it and cannot set a response). Its
HTTP/1 server builds the page with one module-level function, which is swapped here for one that
answers in the form every other response of this proxy has: X-Cache and Cache-Status present.
"""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.net.http import status_codes

from caching_proxy.options import CACHE_NAME
from caching_proxy.policy import cache_status


def make_error_response(status_code: int, message: str = "") -> bytes:
    from mitmproxy.net.http import http1

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


def install() -> None:
    """Idempotent; a mitmproxy without the hook point keeps its own page."""
    try:
        from mitmproxy.proxy.layers.http import _http1
    except ImportError:  # pragma: no cover - layout of a future mitmproxy
        return
    if hasattr(_http1, "make_error_response"):
        _http1.make_error_response = make_error_response
