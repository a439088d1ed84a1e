"""`--slice SIZE` (nginx's slice module): a Range request the store cannot answer whole is
answered from fixed-size slices of the object, each fetched from the origin once as a range of
its own and stored, so a client reading a large object piecewise costs the origin only the
slices it touches, and a second pass costs it nothing.

What is sliced: a GET with one `first-[last]` range, no If-Range, a cacheable request (not a
pass), when no fresh whole response is stored (that one answers as before). A suffix range or
several ranges go the usual way (the whole object fetched once and stored). Each slice is a
stored response of its own (a 206 with its Content-Range), a member of the URL's group, so a
purge, an invalidation or a whole response stored for the URL removes the slices with it.

Guarantees: the bytes sent are of one object: every slice used has the length and the strong
ETag (else Last-Modified) of the first one; a stale slice, or one of another object, is fetched
again; if the object changed meanwhile, the slices fetched before are fetched again, once. An
origin that answers a slice's range with anything but a fitting 206 (a 200, an error, a weak
or no validator) gets the request the usual way, and its URL is not sliced again by this
process. Slice fetches go through the origin gate (budget, pauses, offline) as client requests.
"""

from __future__ import annotations

import asyncio

from mitmproxy import http

from caching_proxy.cache import serve
from caching_proxy.cache.flow_state import FlowState, Phase
from caching_proxy.cache.refresh import Refresher, fetch, tls_context
from caching_proxy.cache.settings import Shared, TooLarge
from caching_proxy.cache.writes import expire_of
from caching_proxy.cli.options import CACHE_NAME
from caching_proxy.policy import (
    CACHE_ANSWERED_FIELDS,
    NO_DIRECTIVES,
    Action,
    cache_status,
    decide_store,
    evaluate,
    storable_headers,
    stripped_fields,
)
from caching_proxy.policy.fields import first_value
from caching_proxy.policy.slices import (
    Piece,
    fits,
    piece_of,
    slice_indexes,
    slice_range,
    sliced_spec,
    unsatisfied_length,
)
from caching_proxy.store.backend import Unreadable
from caching_proxy.store.entry import Entry, decode_headers, encode_headers
from caching_proxy.store.slices import read_slice, write_slice

Headers = list[tuple[str, str]]
MAX_SLICES = 64  # slices one answer may gather (a 1m slice: 64 MiB); more: the usual way
_FRAMING = frozenset({"content-range", "content-length"})


