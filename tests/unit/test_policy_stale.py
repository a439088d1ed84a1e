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


def test_default_serves_stale_when_the_origin_cannot_be_reached_only() -> None:
    # RFC 9111 4.2.4 lets a cache disconnected from the origin serve stale; the default covers
    # that ("error", "timeout") and a rate-limiting origin's 429 ("http_429"), and not an
    # origin that answers 5xx (RFC 5861 stale-if-error, or the operator's http_5xx, is needed
    # for those).
    from caching_proxy.cli.options import DEFAULTS

    default = parse_use_stale(DEFAULTS["cache_use_stale"])
    assert default == {"error", "timeout", "http_429"}
    assert serve_stale_on_failure(meta("max-age=10"), NO_DIRECTIVES, T0 + 10**6, "http_429",
                                  default)
    # A 429 is not among stale-if-error's statuses: without the condition, never stale.
    assert not serve_stale_on_failure(meta("max-age=10, stale-if-error=99999999"),
                                      NO_DIRECTIVES, T0 + 20, "http_429", frozenset())
    m = meta("max-age=10")
    assert serve_stale_on_failure(m, NO_DIRECTIVES, T0 + 10**6, "error", default)
    assert serve_stale_on_failure(m, NO_DIRECTIVES, T0 + 10**6, "timeout", default)
    for status in (500, 502, 503, 504):
        failure = failure_of_status(status)
        assert failure is not None
        assert not serve_stale_on_failure(m, NO_DIRECTIVES, T0 + 20, failure, default)


@pytest.mark.parametrize("cc", ["max-age=10, must-revalidate", "s-maxage=10",
                                "max-age=10, proxy-revalidate", "max-age=10, no-cache"])
def test_default_never_serves_what_a_directive_forbids(cc: str) -> None:
    # RFC 9111 4.2.4: "MUST NOT generate a stale response if it is prohibited by an explicit
    # in-protocol directive"; 5.2.2.4: no-cache means validate before every reuse.
    # With a validator: a no-cache response without one is not stored at all.
    decision = decide_store("GET", 200, [], [("Cache-Control", cc), ("ETag", '"v"')], T0, T0,
                            CacheConfig())
    assert decision.meta is not None
    m = decision.meta
    for failure in ("error", "timeout"):
        assert not serve_stale_on_failure(m, NO_DIRECTIVES, T0 + 20, failure,
                                          frozenset({"error", "timeout"}))
