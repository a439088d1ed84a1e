"""What the origin's answer does to the store and to the client's answer (the response hooks).

In order: an unsafe method invalidates (RFC 9111 4.4); a pass is marked and sent; an origin
failure may give way to a stored stale response (stale.py); a 304 to the cache's own conditional
freshens the stored response (4.3.4); anything else is stored if the policy allows it (3), in a
worker thread when large, and the waiters of the fill are woken once it is stored.
"""

from __future__ import annotations

from collections.abc import Awaitable

from mitmproxy import http

from caching_proxy.cache import encoding as codings
from caching_proxy.cache import ranges as partial
from caching_proxy.cache import serve
from caching_proxy.cache.coalescing import Coalescer
from caching_proxy.cache.flow_state import FlowState, Phase, answer_as_asked, state_of
from caching_proxy.cache.settings import Shared
from caching_proxy.cache.stale import StaleAnswers
from caching_proxy.cache.writes import expire_of, put, put_off_loop
from caching_proxy.cli.options import CACHE_NAME
from caching_proxy.policy import (
    NO_DIRECTIVES,
    SAFE_METHODS,
    StoredMeta,
    cache_status,
    client_not_modified,
    decide_store,
    evaluate,
    failure_of_status,
    freshen_headers,
    invalidation_uris,
    override_detail,
    storable_headers,
    stripped_fields,
    vary_key,
)
from caching_proxy.policy.encoding import KNOWN_CODINGS, compressible
from caching_proxy.policy.tags import tags_of
from caching_proxy.store.entry import Entry, decode_headers, encode_headers


