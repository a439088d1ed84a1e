"""The Cache-Status response field (RFC 9211)."""

from __future__ import annotations

import math

from .structured import serialize_token_or_string

_SF_INTEGER_MAX = 999_999_999_999_999  # RFC 8941 3.3.1


def cache_status(
    name: str,
    *,
    hit: bool,
    fwd: str | None = None,
    fwd_status: int | None = None,
    stored: bool = False,
    ttl: float | None = None,
    collapsed: bool = False,
    detail: str | None = None,
) -> str:
    """One Cache-Status list member, e.g. 'caching-proxy; fwd=stale; fwd-status=304; ttl=60'.

    The name is an sf-token when it can be, else an sf-string (RFC 9211 2). fwd is one of the
    2.2 tokens (bypass, method, uri-miss, vary-miss, miss, request, stale, partial). ttl is
    rounded down, so a response 0.5 s past its lifetime shows ttl=-1, not ttl=0.
    """
    parts = [serialize_token_or_string(name)]
    if hit:
        parts.append("hit")
    if fwd is not None:
        parts.append(f"fwd={serialize_token_or_string(fwd)}")
    if fwd_status is not None:
        parts.append(f"fwd-status={int(fwd_status)}")
    if stored:
        parts.append("stored")
    if collapsed:
        parts.append("collapsed")
    if ttl is not None and not math.isnan(ttl):
        if math.isinf(ttl):
            t = _SF_INTEGER_MAX if ttl > 0 else -_SF_INTEGER_MAX
        else:
            t = max(-_SF_INTEGER_MAX, min(_SF_INTEGER_MAX, math.floor(ttl)))
        parts.append(f"ttl={t}")
    if detail is not None:
        parts.append(f"detail={serialize_token_or_string(detail)}")
    return "; ".join(parts)
