"""What the request hook learned about a flow, for the hooks that follow it.

A flow is in exactly one `Phase`; the other fields are what that phase needs. Addons that
observe the answer (counters, access log, metrics) read `outcome`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mitmproxy import http

from caching_proxy.policy import NO_DIRECTIVES, CacheConfig, RequestDirectives
from caching_proxy.store.entry import Entry

META_KEY = "caching_proxy"
# flow.metadata: the origin timeout (connect, first-byte, response) that cut the flow, set by
# edge/origin_timeouts.py before it cuts the connection; read by whatever answers the failure.
TIMEOUT_KEY = "caching_proxy.timeout"


class Phase(enum.Enum):
    PASS = "pass"  # forwarded as the client sent it; the answer is never stored
    ANSWERED = "answered"  # answered by the cache itself: later hooks leave it alone
    FILL = "fill"  # forwarded unconditionally, to store the answer (a miss)
    REVALIDATE = "revalidate"  # forwarded with the cache's validators of `stored`


# hit: from the store without the origin; miss: from the origin; revalidated: the origin said 304
# to the cache's conditional; pass: forwarded, never cached (method, no-store, bypass);
# unavailable: only-if-cached with nothing usable stored; stale: a stale stored response
# (stale-while-revalidate, or the origin failed); collapsed: answered from the response another
# request fetched meanwhile (coalescing).
OUTCOMES = ("hit", "miss", "revalidated", "pass", "unavailable", "stale", "collapsed")


@dataclass(slots=True)
class Fill:
    """This flow leads the fetch of `key` that other requests wait for (coalescing.py)."""

    key: str
    token: object  # this process's leadership, so that a late finish wakes nobody else's waiters
    store_token: str | None  # the store's lock, held where other processes share the store


@dataclass(slots=True)
class FlowState:
    key: str  # the cache key (keys.request_key), after any config-file rule
    phase: Phase = Phase.PASS
    outcome: str = "miss"  # one of OUTCOMES
    fwd: str = "uri-miss"  # RFC 9211 fwd= reason when the request went forward
    directives: RequestDirectives = NO_DIRECTIVES
    config: CacheConfig | None = None  # a config-file rule's storing settings, if one matched
    head: bool = False  # the client asked HEAD; forwarded as GET so the answer can be stored
    # The client's conditionals, removed before forwarding and answered from the result.
    client_conditionals: tuple[tuple[str, str], ...] = ()
    request_time: float = 0.0  # when the request went forward (RFC 9111 4.2.3)
    # The stored response: in REVALIDATE the one being revalidated; in FILL one that may still
    # answer if the origin fails (stale-if-error, --use-stale).
    stored: Entry | None = None
    fill: Fill | None = None
    marked: bool = False  # provisional X-Cache/Cache-Status added before the body was read
    tags: tuple[str, ...] = ()  # the origin's cache tags, read before its tag fields are removed
    # Cache-Status detail of a forwarded answer: a rule's bypass, override or min_uses count.
    detail: str | None = None


def state_of(flow: http.HTTPFlow) -> FlowState | None:
    state = flow.metadata.get(META_KEY)
    return state if isinstance(state, FlowState) else None


# The one HEAD rule (as nginx's proxy_cache_convert_head): a HEAD goes to the origin as a GET,
# so that its answer can be stored and answer GETs too; the client's HEAD is put back on the
# flow before its answer's head leaves (mitmproxy frames the answer by the request's method).

def forward_as_get(request: http.Request, state: FlowState) -> None:
    """Send a HEAD request on as GET, remembering that the client asked HEAD."""
    if request.method == "HEAD":
        request.method = "GET"
        state.head = True


def answer_as_asked(flow: http.HTTPFlow, state: FlowState) -> None:
    """The client's method back on the flow: HEAD where forward_as_get turned it into GET."""
    if state.head:
        flow.request.method = "HEAD"


def asked_method(flow: http.HTTPFlow) -> str:
    """The method the client sent, whatever the flow carries at the moment."""
    state = state_of(flow)
    return "HEAD" if state is not None and state.head else flow.request.method
