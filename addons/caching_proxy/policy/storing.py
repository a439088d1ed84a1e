"""Whether and how a response is stored: RFC 9111 section 3 for a shared cache."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

from .config import CacheConfig
from .directives import (
    ResponseDirectives,
    parse_cache_control,
    parse_request_directives,
    response_directives,
)
from .fields import (
    HOP_BY_HOP,
    PROXY_SPECIFIC,
    Headers,
    field_lines,
    field_values,
    first_value,
    has_field,
)
from .freshness import (
    UNDERSTOOD_STATUSES,
    corrected_initial_age,
    current_age,
    explicit_lifetime,
    heuristic_allowed,
    heuristic_lifetime,
)
from .rules import decision_headers


@dataclass(frozen=True, slots=True)
class StoredMeta:
    """Computed once when a response is stored (pickled with the entry), so a hit parses nothing."""

    request_time: float  # epoch seconds the request was sent to the origin
    response_time: float  # epoch seconds the response was received
    corrected_initial_age: float  # RFC 9111 4.2.3
    freshness_lifetime: float  # 4.2.1 (explicit), or 4.2.2 (heuristic or default_ttl)
    heuristic: bool
    must_revalidate: bool  # must-revalidate, proxy-revalidate or s-maxage (5.2.2.10)
    no_cache: bool  # unqualified no-cache: every reuse needs revalidation
    no_cache_fields: tuple[str, ...]  # qualified no-cache: stripped unless just revalidated
    stale_while_revalidate: float  # RFC 5861 seconds, 0 if none
    stale_if_error: float  # RFC 5861 seconds, 0 if none
    immutable: bool
    vary: tuple[str, ...]  # sorted lowercase names from Vary; never "*" (not stored)
    etag: str | None
    last_modified: str | None
    status: int

    def age(self, now: float) -> float:
        """Its current age at `now` (RFC 9111 4.2.3), seconds."""
        return current_age(self.corrected_initial_age, self.response_time, now)

    def ttl(self, now: float) -> float:
        """Seconds it stays fresh at `now` (negative: stale for that long): what Cache-Status's
        ttl, `--list`, `/entries` and the store's expiry all say."""
        return self.freshness_lifetime - self.age(now)

    # Pickling as dataclasses does it (a list of the fields' values), without its `fields()`
    # call per load: 15 us of every store read.
    def __getstate__(self) -> list[object]:
        return [getattr(self, name) for name in _META_FIELDS]

    def __setstate__(self, state: list[object]) -> None:
        for name, value in zip(_META_FIELDS, state, strict=True):
            object.__setattr__(self, name, value)


_META_FIELDS = tuple(f.name for f in fields(StoredMeta))


@dataclass(frozen=True, slots=True)
class StoreDecision:
    store: bool
    # "stored" when store is True; else one of: "method", "incomplete", "range", "status",
    # "no-store", "private", "authorization", "vary-star", "cookie", "set-cookie", "no-cache",
    # "zero-ttl", "transfer-coding".
    reason: str
    meta: StoredMeta | None  # set when store is True


def _no(reason: str) -> StoreDecision:
    return StoreDecision(False, reason, None)


