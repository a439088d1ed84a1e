"""Serving stale on origin failure: operator conditions and RFC 5861 stale-if-error windows."""

from __future__ import annotations

import pytest

from caching_proxy.policy import (
    NO_DIRECTIVES,
    CacheConfig,
    decide_store,
    failure_of_status,
    parse_request_directives,
    parse_use_stale,
    serve_stale_on_failure,
)
from caching_proxy.policy.storing import StoredMeta

T0 = 1_000_000.0


def meta(cache_control: str) -> StoredMeta:
    decision = decide_store("GET", 200, [], [("Cache-Control", cache_control)], T0, T0,
                            CacheConfig())
    assert decision.meta is not None
    return decision.meta


def test_parse_use_stale() -> None:
    assert parse_use_stale("off") == frozenset()
    assert parse_use_stale("") == frozenset()
    assert parse_use_stale("error, timeout http_503") == {"error", "timeout", "http_503"}
    with pytest.raises(ValueError, match="unknown cache_use_stale condition 'http_404'"):
        parse_use_stale("error,http_404")


def test_failure_of_status() -> None:
    assert [failure_of_status(s) for s in (200, 404, 500, 502, 503, 504, 501)] == [
        None, None, "http_500", "http_502", "http_503", "http_504", None]


def test_stale_if_error_window_of_the_response() -> None:
    m = meta("max-age=10, stale-if-error=20")
    assert serve_stale_on_failure(m, NO_DIRECTIVES, T0 + 29, "http_503", frozenset())
    assert not serve_stale_on_failure(m, NO_DIRECTIVES, T0 + 31, "http_503", frozenset())


def test_stale_if_error_of_the_request() -> None:
    m = meta("max-age=10")
    d = parse_request_directives([("Cache-Control", "stale-if-error=100")])
    assert serve_stale_on_failure(m, d, T0 + 50, "error", frozenset())
    assert not serve_stale_on_failure(m, NO_DIRECTIVES, T0 + 50, "error", frozenset())


def test_operator_condition_allows_any_staleness_for_that_failure_only() -> None:
    m = meta("max-age=10")
    use = parse_use_stale("timeout,http_502")
    assert serve_stale_on_failure(m, NO_DIRECTIVES, T0 + 10**6, "timeout", use)
    assert serve_stale_on_failure(m, NO_DIRECTIVES, T0 + 10**6, "http_502", use)
    assert not serve_stale_on_failure(m, NO_DIRECTIVES, T0 + 11, "http_503", use)


@pytest.mark.parametrize("cc", ["max-age=10, must-revalidate", "s-maxage=10",
                                "max-age=10, proxy-revalidate"])
def test_never_stale_when_the_response_forbids_it(cc: str) -> None:
    m = meta(cc + ", stale-if-error=1000")
    assert not serve_stale_on_failure(m, NO_DIRECTIVES, T0 + 20, "error", frozenset({"error"}))
