"""The proxy's answer when it refuses a request (the guard, a bounded head, a failed check)."""

from __future__ import annotations

from mitmproxy import http

from caching_proxy.cache.serve import own_answer


def refusal_response(status: int, reason: str, detail: str = "client-error") -> http.Response:
    """`status` saying `reason` in plain text, closing the connection; Cache-Status fwd=bypass
    with `detail` (serve.own_answer)."""
    return own_answer(status, f"{status} {reason}\n", fwd="bypass", detail=detail)
