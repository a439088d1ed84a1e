"""Invalidation after unsafe requests (RFC 9111 4.4), in the store's key form (policy/keys.py)."""

from __future__ import annotations

from urllib.parse import urljoin

from caching_proxy.policy.keys import origin_of, url_key

from .fields import Headers, first_value

# RFC 9110 9.2.1. Method names are case-sensitive: "get" is an unknown, hence unsafe, method.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def invalidation_uris(
    method: str, status: int, request_url: str, response_headers: Headers
) -> list[str]:
    """Keys to invalidate after this exchange (`keys.url_key` form).

    4.4: a non-error (2xx/3xx) response to an unsafe method (or one whose safety is unknown)
    MUST invalidate the target URI; Location and Content-Location MAY be, and MUST NOT be when
    their origin differs from the target's (a denial-of-service guard).
    """
    if method in SAFE_METHODS or not 200 <= status < 400:
        return []
    target = url_key(request_url)
    if target is None:
        return []
    out = [target]
    origin = origin_of(target)
    for name in ("location", "content-location"):
        value = first_value(response_headers, name)
        if not value:
            continue
        url = url_key(urljoin(target, value))
        if url is not None and origin_of(url) == origin and url not in out:
            out.append(url)
    return out
