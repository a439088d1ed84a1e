"""How much the origin may be asked, and when again: pure decisions, no I/O, no clock.

- The rate budget is a GCRA schedule (the generic cell rate algorithm, as nginx's `limit_req`
  and redis-cell keep it): one number, the theoretical arrival time (TAT) of the next request.
  A request at `now` is sent at `max(TAT, now) - tolerance`, never earlier than now, and moves
  TAT on by one interval; `burst` requests may go back to back. A request that would wait
  longer than the queue allows is refused and moves nothing. Reservations are made in arrival
  order, so requests leave in arrival order, and every window of one second sees at most
  `rate + burst` of them.
- Retry-After (RFC 9110 10.2.3): delay-seconds or an HTTP-date, on a 429 or a 503; a 429 without
  it backs off exponentially, 1 s doubling to 60 s, reset by the origin's next ordinary answer.
- Refresh ahead (Vattani, Chierichetti, Lowenstein, "Optimal Probabilistic Cache Stampede
  Prevention", VLDB 2015, "XFetch"): refresh when `-delta * beta * ln(u) >= ttl`, with `u`
  uniform in (0, 1], `delta` the last fetch's duration and `ttl` the seconds of freshness left.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .fields import parse_http_date

BACKOFF_FIRST = 1.0
BACKOFF_LONGEST = 60.0
# Longer than any Retry-After is obeyed: an origin's "come back next year" is a mistake.
RETRY_AFTER_LONGEST = 3600.0
BACKOFF_STATUSES = frozenset({429, 503})
LIFETIME_SHARE = 0.1

_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|second|m|min|minute))?\s*", re.I)


def parse_rate(text: str) -> float:
    """'5', '5/s', '120/m' -> requests per second; '0' or '' -> 0 (no rate budget).
    ValueError on anything else."""
    if not text.strip():
        return 0.0
    match = _RATE.fullmatch(text)
    if match is None:
        raise ValueError(f"not a rate: {text!r} (use N, N/s or N/m, e.g. 5/s or 120/m)")
    count = float(match.group(1))
    per_minute = (match.group(2) or "s").lower().startswith("m")
    return count / 60.0 if per_minute else count


@dataclass(frozen=True, slots=True)
class Reservation:
    """A GCRA decision: `wait` seconds before sending (0: now), or refused (`wait` None); `tat`
    is the schedule to keep afterwards (unchanged when refused)."""

    wait: float | None
    tat: float


def reserve(tat: float, now: float, rate: float, burst: int, max_wait: float) -> Reservation:
    """One request's place in the schedule `tat` (0 for a new one) at `rate` per second with
    `burst` requests allowed back to back (at least 1). Guarantees: the requests reserved send
    times at least 1/rate apart beyond the burst; none waits more than `max_wait`."""
    interval = 1.0 / rate
    tolerance = (max(1, burst) - 1) * interval
    start = max(tat, now)
    send_at = max(now, start - tolerance)
    wait = send_at - now
    if wait > max_wait:
        return Reservation(None, tat)
    return Reservation(wait, start + interval)


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """The seconds a Retry-After field value asks to wait, at most RETRY_AFTER_LONGEST; None when
    absent or unreadable (then the caller backs off on its own)."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), RETRY_AFTER_LONGEST)
    when = parse_http_date(text)
    if when is None:
        return None
    return min(max(0.0, when - now), RETRY_AFTER_LONGEST)


def next_backoff(previous: float) -> float:
    """The pause after one more 429/503 without Retry-After: 1 s, then doubled, at most 60 s."""
    if previous <= 0:
        return BACKOFF_FIRST
    return min(previous * 2, BACKOFF_LONGEST)


def backoff_for(status: int, retry_after: str | None, now: float,
                previous: float) -> float | None:
    """Seconds to stop asking the origin after an answer of `status`, or None for an answer that
    asks nothing of the kind (then any exponential backoff starts over): a 429 or 503 with a
    Retry-After its time; a 429 without one `next_backoff` (a 503 without one is an error of the
    origin's, not a request to slow down: stale-on-error answers it)."""
    if status not in BACKOFF_STATUSES:
        return None
    asked = retry_after_seconds(retry_after, now)
    if asked is not None:
        return asked
    return next_backoff(previous) if status == 429 else None


def ahead_delta(lifetime: float, fetch_seconds: float) -> float:
    """XFetch's delta for a proxy: the last fetch's duration, but at least LIFETIME_SHARE of
    the entry's freshness lifetime. A local origin answers in a millisecond, which alone would
    refresh only in the last few milliseconds, after the requests around expiry have already
    met a stale entry; the share makes the refresh land, on average, in the last tenth of the
    lifetime (times beta): an entry requested steadily is fetched about every 0.9 lifetimes."""
    return max(fetch_seconds, lifetime * LIFETIME_SHARE, 0.001)


def refresh_due(ttl: float, delta: float, beta: float) -> bool:
    """Whether an entry with `ttl` seconds of freshness left is close enough to its expiry
    for `refresh_ahead` to have a real chance (under e**-5, 0.7%, past it: the rule's tail is
    cut there), so that a hit far from expiry draws no random number and counts nothing."""
    return 0 < ttl <= delta * beta * 5


def refresh_ahead(ttl: float, delta: float, beta: float, u: float) -> bool:
    """XFetch: whether a fresh entry with `ttl` seconds left (`delta`: ahead_delta) is
    refreshed now; `u` is a uniform random number in (0, 1]. Never for a stale entry (ttl <=
    0: that is revalidation's) or with beta 0."""
    if ttl <= 0 or beta <= 0 or u <= 0:
        return False
    return -delta * beta * math.log(u) >= ttl
