"""Building the answers the cache gives: a stored response, a 304 to the client's own
conditional, the marks (X-Cache, Cache-Status) on every response, HEAD answers without a body,
and (`own_answer`) every answer the proxy makes itself: refusals, 502/504, PURGE results.
"""

from __future__ import annotations

import time
from http import HTTPStatus

from mitmproxy import http
from mitmproxy.net.http import status_codes

from caching_proxy.cache import ranges as partial
from caching_proxy.cache.flow_state import FlowState, Phase, answer_as_asked
from caching_proxy.cache.settings import Shared
from caching_proxy.cli.options import CACHE_NAME
from caching_proxy.policy import (
    VALIDATING_FIELDS,
    cache_status,
    client_not_modified,
    not_modified_headers,
)
from caching_proxy.store.entry import Entry, encode_headers
from caching_proxy.store.guarded import OFF_LOOP_BYTES

TEXT = "text/plain; charset=utf-8"


def own_answer(status: int, body: str | bytes, *, fwd: str, detail: str, close: bool = True,
               content_type: str = TEXT) -> http.Response:
    """An answer the proxy makes itself, neither stored nor the origin's: a refusal, a 502 or
    504, a PURGE's result. The only place they are built: each is marked X-Cache: MISS with a
    Cache-Status saying fwd=`fwd` and `detail`, and (`close`) ends its connection."""
    fields = {"Content-Type": content_type, "X-Cache": "MISS",
              "Cache-Status": cache_status(CACHE_NAME, hit=False, fwd=fwd, detail=detail)}
    if close:
        fields["Connection"] = "close"
    response = http.Response.make(
        status, body.encode("utf-8", "replace") if isinstance(body, str) else body, fields)
    response.reason = reason_phrase(status)
    return response


def reason_phrase(status: int) -> str:
    """RFC 9110's phrase (the standard library's table: mitmproxy's has RFC 2616's "Request
    Time-out" and lacks 421 and 431)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return status_codes.RESPONSES.get(status, "Error")


def has_conditional(headers: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> bool:
    return any(k.lower() in VALIDATING_FIELDS for k, _ in headers)


def from_entry(
    entry: Entry,
    *,
    age: int,
    method: str,
    request_headers: list[tuple[str, str]] | tuple[tuple[str, str], ...],
    hit: bool,
    revalidated: bool,
    status: str,
    targeted_fields: tuple[str, ...],
    send_views: bool,
) -> http.Response:
    """The answer from `entry`: the stored response, or 304 when the client's own conditional
    matches it (RFC 9110 13.1). HEAD gets the head only."""
    # Age, X-Cache and Cache-Status join the prepared list in one go: editing a built Headers
    # object field by field costs more than the rest of a hit.
    own = ((b"Age", str(age).encode()), (b"X-Cache", b"HIT" if hit else b"MISS"),
           (b"Cache-Status", status.encode()))
    # Built whole in memory, so it ends as it starts. mitmproxy stamps timestamp_end itself
    # only before the response hook: an answer that replaces the origin's there (after a 304)
    # kept None, and mitmweb showed its time as "...".
    now = time.time()
    if has_conditional(request_headers) and client_not_modified(
            method, list(request_headers), entry.text_headers(), entry.meta.response_time):
        fields = encode_headers(not_modified_headers(
            entry.text_headers(), targeted_fields=targeted_fields))
        return http.Response(b"HTTP/1.1", 304, b"Not Modified", http.Headers(fields + own),
                             b"", None, now, now)
    fields = entry.served_headers(True) if revalidated else entry.hit_headers
    response = http.Response(b"HTTP/1.1", entry.status, entry.reason,
                             http.Headers(fields + own), b"", None, now, now)
    if method != "HEAD":
        if partial.wants_range(request_headers):
            partial.apply(response, entry.body, partial.plan_for(
                request_headers, response, len(entry.body)))
            if response.status_code != entry.status:
                return response
        response.raw_content = sendable(entry.body, send_views)
    return response


def not_modified(response: http.Response, entry: Entry, targeted_fields: tuple[str, ...]) -> None:
    """Turn a forwarded response into the 304 that answers the client's own conditional, keeping
    its marks."""
    marks = [(name, value) for name in ("X-Cache", "Cache-Status")
             for value in response.headers.get_all(name)]
    response.status_code = 304
    response.reason = "Not Modified"
    response.headers = http.Headers(encode_headers(not_modified_headers(
        entry.text_headers(), targeted_fields=targeted_fields)))
    for name, value in marks:
        response.headers.add(name, value)
    response.raw_content = b""


def mark(response: http.Response, *, hit: bool, status: str) -> None:
    response.headers["X-Cache"] = "HIT" if hit else "MISS"
    response.headers.add("Cache-Status", status)


def unmark(response: http.Response) -> None:
    """Remove the marks `mark` added (the origin's own Cache-Status entries stay)."""
    response.headers.pop("X-Cache", None)
    values = response.headers.get_all("Cache-Status")
    response.headers.set_all("Cache-Status", values[:-1])


def sendable(body: bytes, send_views: bool) -> bytes:
    """A large body as a memoryview: asyncio's transport (Python 3.11) copies the unsent part of
    a bytes object once more than that of a view (measured: 50 MB, ~20 ms less on the event
    loop). Only where no addon expects the body as bytes. Set through `raw_content`, never the
    constructor, which checks for bytes when Python runs without -O."""
    if send_views and len(body) > OFF_LOOP_BYTES:
        return memoryview(body)  # type: ignore[return-value]
    # A mapped body (store/diskcache_adapter.py) is a view: bytes for addons that read bodies.
    return body if type(body) is bytes else bytes(body)


def send_as_view(response: http.Response, send_views: bool) -> None:
    body = response.raw_content
    if body is not None and not response.stream and type(body) is bytes:
        response.raw_content = sendable(body, send_views)


def discard_body(data: bytes) -> list[bytes]:
    """A `Response.stream` that sends nothing: the answer to a HEAD that was forwarded as GET
    streams past the store's size bound, and a HEAD answer never has a body (RFC 9110 9.3.2)."""
    return []


def answer(
    flow: http.HTTPFlow,
    state: FlowState,
    entry: Entry,
    shared: Shared,
    *,
    age: int,
    status: str,
    outcome: str,
    request_headers: list[tuple[str, str]] | tuple[tuple[str, str], ...],
) -> None:
    """Answer `flow` from `entry`; the origin's answer, if any, is replaced. `outcome` "hit",
    "stale" or "collapsed" is X-Cache: HIT; "revalidated" (after a 304 from the origin) MISS."""
    revalidated = outcome == "revalidated"
    answer_as_asked(flow, state)
    flow.response = from_entry(
        entry, age=age, method=flow.request.method,
        request_headers=request_headers, hit=not revalidated, revalidated=revalidated,
        status=status, targeted_fields=shared.settings.config.targeted_fields,
        send_views=shared.send_views)
    state.phase = Phase.ANSWERED
    state.outcome = outcome
