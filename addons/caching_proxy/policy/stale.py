"""Serving a stale response when the origin fails (RFC 5861 4, nginx proxy_cache_use_stale).

Pure functions: which failures an operator allows stale answers for, and whether a stored
response may answer a given failure now.
"""

from __future__ import annotations

import math

from .directives import RequestDirectives
from .lookup import can_serve_stale_on_error
from .storing import StoredMeta

# nginx's proxy_cache_use_stale conditions this cache knows: "error" (origin unreachable or the
# connection broke), "timeout" (an origin timeout of this proxy), "http_NNN" (the origin's status).
# "http_429" (Too Many Requests) is no error of RFC 5861's: only the operator's condition lets a
# stale response answer it (on by default: a rate-limited origin's refusal is no answer to keep).
USE_STALE_CONDITIONS = frozenset(
    {"error", "timeout", "http_429", "http_500", "http_502", "http_503", "http_504"}
)
# RFC 5861 4: stale-if-error covers these statuses and failures to reach the origin.
ERROR_STATUSES = frozenset({500, 502, 503, 504})


def parse_use_stale(text: str) -> frozenset[str]:
    """'error, timeout http_503' -> the conditions; 'off' or '' -> none. ValueError on others."""
    words = frozenset(text.replace(",", " ").lower().split()) - {"off"}
    unknown = sorted(words - USE_STALE_CONDITIONS)
    if unknown:
        raise ValueError(
            f"unknown cache_use_stale condition {unknown[0]!r}: use "
            + ", ".join(sorted(USE_STALE_CONDITIONS))
        )
    return words


def failure_of_status(status: int) -> str | None:
    """The failure an origin's answer is, or None when it is an answer to forward as is."""
    return f"http_{status}" if status in ERROR_STATUSES or status == 429 else None


def serve_stale_on_failure(
    meta: StoredMeta,
    directives: RequestDirectives,
    now: float,
    failure: str,
    use_stale: frozenset[str],
) -> bool:
    """Whether the stored response answers instead of `failure` (one of USE_STALE_CONDITIONS).

    The response's and the request's stale-if-error always apply (RFC 5861 4); a condition the
    operator listed allows any staleness, as nginx does (the store keeps stale entries for
    cache_keep_stale seconds, which bounds it). Never for responses that forbid stale answers.
    """
    window = math.inf if failure in use_stale else 0.0
    if failure == "http_429" and not window:
        return False  # stale-if-error does not cover it (RFC 5861 4: 500, 502, 503, 504)
    return can_serve_stale_on_error(meta, directives, now, window)
