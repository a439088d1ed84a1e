"""The mitmproxy addon: looks requests up in the store and stores what the origin sends.

Every decision comes from `caching_proxy.policy`; this module only carries them out.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader
from mitmproxy.utils import human

from caching_proxy import coalescing, error_page, workers
from caching_proxy import options as opts
from caching_proxy.entry import Entry, decode_headers, encode_headers
from caching_proxy.origin_timeouts import TIMEOUT_KEY
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
    failure_of_status,
    find_rule,
    freshen_headers,
    invalidation_uris,
    key_target,
    not_modified_headers,
    parse_request_directives,
    parse_use_stale,
    rule_config,
    serve_stale_on_failure,
    storable_headers,
    vary_key,
)
from caching_proxy.refresh import Refresher
from caching_proxy.store import DiskStore, Store, is_redis_url, open_store
from caching_proxy.store.disk import EntryTooLarge

log = logging.getLogger(__name__)

META_KEY = "caching_proxy"
# The conditionals a cache answers itself; If-Range only goes with Range, which passes, and
# If-Match / If-Unmodified-Since requests pass too (see bypass_reason).
CONDITIONAL_FIELDS = ("if-none-match", "if-modified-since", "if-range")
STORE_ERRORS = (OSError, sqlite3.Error)
STORE_FLUSH_INTERVAL = 1.0  # seconds between writes of what the store deferred (Store.flush)
# Entries larger than this are written to the store in a worker thread, so that other
# connections are not held up by the disk.
OFF_LOOP_BYTES = 1 << 20
REFRESH_PREFIX = "refresh\x00"
# mitmproxy addons that read or serialize response bodies (views, flow files, mitmweb, dumps).
BODY_READERS = ("view", "save", "webaddon", "dumper", "clientplayback")


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
    fallback: Entry | None = None  # stored response that may answer if the origin fails
    fill_key: str | None = None  # this flow fetches the response other requests wait for
    storing: bool = False  # its store write runs in a thread; the fill ends after it
    marked: bool = False  # X-Cache and Cache-Status added before the body (streamed bodies)
    # How the request was answered, for the addons that count and log (one of OUTCOMES).
    outcome: str = "miss"


# hit: from the store without the origin; miss: from the origin; revalidated: the origin said 304
# to the cache's conditional; pass: forwarded, never cached (method, no-store, bypass);
# unavailable: only-if-cached with nothing usable stored; stale: a stale stored response
# (stale-while-revalidate, or the origin failed); collapsed: answered from the response another
# request fetched meanwhile (coalescing).
OUTCOMES = ("hit", "miss", "revalidated", "pass", "unavailable", "stale", "collapsed")


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
        self._lookup_failed = False
        self._shared_store = False
        self._maintenance: asyncio.Task[None] | None = None
        # Called before the store is closed or replaced: addons that buffer writes flush them.
        self.before_close: list[Callable[[], None]] = []
        self.use_stale: frozenset[str] = frozenset()
        self.fills = coalescing.Fills()
        self.refresher = Refresher(self.response)
        self._send_views = False

    # -- configuration -------------------------------------------------------------------------

    def load(self, loader: Loader) -> None:
        for name, typespec, default, help_text in opts.OPTIONS:
            loader.add_option(name, typespec, default, help_text)

    def configure(self, updated: set[str]) -> None:
        try:
            self.config = opts.config_from(ctx.options)
            self.rules = opts.rules_from(ctx.options)
            self.use_stale = parse_use_stale(ctx.options.cache_use_stale)
            key = (ctx.options.cache_store or ctx.options.cache_dir, opts.size_limit(ctx.options),
                   ctx.options.cache_lru_interval)
        except ValueError as e:
            raise exceptions.OptionsError(str(e)) from e
        if key != self._store_key:
            if self.store is not None:
                self._close_store()
            # Fills are coordinated through the store only where other processes use it too
            # (--workers, Redis): for a lone proxy that lock is two disk writes per miss for
            # nothing (measured: miss throughput -20%); its own waiting list suffices.
            self._shared_store = is_redis_url(key[0]) or workers.worker_number() is not None
            try:
                self.store = open_store(key[0], size_limit=key[1], lru_interval=key[2])
            except STORE_ERRORS as e:
                raise exceptions.OptionsError(f"cannot open cache store {key[0]}: {e}") from e
            self._store_key = key

    def running(self) -> None:
        # What startup created (mitmproxy, its options, this package) lives as long as the
        # process: moved out of the collector's sight, a full collection no longer scans it
        # (measured: ~30 ms per full collection otherwise, a stall for every connection).
        gc.freeze()
        # Addons that read or serialize response bodies expect bytes (see _sendable).
        self._send_views = not any(
            ctx.master.addons.get(name) for name in BODY_READERS)
        # mitmproxy's reverse mode connects to the origin as soon as a client connects ("eager");
        # a cache must not: a hit needs no origin, and a dead origin would drop every client.
        if ctx.options.connection_strategy != "lazy":
            ctx.options.connection_strategy = "lazy"
        self._maintenance = asyncio.get_running_loop().create_task(self._flush_periodically())

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(STORE_FLUSH_INTERVAL)
            store = self.store
            if store is not None:
                try:
                    await asyncio.to_thread(store.flush)
                except STORE_ERRORS as e:
                    self._warn_store(e)

    def done(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
        self.refresher.done()
        if self.store is not None:
            self._close_store()
            self.store = None

    def _close_store(self) -> None:
        assert self.store is not None
        for flush in self.before_close:
            flush()
        self.store.close()

    # -- hooks ---------------------------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """Sync for hits; a miss another request is already fetching returns a coroutine that
        waits for it (mitmproxy awaits what a hook returns)."""
        if flow.response is not None or self.store is None:
            return None
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
            return None
        if "cache-control" in request.headers or "pragma" in request.headers:
            state.directives = parse_request_directives(headers)
        try:
            entry = self._lookup(state.url, headers, inline=True)
        except EntryTooLarge:
            return self._lookup_off_loop(flow, state, headers)
        return self._after_lookup(flow, state, headers, entry)

    async def _lookup_off_loop(
        self, flow: http.HTTPFlow, state: FlowState, headers: list[tuple[str, str]]
    ) -> None:
        entry = await asyncio.to_thread(self._lookup, state.url, headers)
        pending = self._after_lookup(flow, state, headers, entry)
        if pending is not None:
            await pending

    def _after_lookup(
        self, flow: http.HTTPFlow, state: FlowState, headers: list[tuple[str, str]],
        entry: Entry | None,
    ) -> Awaitable[None] | None:
        request = flow.request
        method = request.method
        lookup = evaluate(state.directives, entry.meta if entry else None, time.time())
        action = lookup.action
        if action is Action.HIT and entry is not None:
            self._serve(flow, entry, lookup.age, method, headers, revalidated=False,
                        status=cache_status(opts.CACHE_NAME, hit=True, ttl=lookup.ttl))
            return None
        if action is Action.STALE_WHILE_REVALIDATE and entry is not None:
            self._refresh(flow, state, entry, lookup.conditional_headers)
            # RFC 9211: a hit (this answer did not go forward); ttl < 0 says it is stale.
            self._serve(flow, entry, lookup.age, method, headers, revalidated=False,
                        status=cache_status(opts.CACHE_NAME, hit=True, ttl=lookup.ttl,
                                            detail="stale-while-revalidate"))
            state.outcome = "stale"
            return None
        if action is Action.GATEWAY_TIMEOUT:
            state.served = True
            state.outcome = "unavailable"
            flow.response = http.Response.make(
                504, b"504 Gateway Timeout: only-if-cached and nothing usable is stored\n"
            )
            self._mark(flow.response, hit=False, status=cache_status(
                opts.CACHE_NAME, hit=False, fwd=lookup.fwd or "uri-miss",
                detail="only-if-cached"))
            return None
        state.fwd = lookup.fwd or "uri-miss"
        if state.fwd == "uri-miss" and self._url_known(state.url):
            state.fwd = "vary-miss"
        if state.directives.no_store:
            # Forwarded as the client sent it, and the answer is not stored (5.2.1.5).
            state.bypass = True
            state.outcome = "pass"
            return None
        # The cache asks the origin on its own terms, unconditionally or with its own
        # validators, and answers a client's conditional itself from the result (as nginx and
        # Varnish do), so the answer can be stored.
        state.client_conditionals = [(k, v) for k, v in headers if k.lower() in CONDITIONAL_FIELDS]
        for name in CONDITIONAL_FIELDS:
            request.headers.pop(name, None)
        if method == "HEAD":
            request.method = "GET"
            state.head = True
        if action is Action.REVALIDATE and entry is not None:
            state.stale = entry
            for name, value in lookup.conditional_headers:
                request.headers[name] = value
        state.fallback = entry
        state.request_time = time.time()
        return self._coalesce(flow, state, headers)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state = flow.metadata.get(META_KEY)
        response = flow.response
        if not isinstance(state, FlowState) or state.served or response is None:
            return
        if response.stream or "content-length" not in response.headers:
            # Headers of a streamed body leave before the response hook; mitmproxy may also
            # switch a body of unknown length to streaming later. Marked now, completed (or
            # replaced) by the response hook if the body is held.
            state.marked = True
            self._mark(response, hit=False, status=cache_status(
                opts.CACHE_NAME, hit=False, fwd=state.fwd,
                fwd_status=response.status_code if state.stale is not None else None))

    def response(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        state = flow.metadata.get(META_KEY)
        response = flow.response
        if not isinstance(state, FlowState) or state.served or response is None:
            return None
        try:
            return self._handle_response(flow, state, response)
        finally:
            if state.fill_key is not None and not state.storing:
                self._finish_fill(state)

    def error(self, flow: http.HTTPFlow) -> None:
        state = flow.metadata.get(META_KEY)
        if not isinstance(state, FlowState) or state.served:
            return
        self._finish_fill(state)
        # A response whose head has not gone to the client yet (its body was being held) can
        # still give way; a streamed one is under way and is cut.
        if state.fallback is None or (flow.response is not None and flow.response.stream):
            return
        failure = "timeout" if flow.metadata.get(TIMEOUT_KEY) else "error"
        if self._serve_stale(flow, state, failure, None):
            assert flow.response is not None
            error_page.answer_instead(flow, flow.response)

    def _handle_response(
        self, flow: http.HTTPFlow, state: FlowState, response: http.Response
    ) -> Awaitable[None] | None:
        now = time.time()
        request = flow.request
        if request.method not in SAFE_METHODS:
            self._invalidate(state.url, request.method, response)
        if state.bypass:
            self._final_mark(response, state, cache_status(
                opts.CACHE_NAME, hit=False, fwd=state.fwd))
            return None
        failure = failure_of_status(response.status_code)
        if failure is not None and not response.stream and self._serve_stale(
            flow, state, failure, response.status_code
        ):
            return None
        resp_headers = decode_headers(response.headers.fields)
        if state.stale is not None and response.status_code == 304:
            self._freshen(flow, state, resp_headers, now)
            return None
        entry = self._entry_to_store(flow, state, resp_headers, now)
        if entry is not None and len(entry.body) > OFF_LOOP_BYTES:
            state.storing = True
            return self._store_off_loop(flow, state, entry)
        self._answer_fill(flow, state, entry if entry is not None and self._put(entry) else None)
        self._send_as_view(response)
        return None

    async def _store_off_loop(self, flow: http.HTTPFlow, state: FlowState, entry: Entry) -> None:
        try:
            expire = self._expire(entry)
            stored = expire is not None and await asyncio.to_thread(
                self._store_call, self._store_put, entry, expire)
            self._answer_fill(flow, state, entry if stored else None)
            if flow.response is not None:
                self._send_as_view(flow.response)
        finally:
            state.storing = False
            self._finish_fill(state)

    def _answer_fill(self, flow: http.HTTPFlow, state: FlowState, stored: Entry | None) -> None:
        """Mark a forwarded response, and answer the client's own conditionals from it."""
        response = flow.response
        assert response is not None
        if state.stale is not None and stored is None and response.status_code < 500:
            # A full answer superseded the stored one and may not be stored itself (4.3.3).
            self._delete(state.url)
        fwd_status = response.status_code if state.stale is not None else None
        ttl = stored.meta.freshness_lifetime - stored.meta.corrected_initial_age if stored else None
        if not self._final_mark(response, state, cache_status(
            opts.CACHE_NAME, hit=False, fwd=state.fwd, fwd_status=fwd_status,
            stored=stored is not None, ttl=ttl)):
            return
        if stored is not None and state.client_conditionals and client_not_modified(
            "GET", state.client_conditionals, stored.text_headers()
        ):
            self._not_modified(flow, stored, response.headers)
        elif state.head:
            response.raw_content = b""

    def _final_mark(self, response: http.Response, state: FlowState, status: str) -> bool:
        """Mark a forwarded response, replacing the provisional mark of responseheaders; False
        when the headers were sent already (a streamed body)."""
        if state.marked:
            if response.stream:
                return False
            values = response.headers.get_all("Cache-Status")
            response.headers.set_all("Cache-Status", values[:-1])
        self._mark(response, hit=False, status=status)
        return True

    # -- origin protection ---------------------------------------------------------------------

    def _serve_stale(
        self, flow: http.HTTPFlow, state: FlowState, failure: str, status: int | None
    ) -> bool:
        """Answer with the stored response instead of the origin's failure, where allowed."""
        entry = state.fallback
        now = time.time()
        if entry is None or not serve_stale_on_failure(
            entry.meta, state.directives, now, failure, self.use_stale
        ):
            return False
        lookup = evaluate(NO_DIRECTIVES, entry.meta, now)
        # RFC 9211: it went forward (fwd, with the origin's status when there was one); the
        # answer is the stored response, hence X-Cache: HIT.
        self._serve(flow, entry, lookup.age, "HEAD" if state.head else "GET",
                    state.client_conditionals or [], revalidated=False,
                    status=cache_status(opts.CACHE_NAME, hit=False, fwd=state.fwd,
                                        fwd_status=status, ttl=lookup.ttl,
                                        detail=f"stale-on-{failure.replace('_', '-')}"))
        state.outcome = "stale"
        return True

    def _coalesce(
        self, flow: http.HTTPFlow, state: FlowState, headers: list[tuple[str, str]]
    ) -> Awaitable[None] | None:
        """Lead the fill of this key, or wait for the one in flight (in this process or
        another)."""
        bound = float(ctx.options.cache_lock_timeout)
        if bound <= 0 or self.store is None or state.directives.no_cache:
            return None  # (a no-cache request could not use another request's answer)
        key = state.url
        pending = self.fills.waiting_on(key, bound)
        if pending is not None:
            return self._wait_local(flow, state, headers, pending, bound)
        if self._shared_store:
            try:
                leader = self.store.acquire(key, bound)
            except STORE_ERRORS:
                return None
            if not leader:
                return self._wait_other(flow, state, headers, bound)
        self.fills.lead(key)
        state.fill_key = key
        return None

    async def _wait_local(
        self, flow: http.HTTPFlow, state: FlowState, headers: list[tuple[str, str]],
        pending: asyncio.Future[None], bound: float,
    ) -> None:
        await coalescing.wait(pending, bound)
        await self._answer_collapsed(flow, state, headers)

    async def _wait_other(
        self, flow: http.HTTPFlow, state: FlowState, headers: list[tuple[str, str]],
        bound: float,
    ) -> None:
        """Another process fills: poll the store until its answer is there or the lock goes."""
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if await self._answer_collapsed(flow, state, headers):
                return
            assert self.store is not None
            try:
                leader = self.store.acquire(state.url, bound)
            except STORE_ERRORS:
                return
            if leader:
                # The other fill ended without a usable answer: this request fills instead.
                if await self._answer_collapsed(flow, state, headers):
                    self._store_call(self.store.release, state.url)
                    return
                self.fills.lead(state.url)
                state.fill_key = state.url
                return

    async def _answer_collapsed(
        self, flow: http.HTTPFlow, state: FlowState, headers: list[tuple[str, str]]
    ) -> bool:
        if not flow.live or flow.response is not None:
            return flow.response is not None
        try:
            entry = self._lookup(state.url, headers, inline=True)
        except EntryTooLarge:
            entry = await asyncio.to_thread(self._lookup, state.url, headers)
        if entry is None:
            return False
        lookup = evaluate(state.directives, entry.meta, time.time())
        if lookup.action is not Action.HIT:
            return False
        self._serve(flow, entry, lookup.age, "HEAD" if state.head else "GET", headers,
                    revalidated=False, status=cache_status(
                        opts.CACHE_NAME, hit=True, ttl=lookup.ttl, collapsed=True))
        state.outcome = "collapsed"
        return True

    def _finish_fill(self, state: FlowState) -> None:
        key = state.fill_key
        if key is None:
            return
        state.fill_key = None
        self.fills.finish(key)
        if self.store is not None and self._shared_store:
            self._store_call(self.store.release, key)

    def _refresh(
        self, flow: http.HTTPFlow, state: FlowState, entry: Entry,
        validators: tuple[tuple[str, str], ...],
    ) -> None:
        """Revalidate `entry` in the background, once per key across processes."""
        if self.store is None:
            return
        key = state.url
        bound = float(ctx.options.cache_first_byte_timeout or 60)
        if self.refresher.running(key):
            return
        store = self.store
        try:
            if not self.store.acquire(REFRESH_PREFIX + key, bound):
                return
        except STORE_ERRORS:
            return
        request = flow.request.copy()
        request.method = "GET"
        for name in CONDITIONAL_FIELDS:
            request.headers.pop(name, None)
        for name, value in validators:
            request.headers[name] = value
        refresh = http.HTTPFlow(flow.client_conn, flow.server_conn)
        refresh.request = request
        refresh.metadata[META_KEY] = FlowState(
            url=key, stale=entry, fallback=entry, request_time=time.time(), fwd="stale")
        max_size = human.parse_size(ctx.options.cache_max_object_size) or 0
        self.refresher.start(key, refresh, bound, max_size,
                             lambda: self._store_call(store.release, REFRESH_PREFIX + key))

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

    def _lookup(
        self, url: str, headers: list[tuple[str, str]], inline: bool = False
    ) -> Entry | None:
        """The stored response for the request. `inline` (on the event loop): raise
        EntryTooLarge rather than read a large entry, which the caller then reads in a thread."""
        store = self.store
        if store is None:
            return None
        try:
            if inline and type(store) is DiskStore:
                found = store.lookup(url, headers, OFF_LOOP_BYTES)
            else:
                found = store.lookup(url, headers)
        except EntryTooLarge:
            raise
        except STORE_ERRORS as e:
            self._lookup_failed = True
            self._warn_store(e)
            return None
        except Exception as e:  # an unreadable record (e.g. written by another version)
            log.warning(f"caching-proxy: ignoring unreadable cache record for {url}: {e!r}")
            return None
        if self._lookup_failed:
            # Said once when reads work again (Redis back); a store that still reads but no
            # longer writes (folder removed, disk full) stays warned once and quiet.
            self._lookup_failed = self._store_warned = False
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
                b"" if method == "HEAD" else self._sendable(entry.body), None, time.time(), None,
            )
        flow.response = response
        if hit:
            flow.marked = ":floppy_disk:"
            flow.comment = "cache HIT"

    def _entry_to_store(
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
        return entry

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
        expire = self._expire(entry)
        return expire is not None and self._store_call(self._store_put, entry, expire)

    def _store_put(self, entry: Entry, expire: float) -> None:
        assert self.store is not None
        self.store.put(entry, expire)

    def _expire(self, entry: Entry) -> float | None:
        """Seconds to keep `entry`, or None if nothing could ever reuse it."""
        meta = entry.meta
        fresh_for = max(0.0, meta.freshness_lifetime - meta.corrected_initial_age)
        # Kept past freshness to be revalidated, or served stale where a request (max-stale) or
        # the origin (stale-while-revalidate, stale-if-error) allows it.
        grace = max(meta.stale_while_revalidate, meta.stale_if_error,
                    float(ctx.options.cache_keep_stale))
        return fresh_for + grace if fresh_for + grace > 0 else None

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

    def _send_as_view(self, response: http.Response) -> None:
        body = response.raw_content
        if body is not None and not response.stream and type(body) is bytes:
            response.raw_content = self._sendable(body)

    def _sendable(self, body: bytes) -> bytes:
        """A large body as a memoryview: asyncio's transport (Python 3.11) copies the unsent part
        of a bytes object once more than that of a view (measured: 50 MB, ~20 ms less on the
        event loop). Only with no addon that expects the body as bytes."""
        if self._send_views and len(body) > OFF_LOOP_BYTES:
            return memoryview(body)  # type: ignore[return-value]
        return body

    @staticmethod
    def _mark(response: http.Response, *, hit: bool, status: str) -> None:
        response.headers["X-Cache"] = "HIT" if hit else "MISS"
        response.headers.add("Cache-Status", status)
