"""Request directives (RFC 9111 5.2.1, 5.4) and how they steer reuse."""

from __future__ import annotations

import math

import pytest

from caching_proxy.policy import (
    NO_DIRECTIVES,
    Action,
    CacheConfig,
    RequestDirectives,
    StoredMeta,
    bypass_reason,
    decide_store,
    evaluate,
    format_http_date,
    parse_request_directives,
)

T = 1_700_000_000.0


def meta(cc: str = "max-age=100", *, etag: bool = True) -> StoredMeta:
    headers = [("Date", format_http_date(T)), ("Cache-Control", cc)]
    if etag:
        headers.append(("ETag", '"v1"'))
    decision = decide_store("GET", 200, [], headers, T, T, CacheConfig())
    assert decision.meta is not None
    return decision.meta


def req(cc: str) -> RequestDirectives:
    return parse_request_directives([("Cache-Control", cc)])


class TestParsing:
    def test_no_fields_returns_the_shared_constant(self) -> None:
        assert parse_request_directives([("Accept", "*/*")]) is NO_DIRECTIVES
        assert RequestDirectives() == NO_DIRECTIVES

    def test_all_directives(self) -> None:
        d = req("no-store, no-cache, max-age=5, max-stale=10, min-fresh=3, only-if-cached")
        assert d == RequestDirectives(
            no_store=True,
            no_cache=True,
            max_age=5,
            max_stale=10,
            min_fresh=3,
            only_if_cached=True,
        )

    def test_max_stale_without_value_is_unlimited(self) -> None:
        assert req("max-stale").max_stale == math.inf

    def test_quoted_arguments_and_odd_spacing(self) -> None:
        d = req(' MAX-AGE = "30" ,,  min-fresh=5 ')
        assert (d.max_age, d.min_fresh) == (30, 5)

    def test_invalid_values(self) -> None:
        # max-age: restrictive (0); max-stale / min-fresh: ignored.
        d = req("max-age=soon, max-stale=-1, min-fresh=x")
        assert (d.max_age, d.max_stale, d.min_fresh) == (0, None, None)

    def test_first_occurrence_wins(self) -> None:
        d = parse_request_directives(
            [("Cache-Control", "max-age=5"), ("Cache-Control", "max-age=50")]
        )
        assert d.max_age == 5

    def test_stale_if_error_in_a_request(self) -> None:
        assert req("stale-if-error=30").stale_if_error == 30

    def test_pragma_no_cache_without_cache_control(self) -> None:
        # RFC 9111 5.4
        assert parse_request_directives([("Pragma", "no-cache")]).no_cache
        assert parse_request_directives([("Pragma", "NO-CACHE, x")]).no_cache
        assert not parse_request_directives([("Pragma", "foo")]).no_cache

    def test_pragma_ignored_when_cache_control_present(self) -> None:
        d = parse_request_directives([("Pragma", "no-cache"), ("Cache-Control", "max-age=10")])
        assert not d.no_cache
        assert d.max_age == 10

    def test_unknown_directives_are_ignored(self) -> None:
        assert req("foo, bar=1, no-transform") == RequestDirectives()


