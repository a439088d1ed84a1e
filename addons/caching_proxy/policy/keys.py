"""THE cache key: the one form of a URL that lookup, store, invalidation, purge and `--list` share.

A key is `scheme://host:port/target`: scheme and host lower-cased (RFC 3986 6.2.2.1; a host is
case-insensitive, RFC 9110 4.2.3), the port always written, IPv6 hosts in brackets, and the
request target (path and query) exactly as forwarded: two targets the origin may tell apart are
never merged. Pure functions, no I/O; `request_key` takes mitmproxy's request fields as plain
values so that the policy's tests can use it too.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def primary_key(scheme: str, host: str, port: int, target: str) -> str:
    """The key of a request for `target` (path and query, as sent) to `scheme://host:port`."""
    host = host.lower()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme.lower()}://{host}:{port}{target or '/'}"


class RequestLike(Protocol):
    """The fields of a mitmproxy `http.Request` a key is made of."""

    scheme: str
    host: str
    port: int


def request_key(request: RequestLike, target: str) -> str:
    """The key of a forwarded request for `target` (its path and query as forwarded, or as a
    config-file rule rewrote them)."""
    return primary_key(request.scheme, request.host, request.port, target)


def url_key(url: str) -> str | None:
    """The key of an absolute http(s) URL as a user or a Location field writes it (default port
    filled in, userinfo and fragment dropped); None if it is not one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname  # lower-cased, brackets removed
    if scheme not in DEFAULT_PORTS or not host:
        return None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return primary_key(scheme, host, port or DEFAULT_PORTS[scheme], target)


def origin_of(key: str) -> str:
    """`scheme://host:port` of a key."""
    slash = key.find("/", key.find("://") + 3)
    return key if slash < 0 else key[:slash]


def target_of(key: str) -> str:
    """The path and query of a key."""
    return key[len(origin_of(key)):] or "/"
