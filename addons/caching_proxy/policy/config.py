"""Operator settings the policy consults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CacheConfig:
    # Lifetime when a response has no explicit freshness and no Last-Modified (RFC 9111 4.2.2
    # leaves the heuristic to the cache; Varnish's default_ttl plays the same role).
    # 0 = never reuse without asking: such responses are stored only if they carry a validator.
    default_ttl: float = 300.0
    # Fraction of (Date - Last-Modified); RFC 9111 4.2.2 suggests no more than 10%.
    heuristic_fraction: float = 0.1
    heuristic_max: float = 86400.0
    # nginx and Varnish do not store responses carrying Set-Cookie by default.
    cache_set_cookie: bool = False
    # RFC 9213 target list, highest precedence first, lowercase names.
    targeted_fields: tuple[str, ...] = ("cdn-cache-control",)
    # Varnish's builtin VCL passes requests that carry Cookie; so do we by default.
    cache_cookie_requests: bool = False
    # From a config-file rule (rules.py): a lifetime replacing the response's own, and request
    # fields that select a stored response as if the response's Vary named them.
    ttl_override: float | None = None
    key_headers: tuple[str, ...] = ()
    # A rule's `status` with `ttl`: the lifetime of a response of one of `statuses` that states
    # no freshness (nginx proxy_cache_valid 404 1m), whether or not its status is heuristically
    # cacheable; a response's own freshness wins.
    status_ttl: float | None = None
    statuses: frozenset[int] = frozenset()
    # A rule's `ignore`: response fields the storing decision leaves out (rules.IGNORABLE).
    ignore: frozenset[str] = frozenset()
    # A rule's `min_uses`: requests for a key before its response is stored (the addon counts).
    min_uses: int = 1
