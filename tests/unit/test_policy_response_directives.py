"""Response directives (RFC 9111 5.2.2, RFC 5861, RFC 8246) and their effect on reuse."""

from __future__ import annotations

import math

import pytest

from caching_proxy.policy import (
    NO_DIRECTIVES,
    Action,
    CacheConfig,
    StoredMeta,
    can_serve_stale_on_error,
    decide_store,
    evaluate,
    format_http_date,
    parse_request_directives,
    serve_headers,
)
from caching_proxy.policy.directives import ResponseDirectives, parse_cache_control

T = 1_700_000_000.0


def meta(cc: str, *, etag: bool = True, last_modified: bool = False) -> StoredMeta:
    headers = [("Date", format_http_date(T)), ("Cache-Control", cc)]
    if etag:
        headers.append(("ETag", 'W/"v1"'))
    if last_modified:
        headers.append(("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT"))
    decision = decide_store("GET", 200, [], headers, T, T, CacheConfig())
    assert decision.meta is not None, decision.reason
    return decision.meta


class TestParseCacheControl:
    def test_every_known_directive(self) -> None:
        d = parse_cache_control(
            [
                "max-age=10, s-maxage=20, no-store, must-revalidate, proxy-revalidate, public,"
                " must-understand, immutable, stale-while-revalidate=5, stale-if-error=6"
            ]
        )
        assert d == ResponseDirectives(
            max_age=10,
            s_maxage=20,
            no_store=True,
            must_revalidate=True,
            proxy_revalidate=True,
            public=True,
            must_understand=True,
            immutable=True,
            stale_while_revalidate=5,
            stale_if_error=6,
            source="cache-control",
        )

    def test_qualified_no_cache_and_private_field_lists(self) -> None:
        d = parse_cache_control(['no-cache="Set-Cookie, X-A", private=X-B, no-cache="x-c"'])
        assert d.no_cache_fields == ("set-cookie", "x-a", "x-c")
        assert d.private_fields == ("x-b",)
        assert not d.no_cache and not d.private

    def test_unqualified_beats_qualified(self) -> None:
        # 4.2.1: conflicting directives -> the most restrictive.
        d = parse_cache_control(['no-cache="x", no-cache', 'private, private="y"'])
        assert d.no_cache and d.no_cache_fields == ()
        assert d.private and d.private_fields == ()

    def test_unknown_directives_and_garbage_are_ignored(self) -> None:
        d = parse_cache_control(['foo, bar="baz, qux", =1, , max-age=5'])
        assert d.max_age == 5
        assert d.no_cache is False

    def test_missing_comma_makes_max_age_invalid(self) -> None:
        assert parse_cache_control(["max-age=60 public"]).max_age == 0

    def test_no_field_has_empty_source(self) -> None:
        assert parse_cache_control([]).source == ""

    def test_invalid_stale_extensions_are_zero(self) -> None:
        d = parse_cache_control(["stale-while-revalidate=soon, stale-if-error"])
        assert (d.stale_while_revalidate, d.stale_if_error) == (0, 0)


class TestNoCache:
    def test_unqualified_no_cache_revalidates_even_when_fresh(self) -> None:
        lookup = evaluate(NO_DIRECTIVES, meta("no-cache, max-age=100"), T + 1)
        assert (lookup.action, lookup.detail, lookup.fwd) == (
            Action.REVALIDATE,
            "no-cache",
            "stale",
        )
        assert lookup.stale is False

    def test_qualified_no_cache_fields_are_stripped_unless_revalidated(self) -> None:
        m = meta('max-age=100, no-cache="Set-Cookie, X-Secret"')
        stored = [("Content-Type", "text/plain"), ("set-cookie", "a"), ("X-SECRET", "s")]
        assert evaluate(NO_DIRECTIVES, m, T + 1).action is Action.HIT
        assert serve_headers(stored, m, revalidated=False) == [("Content-Type", "text/plain")]
        assert serve_headers(stored, m, revalidated=True) == stored

    def test_serve_headers_without_no_cache_fields_is_a_copy(self) -> None:
        m = meta("max-age=100")
        stored = [("A", "1")]
        out = serve_headers(stored, m, revalidated=False)
        assert out == stored and out is not stored


