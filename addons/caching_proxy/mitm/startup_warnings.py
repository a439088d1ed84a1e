"""One-line warnings at start for settings that serve, but not as their operator expects.

- An origin whose host does not resolve: the proxy starts all the same (the stored answers,
  stale ones included, go on being served, and the name may resolve later), but says so once,
  naming the host, instead of a 502 per request later.
- --max-object-size above --cache-size on a diskcache store: a response between the two is
  fetched whole to be stored, and never kept (cache/capacity.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import Any
from urllib.parse import urlsplit

from mitmproxy.utils import human

log = logging.getLogger(__name__)

RESOLVE_TIMEOUT = 5.0  # seconds: a resolver that does not answer by then is warned about too


def size_warning(options: Any) -> str | None:
    """The warning for a largest object above the store's size, None when none is due."""
    from caching_proxy.store import is_redis_url

    if is_redis_url(getattr(options, "cache_store", "") or ""):
        return None  # Redis bounds itself (maxmemory); --cache-size is diskcache's
    try:
        largest = human.parse_size(options.cache_max_object_size) or 0
        size = human.parse_size(options.cache_size) or 0
    except ValueError:
        return None  # refused, with its own message, where the option is read
    if size and largest > size:
        return (f"--max-object-size {options.cache_max_object_size} is larger than --cache-size "
                f"{options.cache_size}: responses between the two are not stored")
    return None


async def resolve_warning(origin: str, timeout: float = RESOLVE_TIMEOUT) -> str | None:
    """The warning for an origin whose host does not resolve (resolved off the loop, within
    `timeout`), None when it resolves or is an address."""
    parts = urlsplit(origin)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.getaddrinfo(host, parts.port or 80, type=socket.SOCK_STREAM),
                               timeout)
        return None
    except TimeoutError:
        problem = f"no answer from the resolver within {timeout:g} s"
    except OSError as e:
        problem = getattr(e, "strerror", None) or str(e)
    return (f"the origin's host {host} does not resolve ({problem}); serving what is stored, "
            "and every request that needs the origin gets a 502 until it does")


async def warn_unresolved(origin: str) -> None:
    warning = await resolve_warning(origin)
    if warning:
        log.warning(f"caching-proxy: warning: {warning}")
