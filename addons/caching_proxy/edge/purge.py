"""PURGE: remove stored responses over HTTP, for the operator only; never forwarded to the origin.

`PURGE /path` removes that URL with all its Vary variants; a path with `*` is a glob over the
paths stored for the origin (`PURGE /api/*`); with `Surrogate-Key: a b` it removes the responses
tagged a or b instead, whatever the path (Fastly's purge by surrogate key), and with
`Fastly-Soft-Purge: 1` it marks them stale instead of removing them. Allowed from loopback peers, or, when
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
from dataclasses import dataclass
from fnmatch import fnmatchcase

from mitmproxy import http
from mitmproxy.addonmanager import Loader

from caching_proxy.cache.addon import CacheAddon
from caching_proxy.cache.serve import own_answer
from caching_proxy.cli import options as opts
from caching_proxy.edge.fail_closed import fail_closed
from caching_proxy.policy.keys import origin_of, request_key, target_of, url_key
from caching_proxy.policy.tags import parse_tags
from caching_proxy.store import Store
from caching_proxy.store.guarded import STORE_ERRORS
from caching_proxy.store.layout import tag_group

log = logging.getLogger(__name__)

SECRET_FIELD = "X-Purge-Secret"
SECRET_FIELD_BYTES = SECRET_FIELD.lower().encode()
# Fastly's: a PURGE with Surrogate-Key purges those tags; Fastly-Soft-Purge: 1 marks stale.
TAGS_FIELD = "Surrogate-Key"
SOFT_FIELD = "Fastly-Soft-Purge"


def is_loopback(peer_host: str) -> bool:
    try:
        address = ipaddress.ip_address(peer_host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def purge_allowed(peer_host: str, presented_secret: bytes | str | None, secret: str) -> bool:
    """Whether a PURGE from `peer_host`, carrying `presented_secret` (the field's raw bytes),
    may remove responses. Compared as bytes, so no spelling of the field can raise here."""
    if secret:
        if isinstance(presented_secret, str):
            presented_secret = presented_secret.encode("utf-8", "surrogateescape")
        return presented_secret is not None and hmac.compare_digest(
            presented_secret, secret.encode("utf-8", "surrogateescape"))
    return is_loopback(peer_host)


def presented_secret(request: http.Request) -> bytes | None:
    """The one X-Purge-Secret field's raw value; None when absent or sent more than once."""
    values = [v for k, v in request.headers.fields if k.lower() == SECRET_FIELD_BYTES]
    return values[0].strip(b" \t") if len(values) == 1 else None


def key_of(url: str) -> str:
    """The store key of an absolute URL a user typed (keys.url_key); ValueError if it is not one."""
    key = url_key(url)
    if key is None:
        raise ValueError(f"not an http(s) URL or a /path: {url!r}")
    return key


@dataclass(frozen=True, slots=True)
class Removal:
    """What a purge did: how many responses it removed (soft: marked stale), and what the
    target was matched as."""

    count: int
    matched: str


def counted(count: int, noun: str = "response", plural: str = "") -> str:
    """`1 response`, `2 responses`."""
    return f"{count} {noun}" if count == 1 else f"{count} {plural or noun + 's'}"


def remove(store: Store, target: str, origin: str | None = None, soft: bool = False) -> Removal:
    """Remove the stored responses (every Vary variant) of `target`: a URL, or a /path of
    `origin`'s (of every origin in the store when None). A `*` makes the path a glob (fnmatch:
    `*`, `?`, `[...]`). A URL whose origin has nothing stored there (the proxy's own address,
    as copied from a browser) is matched by its path and query instead. `soft` marks the
    responses stale instead of removing them."""
    given = None if origin is None else origin_of(key_of(origin + "/"))
    if target.startswith("/"):
        return _remove_path(store, target, given, soft)
    key = key_of(target)
    path, origins = target_of(key), origin_of(key)
    if "*" not in path:
        if store.holds_url(key):
            return Removal(store.delete_url(key, soft), key)
    elif any(origin_of(k) == origins for k in store.response_keys()):
        return _remove_path(store, path, origins, soft)
    return _remove_path(store, path, given, soft)


def _remove_path(store: Store, path: str, origins: str | None, soft: bool) -> Removal:
    seen: set[str] = set()

    def matches(key: str) -> bool:
        hit = (origins is None or origin_of(key) == origins) and (
            fnmatchcase(target_of(key), path) if "*" in path else target_of(key) == path)
        if hit:
            seen.add(origin_of(key))
        return hit

    if "*" not in path and origins is not None:
        key = origins + path
        return Removal(store.delete_url(key, soft), key)
    count = store.delete_matching(matches, soft)
    where = ", ".join(sorted(seen)) if seen else (origins or "any stored origin")
    return Removal(count, f"{path} at {where}")


def remove_tags(store: Store, tags: list[str], soft: bool = False) -> int:
    """Remove (`soft`: mark stale) the stored responses tagged with any of `tags`; how many.
    ValueError for a tag that cannot be one (before anything is removed)."""
    for tag in tags:
        tag_group(tag)
    return sum(store.purge_tag(tag, soft) for tag in tags)


def prefix_glob(prefix: str) -> str:
    """The glob of every path that starts with `prefix`."""
    return glob.escape(prefix) + "*"


class Purge:
    def __init__(self, cache: CacheAddon) -> None:
        self.cache = cache

    def load(self, loader: Loader) -> None:
        opts.declare(loader, self)

    @fail_closed
    def request(self, flow: http.HTTPFlow) -> None:
        if flow.request.method != "PURGE" or flow.response is not None:
            return
        from mitmproxy import ctx

        peer = flow.client_conn.peername[0] if flow.client_conn.peername else ""
        if not purge_allowed(peer, presented_secret(flow.request), ctx.options.cache_purge_secret):
            log.warning(f"caching-proxy: PURGE from {peer} refused")
            flow.response = answer(
                403, b"403 Forbidden: PURGE is allowed from loopback or with the purge secret\n")
            return
        # Every branch answers: a PURGE is never forwarded, whatever happens to the store.
        request = flow.request
        soft = request.headers.get(SOFT_FIELD, "").strip() == "1"
        tags = parse_tags(",".join(request.headers.get_all(TAGS_FIELD)))
        try:
            store = self.cache.store
            if store is None:
                removed = 0
            elif tags:
                removed = remove_tags(store, tags, soft)
            else:
                key = request_key(request, request.data.path.decode("latin-1"))
                removed = remove(store, key, soft=soft).count
        except ValueError as e:  # a tag that cannot be one
            flow.response = answer(400, f"400 {e}\n".encode())
            return
        except STORE_ERRORS as e:
            flow.response = answer(503, f"503 cache store unavailable: {e}\n".encode())
            return
        except Exception as e:  # e.g. a record the store cannot read
            log.warning(f"caching-proxy: PURGE {request.path} failed: {e!r}")
            flow.response = answer(500, f"500 purge failed: {e}\n".encode())
            return
        result: dict[str, object] = {"purged": removed}
        result.update({"tags": tags} if tags else {"path": flow.request.path})
        if soft:
            result["soft"] = True
        body = json.dumps(result) + "\n"
        # 404 when nothing was stored, as ngx_cache_purge answers.
        flow.response = answer(200 if removed else 404, body.encode(), "application/json")


def answer(status: int, body: bytes, content_type: str = "text/plain") -> http.Response:
    """A PURGE's result: the cache's own answer, kept alive (serve.own_answer)."""
    return own_answer(status, body, fwd="bypass", detail="purge", close=False,
                      content_type=content_type)
