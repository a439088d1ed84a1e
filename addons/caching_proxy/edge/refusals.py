"""The proxy's own answer when it refuses a request (the guard, a bounded head, a failed check)."""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.net.http import status_codes

from caching_proxy.cli.options import CACHE_NAME
from caching_proxy.policy import cache_status

# mitmproxy's table lacks 431 (RFC 6585).
REASONS = {431: "Request Header Fields Too Large"}


def refusal_response(status: int, reason: str, detail: str = "client-error") -> http.Response:
    """Plain text saying `reason`, closing the connection, marked as the cache's own answer
    (X-Cache: MISS; Cache-Status fwd=bypass with `detail`)."""
    response = http.Response.make(
        status, f"{status} {reason}\n".encode(),
        {"Content-Type": "text/plain; charset=utf-8", "Connection": "close",
         "X-Cache": "MISS",
         "Cache-Status": cache_status(CACHE_NAME, hit=False, fwd="bypass", detail=detail)},
    )
    response.reason = REASONS.get(status) or status_codes.RESPONSES.get(status, "Error")
    return response
