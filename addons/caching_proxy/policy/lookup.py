"""Reusing a stored response (RFC 9111 4, 4.2.4, 5.2.1; RFC 5861): hit, revalidate or forward.

`evaluate()` runs on every hit: it only does float arithmetic on `StoredMeta`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from .config import CacheConfig
from .directives import RequestDirectives
from .fields import Headers, has_field
from .freshness import current_age
from .storing import StoredMeta

# Client preconditions the addon removes before forwarding a request it wants to store the answer
# to (a MISS) or replaces with its own (a REVALIDATE): otherwise the origin may answer 304/412 to
# the client's condition and there is no full response to keep. nginx does the same
# (proxy_cache clears these and Range on the upstream request); the client's own conditionals are
# then answered from the stored response with `client_not_modified`.
CONDITIONAL_REQUEST_FIELDS = frozenset(
    {"if-match", "if-none-match", "if-modified-since", "if-unmodified-since", "if-range"}
)
# Of those and Range, what the cache answers itself from what it stores and never forwards on a
# miss or a revalidation (the origin is asked for the whole, unconditionally or with the cache's
# own validators): If-Match and If-Unmodified-Since requests pass instead (bypass_reason).
CACHE_ANSWERED_FIELDS = ("if-none-match", "if-modified-since", "if-range", "range")
# The validators among them (RFC 9110 13.1.2-13.1.3): a 304 answers them.
VALIDATING_FIELDS = ("if-none-match", "if-modified-since")

# Fields that frameworks read to rewrite the host, URL, scheme or method of a request (Symfony,
# Laravel, IIS, Express method-override...) but that are not in the cache key. An origin that
# reflects one without `Vary` would have the answer stored for everyone under the plain URL (the
# classic unkeyed-header poisoning), so requests carrying one pass: forwarded as sent, answered
# by the origin, never looked up or stored. X-Forwarded-For/-Proto stay usable: nearly every load
# balancer sets them. `Forwarded` (RFC 7239) carries host= and proto= as well. Names are matched
# with `_` read as `-`, as WSGI and CGI servers read them (the guard also drops such fields).
UNKEYED_OVERRIDE_FIELDS = frozenset({
    "x-forwarded-host", "x-forwarded-server", "x-forwarded-scheme", "x-forwarded-prefix",
    "x-forwarded-port", "forwarded", "x-host", "x-original-host", "x-original-url",
    "x-rewrite-url", "x-http-method-override", "x-http-method", "x-method-override",
})


class Action(enum.Enum):
    HIT = "hit"  # serve the stored response as is (fresh, or stale allowed by max-stale)
    STALE_WHILE_REVALIDATE = "swr"  # serve stale now, refresh in the background (RFC 5861 3)
    REVALIDATE = "revalidate"  # forward with `conditional_headers`
    MISS = "miss"  # forward unconditionally
    GATEWAY_TIMEOUT = "504"  # only-if-cached and nothing usable (5.2.1.7)


@dataclass(frozen=True, slots=True)
class Lookup:
    action: Action
    age: int  # current_age (4.2.3) for the Age field: integer seconds, never negative
    ttl: float  # freshness_lifetime - current_age, negative when stale (Cache-Status ttl=)
    stale: bool
    conditional_headers: tuple[tuple[str, str], ...]  # for REVALIDATE (4.3.1)
    # Why: "fresh", "max-stale", "stale-while-revalidate", "stale", "no-cache", "max-age",
    # "min-fresh", "must-revalidate", "only-if-cached", "uri-miss".
    detail: str
    # RFC 9211 fwd= token when the request goes forward: "uri-miss" (nothing stored), "stale"
    # (stored but stale, or the response demands validation), "request" (usable, but the
    # request's directives refused it); None otherwise.
    fwd: str | None = None


def conditional_headers(meta: StoredMeta) -> tuple[tuple[str, str], ...]:
    """RFC 9111 4.3.1: the ETag MUST be sent; Last-Modified is sent too, which RFC 9110 13.1.3
    makes harmless (an origin ignores If-Modified-Since when If-None-Match is present)."""
    out: list[tuple[str, str]] = []
    if meta.etag is not None:
        out.append(("If-None-Match", meta.etag))
    if meta.last_modified is not None:
        out.append(("If-Modified-Since", meta.last_modified))
    return tuple(out)


def evaluate(directives: RequestDirectives, meta: StoredMeta | None, now: float) -> Lookup:
    d = directives
    if meta is None:
        if d.only_if_cached:
            return Lookup(Action.GATEWAY_TIMEOUT, 0, 0.0, False, (), "only-if-cached")
        return Lookup(Action.MISS, 0, 0.0, False, (), "uri-miss", "uri-miss")

    age = current_age(meta.corrected_initial_age, meta.response_time, now)
    ttl = meta.freshness_lifetime - age
    stale = ttl <= 0  # 4.2: fresh means lifetime > age
    age_int = min(int(age), 2147483648)

    def forward(detail: str, fwd: str) -> Lookup:
        # 5.2.1.7: only-if-cached never goes to the origin.
        if d.only_if_cached:
            return Lookup(Action.GATEWAY_TIMEOUT, age_int, ttl, stale, (), "only-if-cached")
        cond = conditional_headers(meta)
        action = Action.REVALIDATE if cond else Action.MISS
        return Lookup(action, age_int, ttl, stale, cond, detail, fwd)

    # 5.2.2.4 / 5.2.1.4: no-cache on either side means validate first, fresh or not.
    if meta.no_cache:
        return forward("no-cache", "stale")
    if d.no_cache:
        return forward("no-cache", "request")
    # 5.2.1.1: the client wants a response no older than max-age.
    if d.max_age is not None and age > d.max_age:
        return forward("max-age", "request")
    # 5.2.1.3: ... and fresh for at least min-fresh more seconds.
    if d.min_fresh is not None and ttl < d.min_fresh:
        return forward("min-fresh", "request")
    if not stale:
        return Lookup(Action.HIT, age_int, ttl, False, (), "fresh")

    # Stale. 4.2.4 / 5.2.2.2: must-revalidate, proxy-revalidate and s-maxage forbid serving
    # it without validation, whatever the request allows.
    if meta.must_revalidate:
        return forward("must-revalidate", "stale")
    staleness = -ttl
    # 5.2.1.2: the client accepts this much staleness (max-stale alone: any).
    if d.max_stale is not None and staleness <= d.max_stale:
        return Lookup(Action.HIT, age_int, ttl, True, (), "max-stale")
    # RFC 5861 3, unless the request said it wants nothing stale (max-age without max-stale,
    # 5.2.1.1; no-cache and min-fresh were handled above).
    if (
        meta.stale_while_revalidate > 0
        and staleness <= meta.stale_while_revalidate
        and (d.max_age is None or d.max_stale is not None)
    ):
        cond = conditional_headers(meta)
        return Lookup(
            Action.STALE_WHILE_REVALIDATE, age_int, ttl, True, cond, "stale-while-revalidate"
        )
    return forward("stale", "stale")


def can_serve_stale_on_error(
    meta: StoredMeta, directives: RequestDirectives, now: float, operator_window: float
) -> bool:
    """Whether a stored response may answer when the origin fails (unreachable, or 500, 502, 503,
    504 per RFC 5861 4). The window is the widest of the response's stale-if-error, the request's
    stale-if-error and the operator's (nginx proxy_cache_use_stale, which has no time limit, is
    operator_window=math.inf). Never for must-revalidate, proxy-revalidate, s-maxage or
    unqualified no-cache responses (RFC 9111 4.2.4: a stale response MUST NOT be generated
    when a directive prohibits it)."""
    if meta.must_revalidate or meta.no_cache:
        return False
    age = current_age(meta.corrected_initial_age, meta.response_time, now)
    staleness = age - meta.freshness_lifetime
    window = max(meta.stale_if_error, directives.stale_if_error or 0.0, operator_window)
    return staleness <= window or math.isinf(window)


def bypass_reason(method: str, request_headers: Headers, config: CacheConfig) -> str | None:
    """Why a request skips the cache entirely (no lookup, no store), or None.

    GET and HEAD are looked up (a stored GET answers HEAD, RFC 9111 4 / RFC 9110 9.3.2); other
    methods pass (and may invalidate, see invalidation.py). Range requests are looked up like
    any other: a stored whole response answers them (ranges.py), and a miss fetches the whole.
    Requests with Cookie pass unless
    cache_cookie_requests, as in Varnish's builtin VCL. So do If-Match / If-Unmodified-Since
    and requests carrying an UNKEYED_OVERRIDE_FIELDS field.
    """
    if method not in ("GET", "HEAD"):
        return "method"
    if not config.cache_cookie_requests and has_field(request_headers, "cookie"):
        return "cookie"
    if has_field(request_headers, "if-match") or has_field(request_headers, "if-unmodified-since"):
        # Preconditions a cache would have to evaluate itself (RFC 9110 13.2); rare on GET, so
        # they pass to the origin, which knows the current state.
        return "precondition"
    if any(k.lower().replace("_", "-") in UNKEYED_OVERRIDE_FIELDS for k, _ in request_headers):
        return "unkeyed"
    return None


def serve_headers(
    stored_headers: Headers, meta: StoredMeta, revalidated: bool
) -> list[tuple[str, str]]:
    """Fields of a response served from cache: RFC 9111 5.2.2.4, the fields a qualified no-cache
    names are sent only right after a successful revalidation. Age/Cache-Status are the addon's."""
    if revalidated or not meta.no_cache_fields:
        return list(stored_headers)
    drop = frozenset(meta.no_cache_fields)
    return [(k, v) for k, v in stored_headers if k.lower() not in drop]
