"""Freshness lifetime (RFC 9111 4.2.1, 4.2.2) and age (4.2.3)."""

from __future__ import annotations

import math

from .config import CacheConfig
from .directives import ResponseDirectives
from .fields import (
    Headers,
    field_lines,
    field_values,
    first_value,
    parse_delta_seconds,
    parse_http_date,
)

# RFC 9110 15.1 "heuristically cacheable" status codes, less 206: partial content is passed through.
HEURISTICALLY_CACHEABLE = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})
# Statuses whose semantics we know (for `public` and must-understand) that are cacheable by
# explicit freshness only: 302/303/307 (RFC 9110 15.4), 451 (RFC 7725 3). Any other final status
# but 206/304 is stored when the origin gives it explicit freshness (RFC 9111 3), as nginx does.
EXPLICIT_ONLY = frozenset({302, 303, 307, 451})
UNDERSTOOD_STATUSES = HEURISTICALLY_CACHEABLE | EXPLICIT_ONLY


def explicit_lifetime(
    d: ResponseDirectives, headers: Headers, response_time: float
) -> float | None:
    """RFC 9111 4.2.1 for a shared cache: s-maxage, max-age, then Expires - Date; None if none."""
    if d.s_maxage is not None:
        return d.s_maxage
    if d.max_age is not None:
        return d.max_age
    if d.targeted:
        return None  # RFC 9213 2.2: a targeted field in use makes Expires ignored
    expires_lines = field_lines(headers, "expires")
    if not expires_lines:
        return None
    # 4.2.1: with several Expires lines, use the first. 5.3: an invalid date ("0", "-1") is a
    # time in the past, i.e. already stale.
    expires = parse_http_date(expires_lines[0])
    if expires is None:
        return 0.0
    return max(0.0, expires - date_value(headers, response_time))


def heuristic_lifetime(headers: Headers, response_time: float, config: CacheConfig) -> float:
    """RFC 9111 4.2.2: a fraction of the time since Last-Modified, capped; else default_ttl."""
    last_modified = parse_http_date(first_value(headers, "last-modified"))
    if last_modified is None:
        return max(0.0, config.default_ttl)
    since = date_value(headers, response_time) - last_modified
    return max(0.0, min(since * config.heuristic_fraction, config.heuristic_max))


def heuristic_allowed(status: int, d: ResponseDirectives) -> bool:
    """RFC 9111 4.2.2: heuristics only for heuristically cacheable statuses or `public`."""
    return status in HEURISTICALLY_CACHEABLE or (d.public and status in UNDERSTOOD_STATUSES)


def date_value(headers: Headers, response_time: float) -> float:
    """The Date field; RFC 9110 6.6.1: a recipient treats a missing (or invalid) Date as the time
    the response was received."""
    date = parse_http_date(first_value(headers, "date"))
    return response_time if date is None else date


def corrected_initial_age(headers: Headers, request_time: float, response_time: float) -> float:
    """RFC 9111 4.2.3, everything before resident time."""
    # Date has one-second resolution: compared with the exact receive time, a response dated
    # this very second would look up to 1 s old, which a short TTL cannot afford. Compared at
    # Date's own resolution, as Squid's whole-second clock does, it is 0 s old.
    apparent_age = max(0.0, math.floor(response_time) - date_value(headers, math.floor(response_time)))
    age_value = age_field(headers) or 0
    # A clock going backwards between request and response must not make the delay negative.
    response_delay = max(0.0, response_time - request_time)
    corrected_age_value = age_value + response_delay
    return max(apparent_age, corrected_age_value)


def age_field(headers: Headers) -> int | None:
    """RFC 9111 5.1: the Age value, or None when absent or ignored.

    A list-based value (one line "0, 7200", or several lines, which RFC 9110 5.3 combines into
    one list) counts by its first member; a first member that is not a non-negative integer
    ("abc", "-7200", "7200.0", "7200;foo=bar") makes the cache ignore the field (SHOULD), i.e.
    the age comes from Date and the response delay alone. The HTTP cache tests' development head
    expects the same (age-parse-*); their 0.4.5 release read all of these as stale.
    """
    ages = field_values(headers, "age")
    return parse_delta_seconds(ages[0]) if ages else None


def current_age(corrected_initial: float, response_time: float, now: float) -> float:
    """RFC 9111 4.2.3: corrected_initial_age + resident_time (never negative)."""
    return corrected_initial + max(0.0, now - response_time)