class HeadBody:
    """`Response.stream` for a HEAD forwarded as GET whose length is unknown: nothing is sent
    (a HEAD answer has no body), and the body is kept for the store while it fits."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] | None = []
        self.size = 0

    def __call__(self, data: bytes) -> list[bytes]:
        if self.parts is not None:
            self.parts.append(data)
            self.size += len(data)
            if self.size > self.limit:
                self.parts = None  # too large to store: stop keeping it
        return []

    def body(self) -> bytes | None:
        return None if self.parts is None else b"".join(self.parts)


class Filler:
    def __init__(self, shared: Shared, coalescer: Coalescer, stale: StaleAnswers) -> None:
        self.shared = shared
        self.coalescer = coalescer
        self.stale = stale

    def on_headers(self, flow: http.HTTPFlow) -> None:
        """responseheaders: what must happen before a streamed body's head leaves."""
        state = state_of(flow)
        response = flow.response
        if state is None or state.phase is Phase.ANSWERED or response is None:
            return
        self._take_tags(state, response)
        if state.head and (response.stream or "content-length" not in response.headers):
            # The client's method back before its answer's head leaves (mitmproxy frames the
            # answer by it: a GET's chunked terminator after a HEAD answer would be read as the
            # next response); the body, read from the origin all the same, is never sent.
            answer_as_asked(flow, state)
            response.stream = serve.discard_body if response.stream else HeadBody(
                self.shared.settings.max_object_size)
        if response.stream and not state.head and response.status_code == 200:
            self.shared.too_large.add(state.key)
            if partial.wants_range(state.client_conditionals):
                partial.stream_range(response, state.client_conditionals)
        if response.stream or "content-length" not in response.headers:
            # Headers of a streamed body leave before the response hook; mitmproxy may also
            # switch a body of unknown length to streaming later. Marked now, and the mark
            # replaced by the response hook if the body is held.
            state.marked = True
            serve.mark(response, hit=False, status=cache_status(
                CACHE_NAME, hit=False, fwd=state.fwd,
                fwd_status=response.status_code if state.phase is Phase.REVALIDATE else None,
                detail=state.detail))

    def _take_tags(self, state: FlowState, response: http.Response) -> None:
        """Read the origin's cache tags into `state`, and remove their fields from the answer
        (and so from what is stored) unless the operator keeps them."""
        names = self.shared.settings.tag_fields
        if not names:
            return
        fields = decode_headers(response.headers.fields)
        state.tags = tags_of(fields, names)
        if not self.shared.settings.keep_tag_fields:
            for name in names:
                response.headers.pop(name, None)

    def on_response(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        state = state_of(flow)
        response = flow.response
        if state is None or state.phase is Phase.ANSWERED or response is None:
            return None
        storing = None
        try:
            storing = self._handle(flow, state, response)
            return storing
        finally:
            if storing is None:
                self.coalescer.finish(state)

    def _handle(
        self, flow: http.HTTPFlow, state: FlowState, response: http.Response
    ) -> Awaitable[None] | None:
        now = self.shared.clock()
        if state.marked and not response.stream:
            # The body was held after all: the provisional mark goes, before the origin's
            # fields are read for the store (else it is stored, and served twice over).
            serve.unmark(response)
            state.marked = False
        answer_as_asked(flow, state)
        if flow.request.method not in SAFE_METHODS:
            self._invalidate(state.key, flow.request, response)
        if state.phase is Phase.PASS:
            self._final_mark(response, state, cache_status(CACHE_NAME, hit=False, fwd=state.fwd,
                                                           detail=state.detail))
            return None
        failure = failure_of_status(response.status_code)
        if failure is not None and not response.stream and self.stale.answer(
                flow, state, failure, response.status_code):
            return None
        if self.shared.settings.compress and response.status_code == 200 and not response.stream:
            self._compress(flow, response)
        resp_headers = decode_headers(response.headers.fields)
        if state.phase is Phase.REVALIDATE and response.status_code == 304:
            return self._freshen(flow, state, resp_headers, now)
        entry = self._entry_to_store(flow, state, resp_headers, now)
        expire = None if entry is None else expire_of(entry, self.shared.settings.keep_stale)
        store = self.shared.store
        if entry is None or expire is None or store is None:
            self._answer_fill(flow, state, None)
            return None
        need = self._uses_needed(state)
        if need > 1 and store.remote:
            # The count is a network call: awaited in the hook's coroutine, not on the loop.
            return self._admit_off_loop(flow, state, entry, expire, need)
        if need > 1 and not self._admitted(state, need, store.count_use(
                state.key, self._use_window())):
            self._answer_fill(flow, state, None)
            return None
        if not store.put_inline(entry):
            return self._store_off_loop(flow, state, entry, expire)
        self.shared.too_large.discard(state.key)
        self._answer_fill(flow, state, entry if put(store, state, entry, expire) else None)
        return None

    @staticmethod
    def _uses_needed(state: FlowState) -> int:
        """A rule's `min_uses` for this storable answer: the N-th request for its key within the
        use window is stored, counted in the store so that every process on it shares the
        count; 1 (no count) without the rule, and for a key with a stored response
        (revalidated, refreshed), which is not counted again."""
        need = state.config.min_uses if state.config is not None else 1
        return 1 if state.stored is not None else need

    def _use_window(self) -> float:
        """Seconds a use count lasts after its latest request (cache_keep_stale, 1 s at least)."""
        return max(1.0, self.shared.settings.keep_stale)

    @staticmethod
    def _admitted(state: FlowState, need: int, uses: int) -> bool:
        """Whether `uses` (0 when the store failed) reaches `need`; if not, says so in the
        answer's cache status."""
        if uses >= need:
            return True
        state.detail = f"min-uses:{uses}/{need}"
        return False

    async def _admit_off_loop(self, flow: http.HTTPFlow, state: FlowState, entry: Entry,
                              expire: float, need: int) -> None:
        """For a network store: the use count awaited (within the store timeout), then the
        answer stored as `_store_off_loop` does, or answered unstored. The fill is finished
        once, here, whatever happens (the hook returned this coroutine instead)."""
        try:
            store = self.shared.store
            uses = 0 if store is None else await store.count_use_async(
                state.key, self._use_window())
            if self._admitted(state, need, uses):
                await self._put_and_answer(flow, state, entry, expire)
            else:
                self._answer_fill(flow, state, None)
        finally:
            self.coalescer.finish(state)

    async def _store_off_loop(self, flow: http.HTTPFlow, state: FlowState, entry: Entry,
                              expire: float) -> None:
        try:
            await self._put_and_answer(flow, state, entry, expire)
        finally:
            self.coalescer.finish(state)

    async def _put_and_answer(self, flow: http.HTTPFlow, state: FlowState, entry: Entry,
                              expire: float) -> None:
        """`entry` written with `put_off_loop`, then the answer marked as stored or not (the
        caller finishes the fill)."""
        stored = await put_off_loop(self.shared.store, state, entry, expire)
        if stored:
            self.shared.too_large.discard(state.key)
        self._answer_fill(flow, state, entry if stored else None)

    @staticmethod
    def _compress(flow: http.HTTPFlow, response: http.Response) -> None:
        """--compress: with the coding the (normalized) request accepts, before the response is
        stored and sent."""
        coding = flow.request.headers.get("accept-encoding", "")
        body = response.raw_content
        if (coding in KNOWN_CODINGS and body is not None and compressible(
                response.headers.get("content-type"), response.headers.get("content-encoding"),
                len(body))):
            codings.compress_response(response, coding)

    def _answer_fill(self, flow: http.HTTPFlow, state: FlowState, stored: Entry | None) -> None:
        """Mark a forwarded response, and answer the client's own conditionals from it."""
        response = flow.response
        assert response is not None
        revalidating = state.phase is Phase.REVALIDATE
        if revalidating and stored is None and response.status_code < 500:
            # A full answer superseded the stored one and may not be stored itself (4.3.3).
            self._delete(state.key)
        ttl = stored.meta.ttl(stored.meta.response_time) if stored else None
        if not self._final_mark(response, state, cache_status(
                CACHE_NAME, hit=False, fwd=state.fwd,
                fwd_status=response.status_code if revalidating else None,
                stored=stored is not None, ttl=ttl, detail=state.detail)):
            return
        if stored is not None and state.client_conditionals and client_not_modified(
                "GET", list(state.client_conditionals), stored.text_headers(),
                stored.meta.response_time):
            serve.not_modified(response, stored, self.shared.settings.config.targeted_fields)
        elif state.head:
            response.raw_content = b""
        elif (partial.wants_range(state.client_conditionals) and not response.stream
              and response.raw_content is not None):
            body = response.raw_content
            partial.apply(response, body, partial.plan_for(
                state.client_conditionals, response, len(body)))
        serve.send_as_view(response, self.shared.send_views)

    @staticmethod
    def _final_mark(response: http.Response, state: FlowState, status: str) -> bool:
        """Mark a forwarded response; False when its head was sent already (a streamed body,
        marked provisionally in responseheaders)."""
        if state.marked:
            return False
        serve.mark(response, hit=False, status=status)
        return True

    def _entry_to_store(
        self, flow: http.HTTPFlow, state: FlowState, resp_headers: list[tuple[str, str]],
        now: float,
    ) -> Entry | None:
        response = flow.response
        assert response is not None
        if isinstance(response.stream, HeadBody):
            body = response.stream.body()
        elif response.stream:
            return None
        else:
            body = response.raw_content
        if body is None:
            return None
        length = response.headers.get("content-length")
        complete = length is None or (length.isdigit() and int(length) == len(body))
        request_headers = decode_headers(flow.request.headers.fields)
        config = state.config or self.shared.settings.config
        decision = decide_store("GET", response.status_code, request_headers, resp_headers,
                                state.request_time, now, config, complete=complete)
        if not decision.store or decision.meta is None:
            return None
        kept = storable_headers(resp_headers, config.targeted_fields, stripped_fields(config))
        state.detail = override_detail(resp_headers, config)
        if length is None and response.status_code not in (204, 304):
            # The origin's framing (chunked, close) is hop-by-hop; a stored copy is sent whole.
            kept.append(("Content-Length", str(len(body))))
        return Entry(
            url=state.key, status=response.status_code, reason=response.data.reason,
            headers=encode_headers(kept), body=body, meta=decision.meta,
            vary_values=vary_key(decision.meta.vary, request_headers), tags=state.tags,
        )

    def _freshen(
        self, flow: http.HTTPFlow, state: FlowState, resp_headers: list[tuple[str, str]],
        now: float,
    ) -> Awaitable[None] | None:
        """A 304 to the cache's own conditional request: update the stored headers and serve
        the stored body (RFC 9111 4.3.4)."""
        stale = state.stored
        assert stale is not None
        config = state.config or self.shared.settings.config
        merged = storable_headers(
            freshen_headers(stale.text_headers(), resp_headers, response_time=now, config=config),
            config.targeted_fields, stripped_fields(config))
        decision = decide_store("GET", stale.status, decode_headers(flow.request.headers.fields),
                                merged, state.request_time, now, config)
        meta: StoredMeta = decision.meta if decision.meta is not None else stale.meta
        entry = Entry(url=stale.url, status=stale.status, reason=stale.reason,
                      headers=encode_headers(merged), body=stale.body, meta=meta,
                      vary_values=stale.vary_values, tags=state.tags or stale.tags)
        expire = expire_of(entry, self.shared.settings.keep_stale)
        store = self.shared.store
        if not decision.store or expire is None or store is None:
            self._freshened(flow, state, entry, now, stored=False)
            return None
        if store.put_inline(entry):
            self._freshened(flow, state, entry, now, stored=put(store, state, entry, expire))
            return None
        return self._freshen_off_loop(flow, state, entry, expire, now)

    async def _freshen_off_loop(self, flow: http.HTTPFlow, state: FlowState, entry: Entry,
                                expire: float, now: float) -> None:
        try:
            stored = await put_off_loop(self.shared.store, state, entry, expire)
            self._freshened(flow, state, entry, now, stored=stored)
        finally:
            self.coalescer.finish(state)

    def _freshened(self, flow: http.HTTPFlow, state: FlowState, entry: Entry, now: float, *,
                   stored: bool) -> None:
        if not stored:
            # Validated for this answer only: the origin no longer lets it be stored.
            self._delete(state.key)
        lookup = evaluate(NO_DIRECTIVES, entry.meta, now)
        serve.answer(flow, state, entry, self.shared, age=lookup.age, outcome="revalidated",
                     request_headers=state.client_conditionals,
                     # RFC 9211: why it went forward, "stale" or the client's "request".
                     status=cache_status(CACHE_NAME, hit=False, fwd=state.fwd, fwd_status=304,
                                         stored=stored, ttl=lookup.ttl))

    def _invalidate(self, key: str, request: http.Request, response: http.Response) -> None:
        # The key, not the URL mitmproxy prints: the two spell the host differently.
        for target in invalidation_uris(request.method, response.status_code, key,
                                        decode_headers(response.headers.fields)):
            self._delete(target)

    def _delete(self, key: str) -> None:
        if self.shared.store is not None:
            self.shared.store.delete(key)
