"""The origin budget's pure decisions (policy/origin_budget.py): the GCRA schedule, Retry-After,
the backoff and XFetch's refresh-ahead rule."""

from __future__ import annotations

import math

import pytest

from caching_proxy.policy.fields import format_http_date
from caching_proxy.policy.origin_budget import (
    RETRY_AFTER_LONGEST,
    ahead_delta,
    backoff_for,
    next_backoff,
    parse_rate,
    refresh_ahead,
    refresh_due,
    reserve,
    retry_after_seconds,
)


@pytest.mark.parametrize(("text", "per_second"), [
    ("5", 5.0), ("5/s", 5.0), ("5/sec", 5.0), (" 120/m ", 2.0), ("90/min", 1.5), ("0.5/s", 0.5),
    ("", 0.0), ("0", 0.0),
])
def test_rates(text: str, per_second: float) -> None:
    assert parse_rate(text) == per_second


@pytest.mark.parametrize("text", ["fast", "5/h", "-1", "5/s/s", "1e3"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a rate"):
        parse_rate(text)


def schedule(arrivals: list[float], rate: float, burst: int = 1,
             max_wait: float = 100.0) -> list[float | None]:
    """The send time of each arrival (None: refused), through the one-number state."""
    tat, sends = 0.0, []
    for now in arrivals:
        place = reserve(tat, now, rate, burst, max_wait)
        tat = place.tat
        sends.append(None if place.wait is None else now + place.wait)
    return sends


def test_a_crowd_is_spaced_by_the_interval_in_arrival_order() -> None:
    sends = schedule([10.0] * 6, rate=5)
    assert sends == pytest.approx([10.0, 10.2, 10.4, 10.6, 10.8, 11.0])


def test_no_window_of_one_second_holds_more_than_rate_plus_burst() -> None:
    arrivals = [i * 0.013 for i in range(400)]  # 77 requests a second for 5 s
    for burst in (1, 3):
        sends = [s for s in schedule(arrivals, rate=5, burst=burst) if s is not None]
        for start in sends:
            in_window = sum(1 for s in sends if start <= s < start + 1.0)
            assert in_window <= 5 + burst


def test_burst_lets_that_many_go_at_once_then_spaces() -> None:
    sends = schedule([0.0] * 5, rate=2, burst=3)
    assert sends == pytest.approx([0.0, 0.0, 0.0, 0.5, 1.0])


def test_a_wait_past_the_queue_is_refused_and_takes_no_place() -> None:
    sends = schedule([0.0, 0.0, 0.0, 0.0], rate=1, max_wait=1.5)
    assert sends[:2] == pytest.approx([0.0, 1.0])
    assert sends[2:] == [None, None]
    # The refused ones moved nothing: the next arrival after the schedule drained goes at once.
    place = reserve(2.0, 2.0, 1, 1, 0.0)
    assert place.wait == 0.0


def test_an_idle_schedule_does_not_bank_credit() -> None:
    # After a long quiet spell the schedule starts again from now: no burst of the idle time.
    sends = schedule([0.0, 100.0, 100.0, 100.0], rate=1)
    assert sends == pytest.approx([0.0, 100.0, 101.0, 102.0])


def test_retry_after_in_seconds_and_as_a_date() -> None:
    assert retry_after_seconds("3", 0.0) == 3.0
    assert retry_after_seconds(" 0 ", 0.0) == 0.0
    now = 1_700_000_000.0
    assert retry_after_seconds(format_http_date(now + 30), now) == pytest.approx(30)
    assert retry_after_seconds(format_http_date(now - 30), now) == 0.0
    assert retry_after_seconds("999999999", now) == RETRY_AFTER_LONGEST
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds("-5", now) is None
    assert retry_after_seconds(None, now) is None


def test_backoff_doubles_to_a_minute_without_retry_after() -> None:
    pauses, previous = [], 0.0
    for _ in range(8):
        previous = next_backoff(previous)
        pauses.append(previous)
    assert pauses == [1, 2, 4, 8, 16, 32, 60, 60]


def test_which_answers_pause_the_origin() -> None:
    assert backoff_for(429, "7", 0.0, 0.0) == 7
    assert backoff_for(503, "7", 0.0, 0.0) == 7
    assert backoff_for(429, None, 0.0, 4.0) == 8
    assert backoff_for(503, None, 0.0, 4.0) is None  # an error, not "slow down"
    assert backoff_for(200, "7", 0.0, 4.0) is None
    assert backoff_for(500, "7", 0.0, 4.0) is None


def test_refresh_ahead_only_near_expiry_and_never_when_stale_or_off() -> None:
    delta = ahead_delta(lifetime=2.0, fetch_seconds=0.002)
    assert delta == pytest.approx(0.2)  # a tenth of the lifetime beats a fast origin's 2 ms
    assert ahead_delta(lifetime=2.0, fetch_seconds=0.5) == 0.5
    assert refresh_due(0.1, delta, 1.0) and not refresh_due(9.0, delta, 1.0)
    assert not refresh_due(-0.1, delta, 1.0)
    # u = e**-1: refreshes exactly when ttl <= delta * beta.
    u = math.exp(-1)
    assert refresh_ahead(0.2, delta, 1.0, u) and not refresh_ahead(0.21, delta, 1.0, u)
    assert refresh_ahead(0.4, delta, 2.0, u)  # beta 2: twice as early
    assert not refresh_ahead(0.0, delta, 1.0, 0.001)
    assert not refresh_ahead(0.1, delta, 0.0, 0.001)


def test_refresh_ahead_probability_follows_xfetch() -> None:
    # P(refresh at ttl t) = exp(-t / (delta * beta)); over a grid of u the share matches it.
    delta, grid = 0.2, [(i + 0.5) / 10_000 for i in range(10_000)]
    for ttl in (0.05, 0.2, 0.6):
        share = sum(refresh_ahead(ttl, delta, 1.0, u) for u in grid) / len(grid)
        assert share == pytest.approx(math.exp(-ttl / delta), abs=0.001)