class Slicer:
    def __init__(self, shared: Shared, refresher: Refresher) -> None:
        self.shared = shared
        self.refresher = refresher  # its gate admits the fetches; its before_copy sets fields
        self.unsliceable = TooLarge()  # URLs whose origin gave no fitting 206 (this process)

    def wanted(self, flow: http.HTTPFlow, state: FlowState, headers: Headers) -> bool:
        return (bool(self.shared.settings.slice_size) and flow.request.method == "GET"
                and state.outcome != "pass" and state.key not in self.unsliceable
                and sliced_spec(first_value(headers, "range"),
                                first_value(headers, "if-range")) is not None)

    async def answer(self, flow: http.HTTPFlow, state: FlowState, headers: Headers) -> bool:
        """Answer `flow` from slices; False (nothing answered) to let it go the usual way."""
        spec = sliced_spec(first_value(headers, "range"), first_value(headers, "if-range"))
        assert spec is not None
        first, last = spec
        size = self.shared.settings.slice_size
        got: dict[int, tuple[Entry, Piece]] = {}
        fetched = 0
        total: int | None = None
        reference: Piece | None = None
        for attempt in range(2):  # once more if the object changed under the first pass
            indexes = list(slice_indexes(first, last, size, total))
            position = 0
            while position < len(indexes):
                if len(got) >= MAX_SLICES:
                    return False
                index = indexes[position]
                found = await self._slice(flow, state, index, reference)
                if found is None:
                    return False
                if isinstance(found, int):  # nothing there: the range starts past the end
                    self._send(flow, state, {}, first, last, found, 1)
                    return True
                entry, piece, from_origin = found
                fetched += from_origin
                if reference is not None and piece.identity != reference.identity:
                    if attempt or not from_origin:
                        return False
                    # The origin's object changed: start over on the new one, whose identity
                    # the slices stored before do not have (so they are fetched again).
                    got, reference, total = {}, piece, piece.total
                    break
                reference, total = piece, piece.total
                got[index] = (entry, piece)
                indexes = list(slice_indexes(first, last, size, total))
                position += 1
            else:
                break
        if total is None or reference is None or not got:
            return False
        self._send(flow, state, got, first, last, total, fetched)
        return True

    async def _slice(self, flow: http.HTTPFlow, state: FlowState, index: int,
                     reference: Piece | None) -> tuple[Entry, Piece, bool] | int | None:
        """Slice `index`: stored and fresh (and of `reference`'s object), else fetched."""
        store = self.shared.store
        if store is None:
            return None
        try:
            found = await store.call(read_slice(state.key, index), None, large=True)
        except Unreadable:  # garbled: fetched again, and written over
            found = None
        stored = found if isinstance(found, Entry) else None
        if stored is not None:
            piece = piece_of(stored.status, stored.text_headers())
            lookup = evaluate(state.directives, stored.meta, self.shared.clock())
            if (piece is not None and lookup.action is Action.HIT
                    and (reference is None or piece.identity == reference.identity)):
                return stored, piece, False
        return await self._fetch(flow, state, index)

    async def _fetch(self, flow: http.HTTPFlow, state: FlowState,
                     index: int) -> tuple[Entry, Piece, bool] | int | None:
        """The slice from the origin (stored on the way), the object's length when the slice
        starts past its end (a 416), or None when the origin did not give it as a slice."""
        gate = self.refresher.gate
        ticket = "" if gate is None else await gate.admit_client()
        if ticket is None:
            return None  # offline, paused or over budget: the usual way answers that
        response = None
        try:
            for prepare in self.refresher.before_copy:
                prepare(flow)
            request = flow.request.copy()
            for name in (*CACHE_ANSWERED_FIELDS, "range", "if-range"):
                request.headers.pop(name, None)
            size = self.shared.settings.slice_size
            request.headers["Range"] = slice_range(index, size)
            context = tls_context() if request.scheme == "https" else None
            started = self.shared.clock()
            response = await asyncio.to_thread(
                fetch, request, self.shared.settings.refresh_timeout, size, context)
        except Exception:  # the origin failed: the usual way says how
            return None
        finally:
            if gate is not None:
                await gate.background_done(ticket, response)
        if response is None:
            return None
        fields = decode_headers(response.headers.fields)
        if response.status_code == 416 and (length := unsatisfied_length(fields)) is not None:
            return length  # the range starts past the end: the object's length says so
        piece = piece_of(response.status_code, fields)
        if piece is None or not fits(piece, index, size):
            self.unsliceable.add(state.key)
            return None
        entry = self._entry(state, request, response, fields, started)
        if entry is None:
            return None
        store = self.shared.store
        if store is not None:
            expire = expire_of(entry, self.shared.settings.keep_stale)
            if expire is not None:
                await store.call(write_slice(state.key, index, entry, expire), False, large=True)
        return entry, piece, True

    def _entry(self, state: FlowState, request: http.Request, response: http.Response,
               fields: Headers, started: float) -> Entry | None:
        """The slice as a stored response, if the object's freshness allows storing it (the
        policy as for the whole 200: a slice is that response, in part)."""
        config = state.config or self.shared.settings.config
        # Judged as the whole object's request and response (a Range request's own answer
        # is not storable as the URL's; a slice is stored apart, as the range it is).
        whole = [(k, v) for k, v in decode_headers(request.headers.fields)
                 if k.lower() != "range"]
        decision = decide_store("GET", 200, whole, fields, started, self.shared.clock(),
                                config, complete=True)
        if not decision.store or decision.meta is None or response.raw_content is None:
            return None
        kept = storable_headers(fields, config.targeted_fields, stripped_fields(config))
        return Entry(url=state.key, status=206, reason=response.data.reason,
                     headers=encode_headers(kept), body=response.raw_content,
                     meta=decision.meta, vary_values=())

    def _send(self, flow: http.HTTPFlow, state: FlowState, got: dict[int, tuple[Entry, Piece]],
              first: int, last: int | None, total: int, fetched: int) -> None:
        now = self.shared.clock()
        end = total - 1 if last is None else min(last, total - 1)
        if first >= total:
            flow.response = serve.own_answer(
                416, b"", fwd=state.fwd, detail="slice", close=False)
            flow.response.headers["Content-Range"] = f"bytes */{total}"
            del flow.response.headers["Content-Type"]
            self._answered(state, "miss" if fetched else "hit")
            return
        size = self.shared.settings.slice_size
        parts = []
        for index in sorted(got):
            entry, piece = got[index]
            low, high = max(first, piece.first), min(end, piece.last)
            if low <= high:
                parts.append(bytes(entry.body[low - piece.first:high - piece.first + 1]))
        body = b"".join(parts)
        assert len(body) == end - first + 1, (len(body), first, end, size)
        reference = got[min(got)][0]
        oldest = max(evaluate(NO_DIRECTIVES, e.meta, now).age for e, _ in got.values())
        response = http.Response.make(206, b"", http.Headers(
            [(k, v) for k, v in reference.headers if k.lower().decode() not in _FRAMING]))
        response.reason = "Partial Content"
        response.headers["Content-Range"] = f"bytes {first}-{end}/{total}"
        response.headers["Content-Length"] = str(len(body))
        response.headers["Age"] = str(oldest)
        response.raw_content = body
        ttl = min(evaluate(state.directives, e.meta, now).ttl for e, _ in got.values())
        status = (cache_status(CACHE_NAME, hit=False, fwd=state.fwd, stored=True, ttl=ttl,
                               detail=f"slices:{fetched}/{len(got)}") if fetched else
                  cache_status(CACHE_NAME, hit=True, ttl=ttl, detail="slices"))
        serve.mark(response, hit=not fetched, status=status)
        flow.response = response
        self._answered(state, "miss" if fetched else "hit")

    @staticmethod
    def _answered(state: FlowState, outcome: str) -> None:
        state.phase = Phase.ANSWERED
        state.outcome = outcome