class TestEvaluate:
    def test_nothing_stored_is_a_miss(self) -> None:
        lookup = evaluate(NO_DIRECTIVES, None, T)
        assert (lookup.action, lookup.fwd, lookup.stale) == (Action.MISS, "uri-miss", False)

    def test_nothing_stored_with_only_if_cached_is_504(self) -> None:
        assert evaluate(req("only-if-cached"), None, T).action is Action.GATEWAY_TIMEOUT

    def test_fresh_hit(self) -> None:
        lookup = evaluate(NO_DIRECTIVES, meta(), T + 30)
        assert (lookup.action, lookup.age, lookup.ttl, lookup.stale) == (Action.HIT, 30, 70, False)
        assert lookup.conditional_headers == ()

    def test_request_no_cache_revalidates_even_when_fresh(self) -> None:
        lookup = evaluate(req("no-cache"), meta(), T + 1)
        assert (lookup.action, lookup.detail, lookup.fwd) == (
            Action.REVALIDATE,
            "no-cache",
            "request",
        )
        assert lookup.conditional_headers == (("If-None-Match", '"v1"'),)

    def test_request_no_cache_without_validator_is_a_miss(self) -> None:
        lookup = evaluate(req("no-cache"), meta(etag=False), T + 1)
        assert lookup.action is Action.MISS
        assert lookup.conditional_headers == ()

    def test_max_age(self) -> None:
        # 5.2.1.1: acceptable while age <= max-age.
        m = meta()
        assert evaluate(req("max-age=30"), m, T + 30).action is Action.HIT
        lookup = evaluate(req("max-age=30"), m, T + 31)
        assert (lookup.action, lookup.detail) == (Action.REVALIDATE, "max-age")

    def test_max_age_zero_forces_validation_of_any_aged_response(self) -> None:
        assert evaluate(req("max-age=0"), meta(), T + 1).action is Action.REVALIDATE

    def test_min_fresh(self) -> None:
        # 5.2.1.3: must stay fresh for at least min-fresh more seconds.
        m = meta()
        assert evaluate(req("min-fresh=20"), m, T + 80).action is Action.HIT
        lookup = evaluate(req("min-fresh=20"), m, T + 81)
        assert (lookup.action, lookup.detail) == (Action.REVALIDATE, "min-fresh")

    def test_max_stale_bounds_the_staleness(self) -> None:
        m = meta()
        lookup = evaluate(req("max-stale=50"), m, T + 150)
        assert (lookup.action, lookup.stale, lookup.detail) == (Action.HIT, True, "max-stale")
        assert lookup.ttl == -50
        assert evaluate(req("max-stale=50"), m, T + 151).action is Action.REVALIDATE

    def test_max_stale_without_value_accepts_any_staleness(self) -> None:
        assert evaluate(req("max-stale"), meta(), T + 10**6).action is Action.HIT

    def test_max_stale_does_not_override_must_revalidate(self) -> None:
        lookup = evaluate(req("max-stale"), meta("max-age=100, must-revalidate"), T + 101)
        assert (lookup.action, lookup.detail) == (Action.REVALIDATE, "must-revalidate")

    def test_max_age_and_max_stale_combine(self) -> None:
        m = meta()
        assert evaluate(req("max-age=200, max-stale=100"), m, T + 150).action is Action.HIT
        assert evaluate(req("max-age=120, max-stale=100"), m, T + 150).action is Action.REVALIDATE

    def test_only_if_cached_never_forwards(self) -> None:
        m = meta()
        assert evaluate(req("only-if-cached"), m, T + 10).action is Action.HIT
        assert evaluate(req("only-if-cached"), m, T + 200).action is Action.GATEWAY_TIMEOUT
        assert evaluate(req("only-if-cached, max-stale"), m, T + 200).action is Action.HIT
        assert evaluate(req("only-if-cached, no-cache"), m, T).action is Action.GATEWAY_TIMEOUT

    def test_pragma_no_cache_revalidates(self) -> None:
        d = parse_request_directives([("Pragma", "no-cache")])
        assert evaluate(d, meta(), T + 1).action is Action.REVALIDATE

    def test_request_max_age_without_max_stale_refuses_stale_while_revalidate(self) -> None:
        m = meta("max-age=100, stale-while-revalidate=60")
        assert evaluate(NO_DIRECTIVES, m, T + 120).action is Action.STALE_WHILE_REVALIDATE
        assert evaluate(req("max-age=1000"), m, T + 120).action is Action.REVALIDATE
        swr = evaluate(req("max-age=1000, max-stale=5"), m, T + 120)
        assert swr.action is Action.STALE_WHILE_REVALIDATE


class TestBypass:
    @pytest.mark.parametrize(
        ("method", "headers", "reason"),
        [
            ("GET", [], None),
            ("HEAD", [], None),
            ("POST", [], "method"),
            ("get", [], "method"),
            ("GET", [("Range", "bytes=0-5")], None),  # looked up: a stored whole answers it
            ("GET", [("Cookie", "a=1")], "cookie"),
        ],
    )
    def test_reasons(self, method: str, headers: list[tuple[str, str]], reason: str | None) -> None:
        assert bypass_reason(method, headers, CacheConfig()) == reason

    def test_cookie_requests_looked_up_when_configured(self) -> None:
        config = CacheConfig(cache_cookie_requests=True)
        assert bypass_reason("GET", [("Cookie", "a=1")], config) is None
