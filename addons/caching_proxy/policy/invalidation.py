"""Invalidation after unsafe requests (RFC 9111 4.4), and the URL form shared with the store."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from .fields import Headers, first_value

# RFC 9110 9.2.1. Method names are case-sensitive: "get" is an unknown, hence unsafe, method.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_url(url: str) -> str | None:
    """URL as "scheme://host:port/path?query": scheme and host lowercased (RFC 3986 6.2.2.1), port
    explicit, empty path as "/", userinfo and fragment dropped. None if not an http(s) URL."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname  # lowercased, IPv6 brackets removed
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if port is None:
        port = _DEFAULT_PORTS[scheme]
    if ":" in host:
        host = f"[{host}]"
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{host}:{port}{parts.path or '/'}{query}"


def _origin(normalized: str) -> str:
    # Up to the path: "scheme://host:port".
    return normalized[: normalized.index("/", normalized.index("//") + 2)]


def invalidation_uris(
    method: str, status: int, request_url: str, response_headers: Headers
) -> list[str]:
    """URLs to invalidate after this exchange, in normalize_url() form.

    4.4: a non-error (2xx/3xx) response to an unsafe method (or one whose safety is unknown)
    MUST invalidate the target URI; Location and Content-Location MAY be, and MUST NOT be when
    their origin differs from the target's (a denial-of-service guard).
    """
    if method in SAFE_METHODS or not 200 <= status < 400:
        return []
    target = normalize_url(request_url)
    if target is None:
        return []
    out = [target]
    origin = _origin(target)
    for name in ("location", "content-location"):
        value = first_value(response_headers, name)
        if not value:
            continue
        url = normalize_url(urljoin(target, value))
        if url is not None and _origin(url) == origin and url not in out:
            out.append(url)
    return out