class TestMustRevalidate:
    @pytest.mark.parametrize("cc", ["must-revalidate", "proxy-revalidate", "s-maxage=100"])
    def test_stale_must_be_revalidated(self, cc: str) -> None:
        m = meta(f"max-age=100, {cc}, stale-while-revalidate=1000")
        lookup = evaluate(NO_DIRECTIVES, m, T + 101)
        assert (lookup.action, lookup.detail) == (Action.REVALIDATE, "must-revalidate")
        assert not can_serve_stale_on_error(m, NO_DIRECTIVES, T + 101, math.inf)

    def test_fresh_is_still_a_hit(self) -> None:
        assert evaluate(NO_DIRECTIVES, meta("max-age=100, must-revalidate"), T + 99).action is (
            Action.HIT
        )


class TestStaleWhileRevalidate:
    def test_window(self) -> None:
        m = meta("max-age=100, stale-while-revalidate=60")
        lookup = evaluate(NO_DIRECTIVES, m, T + 130)
        assert lookup.action is Action.STALE_WHILE_REVALIDATE
        assert lookup.stale and lookup.ttl == -30
        # The background refresh is conditional.
        assert lookup.conditional_headers == (("If-None-Match", 'W/"v1"'),)
        assert evaluate(NO_DIRECTIVES, m, T + 160).action is Action.STALE_WHILE_REVALIDATE
        assert evaluate(NO_DIRECTIVES, m, T + 161).action is Action.REVALIDATE

    def test_request_no_cache_wins(self) -> None:
        m = meta("max-age=100, stale-while-revalidate=60")
        d = parse_request_directives([("Cache-Control", "no-cache")])
        assert evaluate(d, m, T + 130).action is Action.REVALIDATE

    def test_stale_without_validator_is_a_miss(self) -> None:
        m = meta("max-age=100, stale-if-error=10", etag=False)
        lookup = evaluate(NO_DIRECTIVES, m, T + 101)
        assert (lookup.action, lookup.detail, lookup.fwd) == (Action.MISS, "stale", "stale")

    def test_both_validators_are_sent(self) -> None:
        m = meta("max-age=1", last_modified=True)
        assert evaluate(NO_DIRECTIVES, m, T + 5).conditional_headers == (
            ("If-None-Match", 'W/"v1"'),
            ("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT"),
        )


class TestStaleIfError:
    def test_response_window(self) -> None:
        m = meta("max-age=100, stale-if-error=60")
        assert can_serve_stale_on_error(m, NO_DIRECTIVES, T + 160, 0)
        assert not can_serve_stale_on_error(m, NO_DIRECTIVES, T + 161, 0)

    def test_request_window(self) -> None:
        m = meta("max-age=100")
        d = parse_request_directives([("Cache-Control", "stale-if-error=30")])
        assert can_serve_stale_on_error(m, d, T + 130, 0)
        assert not can_serve_stale_on_error(m, d, T + 131, 0)
        assert not can_serve_stale_on_error(m, NO_DIRECTIVES, T + 101, 0)

    def test_operator_window(self) -> None:
        m = meta("max-age=100")
        assert can_serve_stale_on_error(m, NO_DIRECTIVES, T + 200, 100)
        assert not can_serve_stale_on_error(m, NO_DIRECTIVES, T + 201, 100)
        assert can_serve_stale_on_error(m, NO_DIRECTIVES, T + 10**9, math.inf)

    def test_never_for_no_cache(self) -> None:
        m = meta("no-cache, max-age=100, stale-if-error=600")
        assert not can_serve_stale_on_error(m, NO_DIRECTIVES, T + 101, math.inf)


def test_immutable_is_recorded_but_does_not_change_the_rules() -> None:
    # RFC 8246 concerns clients' reloads; for this cache the usual rules hold.
    m = meta("max-age=100, immutable")
    assert m.immutable
    d = parse_request_directives([("Cache-Control", "no-cache")])
    assert evaluate(d, m, T + 1).action is Action.REVALIDATE
