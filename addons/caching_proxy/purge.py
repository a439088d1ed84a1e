"""PURGE: remove stored responses over HTTP, for the operator only; never forwarded to the origin.

`PURGE /path` removes that URL with all its Vary variants; a path with `*` is a glob over the
paths stored for the origin (`PURGE /api/*`). Allowed from loopback peers, or, when
`cache_purge_secret` is set, only with that secret in `X-Purge-Secret` (nginx's ngx_cache_purge
and Varnish's usual VCL both restrict PURGE by client address; the secret covers proxies placed
behind a load balancer, where every peer is the balancer).
"""

from __future__ import annotations

import glob
import hmac
import ipaddress
import json
import logging
from fnmatch import fnmatchcase

from mitmproxy import http

from caching_proxy.addon import CacheAddon
from caching_proxy.keys import origin_of, request_key, target_of, url_key
from caching_proxy.store import Store
from caching_proxy.store.guarded import STORE_ERRORS

log = logging.getLogger(__name__)

SECRET_FIELD = "X-Purge-Secret"


def is_loopback(peer_host: str) -> bool:
    try:
        address = ipaddress.ip_address(peer_host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def purge_allowed(peer_host: str, presented_secret: str | None, secret: str) -> bool:
    """Whether a PURGE from `peer_host`, carrying `presented_secret`, may remove responses."""
    if secret:
        return presented_secret is not None and hmac.compare_digest(
            presented_secret.encode(), secret.encode())
    return is_loopback(peer_host)


def key_of(url: str) -> str:
    """The store key of an absolute URL a user typed (keys.url_key); ValueError if it is not one."""
    key = url_key(url)
    if key is None:
        raise ValueError(f"not an http(s) URL or a /path: {url!r}")
    return key


def remove(store: Store, target: str, origin: str | None = None) -> int:
    """Remove the stored responses (every Vary variant) of `target`: a URL, or a /path of
    `origin`'s (of every origin in the store when None). A `*` makes the path a glob (fnmatch:
    `*`, `?`, `[...]`). How many responses were removed."""
    if target.startswith("/"):
        path, origins = target, None if origin is None else origin_of(key_of(origin + "/"))
    else:
        key = key_of(target)
        path, origins = target_of(key), origin_of(key)
    if "*" not in path:
        if origins is not None:
            return store.delete_url(origins + path)
        return store.delete_matching(lambda key: target_of(key) == path)
    return store.delete_matching(
        lambda key: (origins is None or origin_of(key) == origins)
        and fnmatchcase(target_of(key), path))


def prefix_glob(prefix: str) -> str:
    """The glob of every path that starts with `prefix`."""
    return glob.escape(prefix) + "*"


class Purge:
    def __init__(self, cache: CacheAddon) -> None:
        self.cache = cache

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.request.method != "PURGE" or flow.response is not None:
            return
        from mitmproxy import ctx

        peer = flow.client_conn.peername[0] if flow.client_conn.peername else ""
        secret = flow.request.headers.get(SECRET_FIELD)
        if not purge_allowed(peer, secret, ctx.options.cache_purge_secret):
            log.warning(f"caching-proxy: PURGE from {peer} refused")
            flow.response = answer(
                403, b"403 Forbidden: PURGE is allowed from loopback or with the purge secret\n")
            return
        # Every branch answers: a PURGE is never forwarded, whatever happens to the store.
        request = flow.request
        try:
            store = self.cache.store
            key = request_key(request, request.data.path.decode("latin-1"))
            removed = remove(store, key) if store is not None else 0
        except STORE_ERRORS as e:
            flow.response = answer(503, f"503 cache store unavailable: {e}\n".encode())
            return
        except Exception as e:  # e.g. a record the store cannot read
            log.warning(f"caching-proxy: PURGE {request.path} failed: {e!r}")
            flow.response = answer(500, f"500 purge failed: {e}\n".encode())
            return
        body = json.dumps({"purged": removed, "path": flow.request.path}) + "\n"
        # 404 when nothing was stored, as ngx_cache_purge answers.
        flow.response = answer(200 if removed else 404, body.encode(), "application/json")


def answer(status: int, body: bytes, content_type: str = "text/plain") -> http.Response:
    # The cache's own answer: not from the store, so MISS like every answer the store did not give.
    return http.Response.make(status, body, {"Content-Type": content_type, "X-Cache": "MISS"})
