"""RFC 9213 targeted cache-control fields (CDN-Cache-Control)."""

from __future__ import annotations

import pytest

from caching_proxy.policy import (
    NO_DIRECTIVES,
    Action,
    CacheConfig,
    Headers,
    StoreDecision,
    decide_store,
    evaluate,
    format_http_date,
    response_directives,
)

T = 1_700_000_000.0
CONFIG = CacheConfig()


def decide(headers: Headers, config: CacheConfig = CONFIG) -> StoreDecision:
    return decide_store("GET", 200, [], [("Date", format_http_date(T)), *headers], T, T, config)


def lifetime(headers: Headers, config: CacheConfig = CONFIG) -> float:
    decision = decide(headers, config)
    assert decision.meta is not None, decision.reason
    return decision.meta.freshness_lifetime


class TestRfcExamples:
    def test_cdn_600_shared_120_others_60(self) -> None:
        # RFC 9213 3.1, first example.
        headers = [
            ("Cache-Control", "max-age=60, s-maxage=120"),
            ("CDN-Cache-Control", "max-age=600"),
        ]
        assert lifetime(headers) == 600
        # A cache that does not use CDN-Cache-Control gets the shared-cache lifetime.
        assert lifetime(headers, CacheConfig(targeted_fields=())) == 120

    def test_cdn_stores_while_others_may_not(self) -> None:
        headers = [("CDN-Cache-Control", "max-age=600"), ("Cache-Control", "no-store")]
        assert lifetime(headers) == 600
        assert not decide(headers, CacheConfig(targeted_fields=())).store

    def test_no_store_without_cdn_cache_control(self) -> None:
        assert decide([("Cache-Control", "no-store")]).reason == "no-store"

    def test_none_placeholder_lets_only_cdns_store(self) -> None:
        # 'none' is not a directive: the field is valid and non-empty, so Cache-Control is
        # ignored; with no freshness in it, the heuristic/default applies.
        decision = decide([("Cache-Control", "no-store"), ("CDN-Cache-Control", "none")])
        assert decision.meta is not None
        assert decision.meta.heuristic

    def test_target_list_precedence(self) -> None:
        # RFC 9213 2.2 example target list [ExampleCDN-Cache-Control, CDN-Cache-Control].
        config = CacheConfig(targeted_fields=("examplecdn-cache-control", "cdn-cache-control"))
        headers = [("CDN-Cache-Control", "max-age=600"), ("ExampleCDN-Cache-Control", "max-age=30")]
        assert lifetime(headers, config) == 30
        assert lifetime(headers) == 600


class TestSelection:
    def test_expires_is_ignored_when_a_targeted_field_is_used(self) -> None:
        headers = [("Expires", format_http_date(T + 1000)), ("CDN-Cache-Control", "public")]
        decision = decide(headers)
        assert decision.meta is not None
        assert decision.meta.heuristic
        assert decision.meta.freshness_lifetime == CONFIG.default_ttl

    @pytest.mark.parametrize(
        "value", ["", "   ", "max-age=60,", "Max-Age=60", 'max-age="unterminated']
    )
    def test_empty_or_invalid_field_falls_back_to_cache_control(self, value: str) -> None:
        headers = [("Cache-Control", "max-age=42"), ("CDN-Cache-Control", value)]
        assert lifetime(headers) == 42
        d = response_directives(headers, ("cdn-cache-control",))
        assert d.source == "cache-control" and not d.targeted

    def test_invalid_first_field_falls_back_to_next_targeted_field(self) -> None:
        config = CacheConfig(targeted_fields=("examplecdn-cache-control", "cdn-cache-control"))
        headers = [
            ("ExampleCDN-Cache-Control", "max-age=1.2.3"),
            ("CDN-Cache-Control", "max-age=77"),
        ]
        d = response_directives(headers, config.targeted_fields)
        assert d.source == "cdn-cache-control"
        assert lifetime(headers, config) == 77

    def test_fields_not_on_the_target_list_change_nothing(self) -> None:
        headers = [("Cache-Control", "max-age=42"), ("Other-Cache-Control", "no-store")]
        assert lifetime(headers) == 42

    def test_multiple_lines_are_combined(self) -> None:
        headers = [("CDN-Cache-Control", "max-age=60"), ("cdn-cache-control", "must-revalidate")]
        decision = decide(headers)
        assert decision.meta is not None
        assert decision.meta.freshness_lifetime == 60 and decision.meta.must_revalidate


class TestDirectives:
    def test_required_directives(self) -> None:
        # RFC 9213 2.2: max-age, must-revalidate, no-store, no-cache, private.
        assert decide([("CDN-Cache-Control", "no-store")]).reason == "no-store"
        assert decide([("CDN-Cache-Control", "private")]).reason == "private"
        assert decide([("CDN-Cache-Control", "no-cache")]).reason == "no-cache"
        with_etag = decide([("CDN-Cache-Control", "no-cache, max-age=60"), ("ETag", '"e"')])
        assert with_etag.meta is not None
        assert evaluate(NO_DIRECTIVES, with_etag.meta, T).action is Action.REVALIDATE

    def test_field_lists_are_strings(self) -> None:
        d = response_directives(
            [("CDN-Cache-Control", 'no-cache="Set-Cookie, X-A", private="x-b"')],
            ("cdn-cache-control",),
        )
        assert d.no_cache_fields == ("set-cookie", "x-a")
        assert d.private_fields == ("x-b",)
        assert not d.no_cache and not d.private

    def test_wrong_types_are_read_restrictively(self) -> None:
        # RFC 9213 2.1: values violating the inferred types are not consumed as is.
        d = response_directives(
            [("CDN-Cache-Control", "max-age=1.5, no-cache=?1, private=7, public=?0")],
            ("cdn-cache-control",),
        )
        assert d.max_age == 0
        assert d.no_cache and d.private
        assert not d.public

    def test_quoted_max_age_is_not_an_integer(self) -> None:
        assert lifetime([("CDN-Cache-Control", 'max-age="60"'), ("ETag", '"e"')]) == 0

    def test_parameters_are_ignored(self) -> None:
        assert lifetime([("CDN-Cache-Control", "max-age=60;foo=bar")]) == 60

    def test_extensions_apply(self) -> None:
        decision = decide(
            [("CDN-Cache-Control", "max-age=60, stale-while-revalidate=30, s-maxage=90")]
        )
        assert decision.meta is not None
        assert decision.meta.freshness_lifetime == 90
        assert decision.meta.stale_while_revalidate == 30
        assert decision.meta.must_revalidate  # s-maxage in a shared cache

    def test_authorization_permission_comes_from_the_targeted_field(self) -> None:
        auth = [("Authorization", "Basic x")]
        headers = [("Cache-Control", "public, max-age=60"), ("CDN-Cache-Control", "max-age=60")]
        decision = decide_store("GET", 200, auth, headers, T, T, CONFIG)
        assert decision.reason == "authorization"
        headers = [("CDN-Cache-Control", "public, max-age=60")]
        assert decide_store("GET", 200, auth, headers, T, T, CONFIG).store
