"""The request hook: answer from the store (RFC 9111 4), or prepare the request to go forward.

A hit is answered synchronously, with one store read; only a large entry (read in a thread) or
a wait for another request's fill makes the hook a coroutine.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable
from dataclasses import dataclass

from mitmproxy import http

from caching_proxy.cache import encoding as codings
from caching_proxy.cache import serve
from caching_proxy.cache.coalescing import Coalescer
from caching_proxy.cache.flow_state import META_KEY, FlowState, Phase, forward_as_get
from caching_proxy.cache.refresh import Refresher
from caching_proxy.cache.settings import Shared
from caching_proxy.cache.slices import Slicer
from caching_proxy.cli.options import CACHE_NAME
from caching_proxy.policy import (
    CACHE_ANSWERED_FIELDS,
    Action,
    Lookup,
    bypass_reason,
    cache_status,
    evaluate,
    find_rule,
    key_target,
    override_detail,
    parse_request_directives,
    rule_bypass,
    rule_config,
)
from caching_proxy.policy.keys import request_key
from caching_proxy.policy.lookup import conditional_headers
from caching_proxy.policy.origin_budget import ahead_delta, refresh_ahead, refresh_due
from caching_proxy.store.entry import Entry, decode_headers
from caching_proxy.store.guarded import EntryTooLarge

Headers = list[tuple[str, str]]
DIRECTIVE_FIELDS = ("cache-control", "pragma")
ABSENT_SECONDS = 1.0  # how long the lane's "nothing stored" holds for the request it handed on
ABSENT_LIMIT = 4096
HOT_HITS = 3  # hits of one stored response before refresh ahead considers it
HITS_LIMIT = 8192
PIN_KEY = "caching_proxy.pinned"  # flow.metadata: a Pinned hit, from the lane to the request hook


@dataclass(frozen=True, slots=True)
class Pinned:
    """A fresh hit found for a flow before its hooks ran (Reuse.pin_hit)."""

    state: FlowState
    headers: Headers
    entry: Entry
    lookup: Lookup


class Reuse:
    def __init__(self, shared: Shared, coalescer: Coalescer, refresher: Refresher,
                 slicer: Slicer) -> None:
        self.shared = shared
        self.coalescer = coalescer
        self.refresher = refresher
        self.slicer = slicer
        # Client connection id -> (key, fields, monotonic time): the hit lane's read found
        # nothing for the request it then handed to mitmproxy, whose request hook takes that
        # answer instead of reading the store again (a second Redis round trip on a miss, and
        # a second read that would count toward the memory tier's admission).
        self._absent: dict[str, tuple[str, Headers, float]] = {}
        # Key -> (the stored response's time, hits it served here): refresh ahead's hotness.
        self._hits: dict[str, tuple[float, int]] = {}

    def on_request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        store = self.shared.store
        if flow.response is not None or store is None:
            return None
        pinned = flow.metadata.pop(PIN_KEY, None)
        if isinstance(pinned, Pinned):
            flow.metadata[META_KEY] = pinned.state
            self._answer_hit(flow, pinned.state, pinned.headers, pinned.entry, pinned.lookup)
            return None
        state, headers, coding = self._prepare(flow.request)
        flow.metadata[META_KEY] = state
        if state.outcome == "pass":
            return None
        absent = bool(self._absent) and self._known_absent(flow, state.key, headers)
        if absent and store.remote:
            # As after a network read off the loop: no coded variant is looked for.
            return self._decide(flow, state, headers, None)
        try:
            entry = None if absent else store.lookup(state.key, headers)
            if (entry is None and coding is None and self.shared.settings.encodings
                    and self._decoded_hit(flow, state, headers)):
                return None
        except EntryTooLarge:
            return self._decide_off_loop(flow, state, headers)
        return self._decide(flow, state, headers, entry)

    def pin_hit(self, flow: http.HTTPFlow) -> bool | Awaitable[bool]:
        """For the hit lane (hit_lane.py), before any hook has run: whether the store answers
        `flow` as it stands with a fresh stored response (a plain HIT: no refresh, no decoding,
        no origin). If so that answer is pinned on the flow, and its request hook gives it
        without reading the store again. Reads the store and changes nothing else; on False the
        flow carries nothing of the cache's (its request is normalized as the hook would)."""
        store = self.shared.store
        if store is None or flow.response is not None:
            return False
        state, headers, _ = self._prepare(flow.request)
        if state.outcome == "pass":
            return False
        try:
            entry = store.lookup(state.key, headers)
        except EntryTooLarge:
            return self._pin_off_loop(flow, state, headers)
        return self._pin(flow, state, headers, entry)

    async def _pin_off_loop(self, flow: http.HTTPFlow, state: FlowState,
                            headers: Headers) -> bool:
        assert self.shared.store is not None
        entry = await self.shared.store.lookup_off_loop(state.key, headers)
        return self._pin(flow, state, headers, entry)

    def _pin(self, flow: http.HTTPFlow, state: FlowState, headers: Headers,
             entry: Entry | None) -> bool:
        if entry is None:
            if len(self._absent) >= ABSENT_LIMIT:
                self._absent.clear()  # connections that closed before their next request
            self._absent[flow.client_conn.id] = (state.key, headers, time.monotonic())
            return False
        lookup = evaluate(state.directives, entry.meta, self.shared.clock())
        if lookup.action is not Action.HIT:
            return False
        self._refresh_ahead(flow, state, entry, lookup)
        flow.metadata[PIN_KEY] = Pinned(state, headers, entry, lookup)
        return True

    def _refresh_ahead(self, flow: http.HTTPFlow, state: FlowState, entry: Entry,
                       lookup: Lookup) -> None:
        """A fresh hit close to its expiry may start the entry's background refresh (XFetch,
        policy/origin_budget.py), so that a steady stream of requests never meets it stale;
        the refresher keeps it to one per key across processes."""
        beta = self.shared.settings.refresh_ahead
        meta = entry.meta
        # Most hits are far from expiry: two multiplications, before any call (refresh_due's
        # bound is at most half the lifetime, or 5 fetch durations, times beta).
        if not beta or (lookup.ttl > meta.freshness_lifetime * beta * 0.5
                        and lookup.ttl > (meta.response_time - meta.request_time) * beta * 5):
            return
        delta = ahead_delta(meta.freshness_lifetime, meta.response_time - meta.request_time)
        if not refresh_due(lookup.ttl, delta, beta):
            return
        # Hot: this process served the stored response HOT_HITS times. A refresh for an entry
        # asked once near its expiry would be an origin request nobody may need.
        seen = self._hits.get(state.key)
        count = seen[1] + 1 if seen is not None and seen[0] == meta.response_time else 1
        if len(self._hits) >= HITS_LIMIT:
            self._hits.clear()
        self._hits[state.key] = (meta.response_time, count)
        if count >= HOT_HITS and refresh_ahead(lookup.ttl, delta, beta, 1.0 - random.random()):
            self.refresher.refresh(flow, state, entry, conditional_headers(meta))

    def _known_absent(self, flow: http.HTTPFlow, key: str, headers: Headers) -> bool:
        """Whether the lane just found nothing stored for this very request. Only the next
        request hook of the same client connection may use it, for the same key and fields,
        within ABSENT_SECONDS: the store taken as empty that moment longer sends one request to
        the origin, and never answers it from what a purge removed."""
        absent = self._absent.pop(flow.client_conn.id, None)
        return (absent is not None and absent[0] == key and absent[1] == headers
                and time.monotonic() - absent[2] < ABSENT_SECONDS)

    def _prepare(self, request: http.Request) -> tuple[FlowState, Headers, str | None]:
        """The flow's state, the request's fields as text and its normalized coding. A request
        the cache passes (method, bypass, rule, a range of a too-large object) comes back with
        its state's outcome "pass": not looked up, and its answer not stored."""
        target = request.data.path.decode("latin-1")
        state = FlowState(key=request_key(request, target))
        settings = self.shared.settings
        coding = None
        if settings.encodings and request.method in ("GET", "HEAD"):
            coding = codings.normalize_request(request, settings.encodings)
        headers = decode_headers(request.headers.fields)
        bypass = bypass_reason(request.method, headers, settings.config)
        if settings.rules and bypass is None:
            bypass = self._apply_rule(state, request, target, headers)
        if (bypass is None and not settings.slice_size and state.key in self.shared.too_large
                and "range" in request.headers):
            # Its whole response streamed past --max-object-size last time: fetching it whole
            # again for a range would cost the origin the whole object; the Range goes as sent.
            bypass = "too-large"
        if bypass is not None:
            state.outcome = "pass"
            state.fwd = "method" if bypass == "method" else "bypass"
        elif any(k.lower() in DIRECTIVE_FIELDS for k, _ in headers):  # 1 us, not mitmproxy's 3
            state.directives = parse_request_directives(headers)
        return state, headers, coding

    def _decoded_hit(self, flow: http.HTTPFlow, state: FlowState, headers: Headers) -> bool:
        """For a client that accepts no coding: answer from a fresh variant stored for one the
        proxy can decode, decoded (Varnish's http_gzip_support), instead of asking the origin;
        whether it did. A stale one is left to the normal path (revalidated whole)."""
        store = self.shared.store
        assert store is not None
        alternatives = codings.identity_alternatives(headers, self.shared.settings.encodings)
        while alternatives:
            # The URL's record read once, not once per coding (an identity miss: one read).
            # One too large to decode on the loop is passed over: fetched as identity instead.
            first = store.lookup_first(state.key, alternatives)
            if first is None:
                return False
            at, found = first
            if "accept-encoding" not in found.meta.vary:
                return False  # every alternative selects this same response
            alternatives = alternatives[at + 1:]
            lookup = evaluate(state.directives, found.meta, self.shared.clock())
            plain = codings.decoded(found) if lookup.action is Action.HIT else None
            if plain is not None:
                serve.answer(flow, state, plain, self.shared, age=lookup.age, outcome="hit",
                             request_headers=headers,
                             status=cache_status(CACHE_NAME, hit=True, ttl=lookup.ttl,
                                                 detail="decoded"))
                return True
        return False

    async def _decide_off_loop(self, flow: http.HTTPFlow, state: FlowState,
                               headers: Headers) -> None:
        assert self.shared.store is not None
        entry = await self.shared.store.lookup_off_loop(state.key, headers)
        pending = self._decide(flow, state, headers, entry)
        if pending is not None:
            await pending

    def _decide(self, flow: http.HTTPFlow, state: FlowState, headers: Headers,
                entry: Entry | None) -> Awaitable[None] | None:
        now = self.shared.clock()
        lookup = evaluate(state.directives, entry.meta if entry else None, now)
        action = lookup.action
        if action is Action.HIT and entry is not None:
            self._refresh_ahead(flow, state, entry, lookup)
            self._answer_hit(flow, state, headers, entry, lookup)
            return None
        if action is Action.STALE_WHILE_REVALIDATE and entry is not None:
            self.refresher.refresh(flow, state, entry, lookup.conditional_headers)
            # RFC 9211: a hit (this answer did not go forward); ttl < 0 says it is stale.
            serve.answer(flow, state, entry, self.shared, age=lookup.age, outcome="stale",
                         request_headers=headers,
                         status=cache_status(CACHE_NAME, hit=True, ttl=lookup.ttl,
                                             detail="stale-while-revalidate"))
            return None
        if action is Action.GATEWAY_TIMEOUT:
            state.phase = Phase.ANSWERED
            state.outcome = "unavailable"
            flow.response = serve.own_answer(
                504, "504 Gateway Timeout: only-if-cached and nothing usable is stored\n",
                fwd=lookup.fwd or "uri-miss", detail="only-if-cached", close=False)
            return None
        state.fwd = lookup.fwd or "uri-miss"
        store = self.shared.store
        if (state.fwd == "uri-miss" and store is not None and not store.remote
                and store.has_url(state.key)):
            # (Not asked of a network store on the loop: only Cache-Status's fwd= would differ.)
            state.fwd = "vary-miss"
        if state.directives.no_store:
            # Forwarded as the client sent it, and the answer is not stored (5.2.1.5).
            state.outcome = "pass"
            return None
        if self.slicer.wanted(flow, state, headers):
            return self._sliced(flow, state, headers, entry, lookup)
        self._forward(flow.request, state, headers, entry,
                      lookup.conditional_headers if action is Action.REVALIDATE else ())
        return self.coalescer.begin(flow, state, headers)

    async def _sliced(self, flow: http.HTTPFlow, state: FlowState, headers: Headers,
                      entry: Entry | None, lookup: Lookup) -> None:
        """A Range request answered from slices (cache/slices.py), else the usual way."""
        if await self.slicer.answer(flow, state, headers):
            return
        self._forward(flow.request, state, headers, entry,
                      lookup.conditional_headers if lookup.action is Action.REVALIDATE else ())
        pending = self.coalescer.begin(flow, state, headers)
        if pending is not None:
            await pending

    def _answer_hit(self, flow: http.HTTPFlow, state: FlowState, headers: Headers,
                    entry: Entry, lookup: Lookup) -> None:
        serve.answer(flow, state, entry, self.shared, age=lookup.age, outcome="hit",
                     request_headers=headers,
                     status=cache_status(CACHE_NAME, hit=True, ttl=lookup.ttl,
                                         detail=_overrode(state, entry)))

    def _forward(self, request: http.Request, state: FlowState, headers: Headers,
                 entry: Entry | None, validators: tuple[tuple[str, str], ...]) -> None:
        """Ask the origin on the cache's own terms, unconditionally or with its own validators,
        and answer the client's conditional from the result (as nginx and Varnish do), so that
        the answer can be stored."""
        state.client_conditionals = tuple(
            (k, v) for k, v in headers if k.lower() in CACHE_ANSWERED_FIELDS)
        for name in CACHE_ANSWERED_FIELDS:
            request.headers.pop(name, None)
        forward_as_get(request, state)
        state.phase = Phase.REVALIDATE if validators and entry is not None else Phase.FILL
        for name, value in validators:
            request.headers[name] = value
        state.stored = entry
        state.request_time = self.shared.clock()

    async def answer_collapsed(self, flow: http.HTTPFlow, state: FlowState,
                               headers: Headers) -> bool:
        """Answer a waiting flow from what the fill it waited for stored; whether it could."""
        store = self.shared.store
        if not flow.live or flow.response is not None or store is None:
            return flow.response is not None
        entry = await store.lookup_any(state.key, headers)
        if entry is None:
            return False
        lookup = evaluate(state.directives, entry.meta, self.shared.clock())
        if lookup.action is not Action.HIT:
            return False
        serve.answer(flow, state, entry, self.shared, age=lookup.age, outcome="collapsed",
                     request_headers=headers,
                     status=cache_status(CACHE_NAME, hit=True, ttl=lookup.ttl, collapsed=True,
                                         detail=_overrode(state, entry)))
        return True

    def _apply_rule(self, state: FlowState, request: http.Request, target: str,
                    headers: Headers) -> str | None:
        """Key and storing settings from the first config-file rule matching `target`; "rule"
        when the rule keeps the path out of the cache or the request carries its bypass header
        or cookie (then passed: not looked up, and its answer not stored)."""
        settings = self.shared.settings
        rule = find_rule(settings.rules, target)
        if rule is None:
            return None
        if rule.never_cache:
            return "rule"
        state.detail = rule_bypass(rule, headers)
        if state.detail is not None:
            return "rule"
        keyed = key_target(target, rule)
        if keyed != target:
            state.key = request_key(request, keyed)
        state.config = rule_config(settings.config, rule)
        return None


def _overrode(state: FlowState, entry: Entry) -> str | None:
    """What a rule's `ignore` overrode to store `entry`, for its hits' Cache-Status (read from
    the stored fields only under such a rule: other hits parse nothing)."""
    config = state.config
    if config is None or not config.ignore:
        return None
    return override_detail(entry.text_headers(), config)
