"""The mitmproxy addon: looks requests up in the store and stores what the origin sends.

Every decision comes from `caching_proxy.policy`; this module only carries them out.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader

from caching_proxy import options as opts
from caching_proxy.entry import Entry, decode_headers, encode_headers
from caching_proxy.policy import (
    NO_DIRECTIVES,
    SAFE_METHODS,
    Action,
    CacheConfig,
    RequestDirectives,
    Rule,
    StoredMeta,
    bypass_reason,
    cache_status,
    client_not_modified,
    decide_store,
    evaluate,
    find_rule,
    freshen_headers,
    invalidation_uris,
    key_target,
    not_modified_headers,
    parse_request_directives,
    rule_config,
    storable_headers,
    vary_key,
)
from caching_proxy.store import Store, open_store

log = logging.getLogger(__name__)

META_KEY = "caching_proxy"
# The conditionals a cache answers itself; If-Range only goes with Range, which passes, and
# If-Match / If-Unmodified-Since requests pass too (see bypass_reason).
CONDITIONAL_FIELDS = ("if-none-match", "if-modified-since", "if-range")
STORE_ERRORS = (OSError, sqlite3.Error)


@dataclass(slots=True)
class FlowState:
    """What the request hook learned, for the response hook of the same flow."""

    url: str
    directives: RequestDirectives = NO_DIRECTIVES
    served: bool = False  # answered from the store: the response hook has nothing to do
    head: bool = False  # a HEAD turned into a GET so that the answer can be stored (as nginx does)
    stale: Entry | None = None  # the entry being revalidated
    client_conditionals: list[tuple[str, str]] | None = None  # removed on a miss, answered here
    request_time: float = 0.0
    fwd: str = "uri-miss"
    bypass: bool = False  # forwarded and never stored
    config: CacheConfig | None = None  # a config-file rule's storing settings, if one matched
    # How the request was answered, for the addons that count and log (one of OUTCOMES).
    outcome: str = "miss"


# hit: from the store without the origin; miss: from the origin; revalidated: the origin said 304
# to the cache's conditional; pass: forwarded, never cached (method, no-store, bypass);
# unavailable: only-if-cached with nothing usable stored.
OUTCOMES = ("hit", "miss", "revalidated", "pass", "unavailable")


def flow_url(request: http.Request) -> str:
    """The primary key: scheme, host, port and the path exactly as forwarded (no normalizing, so
    two targets the origin may tell apart are never merged)."""
    return f"{request.scheme}://{request.host}:{request.port}{request.data.path.decode('latin-1')}"


class CacheAddon:
    def __init__(self) -> None:
        self.store: Store | None = None
        self.config = CacheConfig()
        self.rules: tuple[Rule, ...] = ()
        self._store_key: tuple[str, int, int] | None = None
        self._store_warned = False
        # Called before the store is closed or replaced: addons that buffer writes flush them.
        self.before_close: list[Callable[[], None]] = []

    # -- configuration -------------------------------------------------------------------------

    def load(self, loader: Loader) -> None:
        for name, typespec, default, help_text in opts.OPTIONS:
            loader.add_option(name, typespec, default, help_text)

    def configure(self, updated: set[str]) -> None:
        try:
            self.config = opts.config_from(ctx.options)
            self.rules = opts.rules_from(ctx.options)
            key = (ctx.options.cache_store or ctx.options.cache_dir, opts.size_limit(ctx.options),
                   ctx.options.cache_lru_interval)
        except ValueError as e:
            raise exceptions.OptionsError(str(e)) from e
        if key != self._store_key:
            if self.store is not None:
                self._close_store()
            try:
                self.store = open_store(key[0], size_limit=key[1], lru_interval=key[2])
            except STORE_ERRORS as e:
                raise exceptions.OptionsError(f"cannot open cache store {key[0]}: {e}") from e
            self._store_key = key

    def running(self) -> None:
        # mitmproxy's reverse mode connects to the origin as soon as a client connects ("eager");
        # a cache must not: a hit needs no origin, and a dead origin would drop every client.
        if ctx.options.connection_strategy != "lazy":
            ctx.options.connection_strategy = "lazy"

    def done(self) -> None:
        if self.store is not None:
            self._close_store()
            self.store = None

    def _close_store(self) -> None:
        assert self.store is not None
        for flush in self.before_close:
            flush()
        self.store.close()

    # -- hooks ---------------------------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or self.store is None:
            return
        request = flow.request
        state = FlowState(url=flow_url(request))
        flow.metadata[META_KEY] = state
        method = request.method
        headers = decode_headers(request.headers.fields)
        bypass = bypass_reason(method, headers, self.config)
        if self.rules and bypass is None:
            bypass = self._apply_rule(state, request.data.path.decode("latin-1"))
        if bypass is not None:
            state.bypass = True
            state.outcome = "pass"
            state.fwd = "method" if bypass == "method" else "bypass"
            return
        if "cache-control" in request.headers or "pragma" in request.headers:
            state.directives = parse_request_directives(headers)
        now = time.time()
        entry = self._lookup(state.url, headers)
        lookup = evaluate(state.directives, entry.meta if entry else None, now)
        action = lookup.action
        if action is Action.HIT and entry is not None:
            self._serve(flow, entry, lookup.age, method, headers, revalidated=False,
                        status=cache_status(opts.CACHE_NAME, hit=True, ttl=lookup.ttl))
            return
        if action is Action.GATEWAY_TIMEOUT:
            state.served = True
            state.outcome = "unavailable"
            flow.response = http.Response.make(
                504, b"504 Gateway Timeout: only-if-cached and nothing usable is stored\n"
            )
            self._mark(flow.response, hit=False, status=cache_status(
                opts.CACHE_NAME, hit=False, fwd=lookup.fwd or "uri-miss",
                detail="only-if-cached"))
            return
        state.fwd = lookup.fwd or "uri-miss"
        if state.fwd == "uri-miss" and self._url_known(state.url):
            state.fwd = "vary-miss"
        if state.directives.no_store:
            # Forwarded as the client sent it, and the answer is not stored (5.2.1.5).
            state.bypass = True
            state.outcome = "pass"
            return
        # The cache asks the origin on its own terms, unconditionally or with its own
        # validators, and answers a client's conditional itself from the result (as nginx and
        # Varnish do), so the answer can be stored.
        state.client_conditionals = [(k, v) for k, v in headers if k.lower() in CONDITIONAL_FIELDS]
        for name in CONDITIONAL_FIELDS:
            request.headers.pop(name, None)
        if method == "HEAD":
            request.method = "GET"
            state.head = True
        if action in (Action.REVALIDATE, Action.STALE_WHILE_REVALIDATE) and entry is not None:
            state.stale = entry
            for name, value in lookup.conditional_headers:
                request.headers[name] = value
        state.request_time = time.time()

    def response(self, flow: http.HTTPFlow) -> None:
        state = flow.metadata.get(META_KEY)
        response = flow.response
        if not isinstance(state, FlowState) or state.served or response is None:
            return
        now = time.time()
        request = flow.request
        if request.method not in SAFE_METHODS:
            self._invalidate(state.url, request.method, response)
        if state.bypass:
            self._mark(response, hit=False, status=cache_status(
                opts.CACHE_NAME, hit=False, fwd=state.fwd))
            return
        resp_headers = decode_headers(response.headers.fields)
        if state.stale is not None and response.status_code == 304:
            self._freshen(flow, state, resp_headers, now)
            return
        stored = self._maybe_store(flow, state, resp_headers, now)
        if state.stale is not None and stored is None and response.status_code < 500:
            # A full answer superseded the stored one and may not be stored itself (4.3.3).
            self._delete(state.url)
        fwd_status = response.status_code if state.stale is not None else None
        ttl = stored.meta.freshness_lifetime - stored.meta.corrected_initial_age if stored else None
        self._mark(response, hit=False, status=cache_status(
            opts.CACHE_NAME, hit=False, fwd=state.fwd, fwd_status=fwd_status,
            stored=stored is not None, ttl=ttl))
        if stored is not None and state.client_conditionals and client_not_modified(
            "GET", state.client_conditionals, stored.text_headers()
        ):
            self._not_modified(flow, stored, response.headers)
        elif state.head:
            response.raw_content = b""

    # -- carrying out --------------------------------------------------------------------------

    def _apply_rule(self, state: FlowState, target: str) -> str | None:
        """Key and storing settings from the first config-file rule matching `target`; "rule"
        when the rule keeps the path out of the cache."""
        rule = find_rule(self.rules, target)
        if rule is None:
            return None
        if rule.never_cache:
            return "rule"
        keyed = key_target(target, rule)
        if keyed != target:
            state.url = state.url[: len(state.url) - len(target)] + keyed
        state.config = rule_config(self.config, rule)
        return None

    def _lookup(self, url: str, headers: list[tuple[str, str]]) -> Entry | None:
        if self.store is None:
            return None
        try:
            found = self.store.lookup(url, headers)
        except STORE_ERRORS as e:
            self._warn_store(e)
            return None
        except Exception as e:  # an unreadable record (e.g. written by another version)
            log.warning(f"caching-proxy: ignoring unreadable cache record for {url}: {e!r}")
            return None
        if self._store_warned:
            self._store_warned = False
            log.warning("caching-proxy: cache store available again, caching resumed")
        return found

    def _url_known(self, url: str) -> bool:
        try:
            return self.store is not None and self.store.has_url(url)
        except STORE_ERRORS:
            return False

    def _serve(
        self,
        flow: http.HTTPFlow,
        entry: Entry,
        age: int,
        method: str,
        request_headers: list[tuple[str, str]],
        *,
        revalidated: bool,
        status: str,
    ) -> None:
        """Answer from `entry`: the stored response, or 304 when the client's own conditional
        matches it (RFC 9110 13.1)."""
        state: FlowState = flow.metadata[META_KEY]
        state.served = True
        hit = not revalidated
        state.outcome = "hit" if hit else "revalidated"
        # Age, X-Cache and Cache-Status join the prepared list in one go: editing a built
        # Headers object field by field costs more than the rest of a hit.
        own = ((b"Age", str(age).encode()), (b"X-Cache", b"HIT" if hit else b"MISS"),
               (b"Cache-Status", status.encode()))
        has_conditional = any(k.lower() in CONDITIONAL_FIELDS for k, _ in request_headers)
        if has_conditional and client_not_modified(method, request_headers, entry.text_headers()):
            fields = encode_headers(not_modified_headers(
                entry.text_headers(), targeted_fields=self.config.targeted_fields))
            response = http.Response(b"HTTP/1.1", 304, b"Not Modified", http.Headers(fields + own),
                                     b"", None, time.time(), None)
        else:
            fields = entry.served_headers(True) if revalidated else entry.hit_headers
            response = http.Response(
                b"HTTP/1.1", entry.status, entry.reason, http.Headers(fields + own),
                b"" if method == "HEAD" else entry.body, None, time.time(), None,
            )
        flow.response = response
        if hit:
            flow.marked = ":floppy_disk:"
            flow.comment = "cache HIT"

    def _maybe_store(
        self, flow: http.HTTPFlow, state: FlowState, resp_headers: list[tuple[str, str]],
        now: float,
    ) -> Entry | None:
        response = flow.response
        assert response is not None and self.store is not None
        if response.stream or response.raw_content is None:
            return None
        body = response.raw_content
        length = response.headers.get("content-length")
        complete = length is None or (length.isdigit() and int(length) == len(body))
        decision = decide_store(
            "GET", response.status_code, decode_headers(flow.request.headers.fields), resp_headers,
            state.request_time, now, state.config or self.config, complete=complete,
        )
        if not decision.store or decision.meta is None:
            return None
        kept = storable_headers(resp_headers)
        if length is None and response.status_code not in (204, 304):
            # The origin's framing (chunked, close) is hop-by-hop; a stored copy is sent whole.
            kept.append(("Content-Length", str(len(body))))
        entry = Entry(
            url=state.url,
            status=response.status_code,
            reason=response.data.reason,
            headers=encode_headers(kept),
            body=body,
            meta=decision.meta,
            vary_values=vary_key(decision.meta.vary, decode_headers(flow.request.headers.fields)),
        )
        return entry if self._put(entry) else None

    def _freshen(
        self, flow: http.HTTPFlow, state: FlowState, resp_headers: list[tuple[str, str]],
        now: float,
    ) -> None:
        """A 304 to the cache's own conditional request: update the stored headers and serve
        the stored body (RFC 9111 4.3.4)."""
        stale = state.stale
        assert stale is not None and flow.response is not None
        old_headers = stale.text_headers()
        merged = freshen_headers(old_headers, resp_headers, response_time=now, config=self.config)
        decision = decide_store(
            "GET", stale.status, decode_headers(flow.request.headers.fields), merged,
            state.request_time, now, state.config or self.config,
        )
        meta: StoredMeta = decision.meta if decision.meta is not None else stale.meta
        entry = Entry(
            url=stale.url, status=stale.status, reason=stale.reason,
            headers=encode_headers(merged), body=stale.body, meta=meta,
            vary_values=stale.vary_values,
        )
        stored = decision.store and self._put(entry)
        if not stored:
            # Validated for this answer only: the origin no longer lets it be stored.
            self._delete(state.url)
        lookup = evaluate(NO_DIRECTIVES, entry.meta, now)
        self._serve(
            flow, entry, lookup.age, "HEAD" if state.head else "GET",
            state.client_conditionals or [], revalidated=True,
            status=cache_status(opts.CACHE_NAME, hit=False, fwd="stale", fwd_status=304,
                                stored=stored, ttl=lookup.ttl),
        )

    def _not_modified(self, flow: http.HTTPFlow, entry: Entry, origin_headers: http.Headers) -> None:
        response = flow.response
        assert response is not None
        response.status_code = 304
        response.reason = "Not Modified"
        response.headers = http.Headers(encode_headers(not_modified_headers(
            entry.text_headers(), targeted_fields=self.config.targeted_fields)))
        for name in ("X-Cache", "Cache-Status"):
            for value in origin_headers.get_all(name):
                response.headers.add(name, value)
        response.raw_content = b""

    def _invalidate(self, url: str, method: str, response: http.Response) -> None:
        if self.store is None:
            return
        for target in invalidation_uris(
            method, response.status_code, url, decode_headers(response.headers.fields)
        ):
            self._delete(target)

    def _delete(self, url: str) -> None:
        if self.store is not None:
            self._store_call(self.store.delete_url, url)

    def _put(self, entry: Entry) -> bool:
        assert self.store is not None
        meta = entry.meta
        fresh_for = max(0.0, meta.freshness_lifetime - meta.corrected_initial_age)
        # Kept past freshness to be revalidated, or served stale where a request (max-stale) or
        # the origin (stale-while-revalidate, stale-if-error) allows it.
        grace = max(meta.stale_while_revalidate, meta.stale_if_error,
                    float(ctx.options.cache_keep_stale))
        if fresh_for + grace <= 0:
            return False  # nothing could ever reuse it
        return self._store_call(self.store.put, entry, fresh_for + grace)

    def _store_call(self, fn: Any, *args: Any) -> bool:
        if fn is None:
            return False
        try:
            fn(*args)
            return True
        except STORE_ERRORS as e:
            self._warn_store(e)
            return False

    def _warn_store(self, e: Exception) -> None:
        # The proxy goes on as a pass-through; one warning, not one per request.
        if not self._store_warned:
            self._store_warned = True
            log.warning(f"caching-proxy: cache store unavailable, passing requests through: {e}")

    @staticmethod
    def _mark(response: http.Response, *, hit: bool, status: str) -> None:
        response.headers["X-Cache"] = "HIT" if hit else "MISS"
        response.headers.add("Cache-Status", status)