def decide_store(
    method: str,
    status: int,
    request_headers: Headers,
    response_headers: Headers,
    request_time: float,
    response_time: float,
    config: CacheConfig,
    complete: bool = True,
) -> StoreDecision:
    # Only GET: RFC 9110 9.3.2 lets HEAD responses be cached, but a body-less HEAD response could
    # not answer a GET; the addon answers HEAD from the stored GET instead (RFC 9111 4).
    if method != "GET":
        return _no("method")
    # RFC 9111 3.3: an incomplete response may only be stored as such (for ranges); we never do.
    if not complete:
        return _no("incomplete")
    # 3.3/3.4: partial content is not stored, so range requests pass through.
    if has_field(request_headers, "range"):
        return _no("range")
    # RFC 9111 3: a final status, never 206 (partial, 3.3) or 304 (it freshens, validation.py).
    if not 200 <= status <= 599 or status in (206, 304):
        return _no("status")
    # RFC 9112 6.1: a transfer coding other than chunked (`gzip, chunked`) is part of how this
    # message travelled; mitmproxy undoes only chunked, so the stored body would be served coded
    # with nothing saying so. Passed on as it came, never stored.
    if any(c.lower() != "chunked" for c in field_values(response_headers, "transfer-encoding")):
        return _no("transfer-coding")
    # 5.2.1.5: request no-store forbids storing the response too.
    if parse_request_directives(request_headers).no_store:
        return _no("no-store")
    # A rule's `ignore`: the decision reads the response without those fields (rules.py).
    response_headers = decision_headers(response_headers, config)
    d = response_directives(response_headers, config.targeted_fields)
    # 5.2.2.3: must-understand limits storing to statuses whose caching rules we implement, and
    # for those it overrides no-store.
    if d.must_understand and status not in UNDERSTOOD_STATUSES:
        return _no("status")
    if d.no_store and not d.must_understand:
        return _no("no-store")
    # 5.2.2.7: unqualified private keeps shared caches out; qualified private only strips fields.
    if d.private:
        return _no("private")
    # 3.5: a shared cache stores a response to an authorized request only when the response says
    # shared caching is fine: public, s-maxage or must-revalidate.
    if has_field(request_headers, "authorization") and not (
        d.public or d.s_maxage is not None or d.must_revalidate
    ):
        return _no("authorization")
    vary = tuple(sorted({v.lower() for v in field_values(response_headers, "vary")}
                        | set(config.key_headers)))
    # 4.1: Vary: * never matches, so storing is pointless.
    if "*" in vary:
        return _no("vary-star")
    # Operator policy, not RFC: Varnish passes requests with Cookie by default.
    if not config.cache_cookie_requests and has_field(request_headers, "cookie"):
        return _no("cookie")
    # Operator policy: nginx/Varnish refuse Set-Cookie responses by default. A Set-Cookie the
    # origin names in private="..." is stripped before storage, and one named in no-cache="..."
    # is never served unrevalidated, so those responses are safe to keep.
    if (
        not config.cache_set_cookie
        and has_field(response_headers, "set-cookie")
        and "set-cookie" not in d.private_fields
        and "set-cookie" not in d.no_cache_fields
    ):
        return _no("set-cookie")

    lifetime = explicit_lifetime(d, response_headers, response_time)
    heuristic = lifetime is None
    if lifetime is None and config.status_ttl is not None and status in config.statuses:
        # A rule's lifetime for this status (nginx proxy_cache_valid 404 1m): the operator's,
        # for any final status, as explicit as max-age.
        lifetime, heuristic = config.status_ttl, False
    elif lifetime is None:
        # 3: without explicit freshness, only heuristically cacheable statuses or `public`.
        if not heuristic_allowed(status, d):
            return _no("status")
        lifetime = heuristic_lifetime(response_headers, response_time, config)
    if config.ttl_override is not None:
        lifetime, heuristic = config.ttl_override, False

    etag = first_value(response_headers, "etag") or None
    last_modified = first_value(response_headers, "last-modified") or None
    has_validator = etag is not None or last_modified is not None
    # A response that can never be reused is not worth the disk: unqualified no-cache needs a
    # validator to be revalidated (5.2.2.4), and a zero lifetime without one could only ever
    # be served through stale-while-revalidate or stale-if-error.
    if d.no_cache and not has_validator:
        return _no("no-cache")
    if (
        lifetime <= 0
        and not has_validator
        and d.stale_while_revalidate <= 0
        and d.stale_if_error <= 0
    ):
        return _no("zero-ttl")

    meta = StoredMeta(
        request_time=request_time,
        response_time=response_time,
        corrected_initial_age=corrected_initial_age(response_headers, request_time, response_time),
        freshness_lifetime=lifetime,
        heuristic=heuristic,
        must_revalidate=d.must_revalidate or d.proxy_revalidate or d.s_maxage is not None,
        no_cache=d.no_cache,
        no_cache_fields=d.no_cache_fields,
        stale_while_revalidate=d.stale_while_revalidate,
        stale_if_error=d.stale_if_error,
        immutable=d.immutable,
        vary=vary,
        etag=etag,
        last_modified=last_modified,
        status=status,
    )
    return StoreDecision(True, "stored", meta)


def _private_fields(headers: Headers, targeted_fields: Sequence[str]) -> set[str]:
    # Strip the union of Cache-Control's and the targeted field's lists: removing a field the
    # origin wanted private from shared caches is always safe.
    names = set(parse_cache_control(field_lines(headers, "cache-control")).private_fields)
    d: ResponseDirectives = response_directives(headers, targeted_fields)
    names.update(d.private_fields)
    return names


def storable_headers(
    response_headers: Headers, targeted_fields: Sequence[str] = ("cdn-cache-control",),
    strip: Iterable[str] = (),
) -> list[tuple[str, str]]:
    """The fields the cache keeps, in order (RFC 9111 3.1), less the lowercase names in `strip`
    (rules.stripped_fields: a Set-Cookie a rule ignored is never served to another client)."""
    drop = set(HOP_BY_HOP) | PROXY_SPECIFIC | set(strip)
    # RFC 9110 7.6.1: fields named in Connection are hop-by-hop too.
    drop.update(v.lower() for v in field_values(response_headers, "connection"))
    # 5.2.2.7: a shared cache MUST NOT store the fields a qualified private names.
    drop.update(_private_fields(response_headers, targeted_fields))
    return [(k, v) for k, v in response_headers if k.lower() not in drop]
