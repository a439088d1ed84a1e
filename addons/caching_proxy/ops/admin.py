"""The admin API (`--admin-port`): the store's figures, its entries and purges, as JSON over HTTP.

Served by a small threaded HTTP server beside the proxy (the standard library's: the admin
surface needs no speed, and keeping it off mitmproxy's event loop means a long purge never holds
up a request). It listens on 127.0.0.1; `--admin-host` may widen that only together with
`--purge-secret`, which every request must then present as `Authorization: Bearer SECRET`
(401 without it, 403 with another). With `--workers N` the first worker serves it; purges work
on the shared store, so every worker (and every instance on the same Redis) sees them at once.
With or without a secret, a request must name this server in Host (421), carry no foreign
Origin (403) and send a POST as Content-Type: application/json (415): a web page can then
neither change the store nor, by DNS rebinding, read it. Timeouts and a connection cap bound
what hostile clients can hold (admin_http.py).

Endpoints: GET /stats, GET /entries?prefix=&tag=&limit=&cursor=, POST /purge, POST /clear,
GET /metrics (Prometheus text), GET /status (/stats with the last hour's figures, history.py)
and the read-only status page GET / with its script /status.js (status_page.py: without the
bearer token, as they hold no figure, but with the same Host and Origin checks). Errors are
JSON objects {"error": "..."} with a fitting status.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from mitmproxy import ctx, exceptions
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

if TYPE_CHECKING:
    from caching_proxy.ops.metrics import Metrics
    from caching_proxy.origin.gate import OriginGate

from mitmproxy.addonmanager import Loader

from caching_proxy.cache.addon import CacheAddon
from caching_proxy.cli import options as opts
from caching_proxy.edge.purge import is_loopback, prefix_glob, remove, remove_tags
from caching_proxy.mitm import workers
from caching_proxy.ops import history as history_module
from caching_proxy.ops import status_page
from caching_proxy.ops.admin_http import JSON, ApiError, BoundedServer, GuardedHandler, json_error
from caching_proxy.ops.report import stats_of
from caching_proxy.origin.figures import origin_stats
from caching_proxy.policy.keys import target_of
from caching_proxy.store import Store
from caching_proxy.store.guarded import STORE_ERRORS

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
PURGE_TARGETS = ("url", "prefix", "glob", "tags")
READ_BATCH = 200
ROUTES = {"/stats": "GET", "/entries": "GET", "/metrics": "GET", "/purge": "POST",
          "/clear": "POST", "/offline": "POST", "/status": "GET", "/": "GET", "/status.js": "GET"}


def parse_body(raw: bytes, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The JSON object of a request body; empty means {}. ApiError 400 for anything else, or
    for a field not in `allowed`."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ApiError(400, f"the body is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r} (fields: {', '.join(allowed)})")
    soft = body.get("soft", False)
    if not isinstance(soft, bool):
        raise ApiError(400, "soft must be true or false")
    return body


def purge(store: Store, body: dict[str, Any], origin: str | None) -> dict[str, Any]:
    """Carry out a POST /purge body (already parsed)."""
    given = [name for name in PURGE_TARGETS if name in body]
    if len(given) != 1:
        raise ApiError(400, f"give exactly one of {', '.join(PURGE_TARGETS)}")
    name, value = given[0], body[given[0]]
    soft = bool(body.get("soft", False))
    result: dict[str, Any] = {"soft": soft}
    if name == "tags":
        if isinstance(value, str):
            value = [value]
        if not value or not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise ApiError(400, "tags must be a non-empty list of strings")
        try:
            result.update(purged=remove_tags(store, value, soft), tags=value)
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        return result
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"{name} must be a non-empty string")
    if name == "prefix":
        if not value.startswith("/"):
            raise ApiError(400, "prefix must be a /path")
        target = prefix_glob(value)
    elif name == "url" and "*" in value:
        raise ApiError(400, "a url has no *: use glob")
    else:
        target = value
    if not target.startswith("/") and "://" not in target:
        raise ApiError(400, f"{name} must be a URL or a /path")
    try:
        removal = remove(store, target, origin=origin, soft=soft)
    except ValueError as e:
        raise ApiError(400, str(e)) from None
    result.update(purged=removal.count, matched=removal.matched)
    return result


def entries_page(store: Store, query: dict[str, list[str]], now: float) -> dict[str, Any]:
    """GET /entries: the stored responses in key order, `limit` at a time from after `cursor`
    (the last key of the previous page), filtered by `prefix` (a /path prefix, or the start of
    the URL) and `tag`."""
    unknown = sorted(set(query) - {"prefix", "tag", "limit", "cursor"})
    if unknown:
        raise ApiError(400, f"unknown parameter {unknown[0]!r} (prefix, tag, limit, cursor)")
    prefix = query.get("prefix", [""])[-1]
    tag = query.get("tag", [""])[-1]
    cursor = query.get("cursor", [""])[-1]
    try:
        limit = int(query.get("limit", [str(DEFAULT_LIMIT)])[-1])
    except ValueError:
        raise ApiError(400, "limit must be a whole number") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, f"limit must be 1-{MAX_LIMIT}")
    try:
        keys = store.tagged_keys(tag) if tag else list(store.response_keys())
    except ValueError as e:
        raise ApiError(400, str(e)) from None

    def wanted(key: str) -> bool:
        if prefix.startswith("/"):
            return target_of(key.split("\x00", 1)[0]).startswith(prefix)
        return key.startswith(prefix)

    keys = sorted(k for k in set(keys) if k > cursor and wanted(k))
    rows: list[dict[str, Any]] = []
    for start in range(0, len(keys), READ_BATCH):
        batch = keys[start:start + READ_BATCH]
        for key, entry in store.read_many(batch):
            if tag and tag not in entry.tags:
                continue
            rows.append({
                "url": entry.url, "status": entry.status, "size": entry.size, "age": int(entry.meta.age(now)),
                "ttl": int(entry.meta.ttl(now)),
                "vary": dict(zip(entry.meta.vary, entry.vary_values, strict=False)),
                "tags": list(entry.tags),
            })
            if len(rows) == limit:
                more = key != keys[-1]
                return {"entries": rows, "next_cursor": key if more else None}
    return {"entries": rows, "next_cursor": None}


class AdminServer(BoundedServer):
    def __init__(self, address: tuple[str, int], *, store_of: Callable[[], Store | None],
                 secret: str, origin: str | None, metrics: CollectorRegistry | None,
                 handler: type[BaseHTTPRequestHandler] | None = None,
                 live: Callable[[], dict[str, Any]] | None = None,
                 offline: Callable[[bool | None], bool] | None = None,
                 history: history_module.History | None = None) -> None:
        super().__init__(address, handler or Handler, admin_host=address[0])
        # Switches --offline in this process (None: says it without switching); whether on.
        self.offline = offline
        self.store_of = store_of
        self.secret = secret
        self.origin = origin
        self.metrics = metrics
        self.live = live  # this run's figures (uptime, open connections) for /stats
        self.history = history  # the last hour's samples for /status


class Handler(GuardedHandler):
    server: AdminServer
    server_version = "caching-proxy-admin"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("caching-proxy admin: " + format % args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def _handle(self, method: str) -> None:
        headers: dict[str, str] = {}
        try:
            status, payload, content_type = self._route(method)
        except ApiError as e:
            status, payload, content_type, headers = e.status, json_error(str(e)), JSON, e.headers
        except STORE_ERRORS as e:
            status, payload, content_type = 503, json_error(f"cache store unavailable: {e}"), JSON
        except Exception as e:  # a bug must not kill the admin thread; say what went wrong
            log.warning(f"caching-proxy admin: {method} {self.path} failed: {e!r}")
            status, payload, content_type = 500, json_error(f"internal error: {e}"), JSON
        if not self.body_read and self.has_body():
            # Its unread body would be read as the next request: a refused request could carry
            # one past the checks in it.
            self.close_connection = True
        headers = {**status_page.headers_for(content_type), **headers}
        # Outside the try: STORE_ERRORS has OSError, and a client gone is no store failure.
        self.answer(status, payload, content_type, headers)

    def _route(self, method: str) -> tuple[int, bytes, str]:
        self.checked(self.check_safety)  # before anything else, with or without a secret
        # The page holds no figure (its script sends the token); string tests that cannot fail.
        if not (self.path.partition("?")[0] in status_page.PAGE_ROUTES
                and method in ("GET", "HEAD") and self.server.secret):
            self.checked(self._authorize)
        parts = urlsplit(self.path)
        expected = ROUTES.get(parts.path)
        if expected is None:
            raise ApiError(404, f"no such endpoint {parts.path!r} (endpoints: "
                           f"{', '.join(sorted(ROUTES))})")
        if method != expected and not (method == "HEAD" and expected == "GET"):
            raise ApiError(405, f"{parts.path} takes {expected}", {"Allow": expected})
        raw = self.read_body(MAX_BODY)
        if parts.path in status_page.PAGE_ROUTES:
            return (200, *status_page.page(parts.path))
        store = self.server.store_of()
        if parts.path == "/offline":
            return 200, (json.dumps(self._offline(raw)) + "\n").encode(), "application/json"
        if parts.path == "/metrics":
            registry = self.server.metrics
            if registry is None:
                raise ApiError(404, "no metrics in this process")
            return 200, generate_latest(registry), CONTENT_TYPE_LATEST
        if store is None:
            raise ApiError(503, "the cache store is not open")
        if parts.path == "/stats":
            result = self._stats(store)
        elif parts.path == "/status":
            if self.server.history is None:
                raise ApiError(404, "no metrics in this process")
            result = status_page.status_of(self._stats(store), self.server.history)
        elif parts.path == "/entries":
            result = entries_page(store, parse_qs(parts.query, keep_blank_values=True),
                                  time.time())
        elif parts.path == "/purge":
            result = purge(store, parse_body(raw, (*PURGE_TARGETS, "soft")), self.server.origin)
        else:  # /clear
            body = parse_body(raw, ("soft",))
            if body.get("soft"):
                result = {"cleared": store.soft_clear(), "soft": True}
            else:
                usage = store.clear()
                result = {"cleared": usage.entries, "bytes": usage.bytes, "soft": False}
        return 200, (json.dumps(result) + "\n").encode(), "application/json"

    def _stats(self, store: Store) -> dict[str, Any]:
        result: dict[str, Any] = stats_of(store)
        if self.server.live is not None:
            result.update(self.server.live())
        result.update(status_page.memory_tier_of(store))
        return result

    def _offline(self, raw: bytes) -> dict[str, Any]:
        """POST /offline {"on": true|false}: never ask the origin (or again do); {} says."""
        switch = self.server.offline
        if switch is None:
            raise ApiError(404, "no origin gate in this process")
        on = parse_body(raw, ("on",)).get("on")
        if on is not None and not isinstance(on, bool):
            raise ApiError(400, "on must be true or false")
        return {"offline": switch(on)}

    def _authorize(self) -> None:
        secret = self.server.secret
        if not secret:
            if not is_loopback(self.client_address[0]):
                raise ApiError(403, "the admin API answers loopback only without a secret")
            return
        given = self.headers.get_all("Authorization") or []
        scheme, _, token = (given[0] if len(given) == 1 else "").partition(" ")
        token = token.strip(" \t")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "send Authorization: Bearer <the purge secret>",
                           {"WWW-Authenticate": 'Bearer realm="caching-proxy"'})
        # Raw bytes on both sides: the header was decoded as latin-1, so this gives back what
        # was sent, whatever it is; the secret may be any text (argv's bytes surrogate-escaped).
        if not hmac.compare_digest(token.encode("latin-1"),
                                   secret.encode("utf-8", "surrogateescape")):
            raise ApiError(403, "wrong secret")


class Admin:
    """The addon that runs the admin server while `cache_admin_port` is set."""

    def __init__(self, cache: CacheAddon, metrics: Metrics | None = None,
                 gate: OriginGate | None = None) -> None:
        self.cache = cache
        self.metrics = metrics
        self.gate = gate
        self.server: AdminServer | None = None
        self.thread: threading.Thread | None = None
        # Kept across configure (a reload): the hour's samples outlive a restarted server.
        self.history = None if metrics is None else history_module.History(
            lambda at: history_module.read(metrics.registry, at))

    def load(self, loader: Loader) -> None:
        opts.declare(loader, self)

    def configure(self, updated: set[str]) -> None:
        watched = {"cache_admin_port", "cache_admin_host", "cache_purge_secret", "mode"}
        if not updated & watched:
            return
        port, host = ctx.options.cache_admin_port, ctx.options.cache_admin_host
        secret = ctx.options.cache_purge_secret
        if not 0 <= port <= 65535:
            raise exceptions.OptionsError("cache_admin_port must be 0-65535")
        if port and not secret and not is_loopback(host):
            raise exceptions.OptionsError(
                f"the admin API on {host} needs --purge-secret (its bearer token); without one "
                "it listens on 127.0.0.1 only")
        self._stop()
        worker = workers.worker_number()
        if not port or (worker is not None and worker[0] != 1):
            return
        from caching_proxy.ops.commands import reverse_origin

        try:
            server = AdminServer(
                (host, port), store_of=lambda: self.cache.store, secret=secret,
                origin=reverse_origin(),
                metrics=None if self.metrics is None else self.metrics.registry,
                live=self._live, offline=None if self.gate is None else self.gate.switch_offline,
                history=self.history)
        except OSError as e:
            raise exceptions.OptionsError(
                f"cannot serve the admin API on {host}:{port}: {e.strerror or e}") from e
        if self.metrics is not None:
            self.metrics.admin_serves = True
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, name="caching-proxy admin",
                                       daemon=True)
        self.thread.start()
        if self.history is not None:
            self.history.start()

    def _live(self) -> dict[str, Any]:
        """This run's figures for /stats: the metrics' (uptime, connections), the origin's."""
        found = {} if self.metrics is None else self.metrics.live()
        if self.gate is not None:
            found["origin"] = origin_stats(self.gate)
        return found

    def done(self) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.history is not None:
            self.history.stop()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self.metrics is not None:
            self.metrics.admin_serves = False
