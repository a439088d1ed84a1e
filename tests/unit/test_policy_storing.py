"""Storing responses in a shared cache (RFC 9111 section 3)."""

from __future__ import annotations

import pytest

from caching_proxy.policy import CacheConfig, Headers, StoreDecision, decide_store, storable_headers

T = 1_700_000_000.0
CONFIG = CacheConfig()
FRESH = ("Cache-Control", "max-age=60")


def decide(
    response: Headers,
    request: Headers = (),
    *,
    method: str = "GET",
    status: int = 200,
    config: CacheConfig = CONFIG,
    complete: bool = True,
) -> StoreDecision:
    return decide_store(method, status, request, response, T, T, config, complete)


def refused(decision: StoreDecision) -> str:
    assert not decision.store
    assert decision.meta is None
    return decision.reason


def test_plain_cacheable_response_is_stored() -> None:
    decision = decide([FRESH, ("ETag", '"a"'), ("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")])
    assert decision.store and decision.reason == "stored"
    assert decision.meta is not None
    assert decision.meta.etag == '"a"'
    assert decision.meta.last_modified == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert decision.meta.status == 200
    assert decision.meta.request_time == T


@pytest.mark.parametrize("method", ["HEAD", "POST", "PUT", "get", "OPTIONS"])
def test_only_get_is_stored(method: str) -> None:
    assert refused(decide([FRESH], method=method)) == "method"


def test_incomplete_response_is_not_stored() -> None:
    assert refused(decide([FRESH], complete=False)) == "incomplete"


def test_range_request_and_partial_content_pass_through() -> None:
    assert refused(decide([FRESH], [("Range", "bytes=0-1")])) == "range"
    assert refused(decide([FRESH, ("Content-Range", "bytes 0-1/10")], status=206)) == "status"


@pytest.mark.parametrize("status", [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501])
def test_heuristically_cacheable_statuses_need_no_explicit_freshness(status: int) -> None:
    assert decide([], status=status).store


@pytest.mark.parametrize("status", [302, 303, 307, 451])
def test_explicit_only_statuses(status: int) -> None:
    assert refused(decide([], status=status)) == "status"
    assert decide([FRESH], status=status).store


@pytest.mark.parametrize("status", [100, 206, 304, 600])
def test_non_final_partial_and_304_are_never_stored(status: int) -> None:
    assert refused(decide([FRESH, ("Cache-Control", "public")], status=status)) == "status"


@pytest.mark.parametrize("status", [201, 400, 403, 500, 502, 503, 599])
def test_other_final_statuses_only_with_explicit_freshness(status: int) -> None:
    # RFC 9111 3 (any final status the cache understands), as nginx stores them.
    assert decide([FRESH], status=status).store
    assert refused(decide([], status=status)) == "status"
    assert refused(decide([("Cache-Control", "public")], status=status)) == "status"


def test_must_understand_limits_storing_to_known_statuses() -> None:
    mu = ("Cache-Control", "max-age=60, must-understand, no-store")
    assert decide([mu], status=200).store
    assert refused(decide([mu], status=500)) == "status"


class TestNoStoreAndPrivate:
    def test_response_no_store(self) -> None:
        assert refused(decide([("Cache-Control", "max-age=60, no-store")])) == "no-store"

    def test_request_no_store(self) -> None:
        assert refused(decide([FRESH], [("Cache-Control", "no-store")])) == "no-store"

    def test_directive_names_are_case_insensitive(self) -> None:
        assert refused(decide([("Cache-Control", "Max-Age=60, NO-STORE")])) == "no-store"

    def test_must_understand_overrides_no_store_for_understood_status(self) -> None:
        # 5.2.2.3
        decision = decide([("Cache-Control", "max-age=60, no-store, must-understand")])
        assert decision.store

    def test_unqualified_private_is_not_stored_by_a_shared_cache(self) -> None:
        assert refused(decide([("Cache-Control", "private, max-age=60")])) == "private"

    def test_qualified_private_is_stored_without_the_named_fields(self) -> None:
        headers = [
            ("Cache-Control", 'max-age=60, private="X-User, set-cookie"'),
            ("X-User", "alice"),
            ("Set-Cookie", "sid=1"),
            ("Content-Type", "text/plain"),
        ]
        assert decide(headers).store
        kept = storable_headers(headers)
        assert [k for k, _ in kept] == ["Cache-Control", "Content-Type"]

    def test_private_with_empty_list_counts_as_unqualified(self) -> None:
        assert refused(decide([("Cache-Control", 'max-age=60, private=""')])) == "private"


class TestAuthorization:
    AUTH = (("Authorization", "Bearer x"),)

    def test_not_stored_without_an_explicit_permission(self) -> None:
        assert refused(decide([FRESH], self.AUTH)) == "authorization"

    @pytest.mark.parametrize(
        "cc", ["public", "public, max-age=60", "s-maxage=60", "must-revalidate, max-age=60"]
    )
    def test_public_s_maxage_or_must_revalidate_allow_it(self, cc: str) -> None:
        # RFC 9111 3.5
        assert decide([("Cache-Control", cc)], self.AUTH).store

    def test_proxy_revalidate_alone_does_not(self) -> None:
        decision = decide([("Cache-Control", "proxy-revalidate, max-age=60")], self.AUTH)
        assert refused(decision) == "authorization"


class TestCookies:
    def test_request_cookie_is_not_stored_by_default(self) -> None:
        assert refused(decide([FRESH], [("Cookie", "a=1")])) == "cookie"

    def test_request_cookie_stored_when_configured(self) -> None:
        config = CacheConfig(cache_cookie_requests=True)
        assert decide([FRESH], [("Cookie", "a=1")], config=config).store

    def test_set_cookie_is_not_stored_by_default(self) -> None:
        assert refused(decide([FRESH, ("Set-Cookie", "a=1")])) == "set-cookie"

    def test_set_cookie_stored_when_configured(self) -> None:
        config = CacheConfig(cache_set_cookie=True)
        assert decide([FRESH, ("Set-Cookie", "a=1")], config=config).store

    def test_set_cookie_named_in_no_cache_is_safe_to_store(self) -> None:
        decision = decide(
            [("Cache-Control", 'max-age=60, no-cache="Set-Cookie"'), ("Set-Cookie", "a")]
        )
        assert decision.meta is not None
        assert decision.meta.no_cache_fields == ("set-cookie",)


class TestVary:
    def test_vary_star_is_not_stored(self) -> None:
        assert refused(decide([FRESH, ("Vary", "Accept, *")])) == "vary-star"

    def test_vary_names_are_lowercased_deduplicated_and_sorted(self) -> None:
        decision = decide([FRESH, ("Vary", "Accept-Encoding, accept"), ("vary", "ACCEPT")])
        assert decision.meta is not None
        assert decision.meta.vary == ("accept", "accept-encoding")


class TestUselessResponses:
    def test_zero_lifetime_without_validator(self) -> None:
        assert refused(decide([("Cache-Control", "max-age=0")])) == "zero-ttl"

    def test_zero_lifetime_with_validator_is_stored_for_revalidation(self) -> None:
        decision = decide([("Cache-Control", "max-age=0"), ("ETag", '"e"')])
        assert decision.meta is not None and decision.meta.freshness_lifetime == 0

    def test_zero_lifetime_with_stale_if_error_is_stored(self) -> None:
        assert decide([("Cache-Control", "max-age=0, stale-if-error=60")]).store

    def test_default_ttl_zero_stores_only_revalidatable_responses(self) -> None:
        config = CacheConfig(default_ttl=0)
        assert refused(decide([], config=config)) == "zero-ttl"
        decision = decide([("ETag", '"e"')], config=config)
        assert decision.meta is not None and decision.meta.freshness_lifetime == 0

    def test_no_cache_without_validator(self) -> None:
        assert refused(decide([("Cache-Control", "no-cache, max-age=60")])) == "no-cache"

    def test_no_cache_with_validator(self) -> None:
        decision = decide(
            [("Cache-Control", "no-cache"), ("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT")]
        )
        assert decision.meta is not None and decision.meta.no_cache


class TestMetaFlags:
    def test_must_revalidate_from_any_of_three_directives(self) -> None:
        for cc in ("must-revalidate", "proxy-revalidate", "s-maxage=10"):
            meta = decide([("Cache-Control", f"max-age=60, {cc}")]).meta
            assert meta is not None and meta.must_revalidate, cc
        meta = decide([FRESH]).meta
        assert meta is not None and not meta.must_revalidate

    def test_extension_directives(self) -> None:
        meta = decide(
            [
                (
                    "Cache-Control",
                    "max-age=60, immutable, stale-while-revalidate=30, stale-if-error=600",
                )
            ]
        ).meta
        assert meta is not None
        assert (meta.immutable, meta.stale_while_revalidate, meta.stale_if_error) == (True, 30, 600)


class TestStorableHeaders:
    def test_hop_by_hop_and_connection_named_fields_are_dropped(self) -> None:
        headers = [
            ("Connection", "close, X-Hop"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("Transfer-Encoding", "chunked"),
            ("TE", "trailers"),
            ("Trailer", "X-Checksum"),
            ("Upgrade", "h2c"),
            ("Proxy-Authenticate", "Basic"),
            ("Proxy-Authentication-Info", "x"),
            ("X-Hop", "1"),
            ("Content-Type", "text/html"),
        ]
        assert storable_headers(headers) == [("Content-Type", "text/html")]

    def test_order_and_repeated_fields_are_kept(self) -> None:
        headers = [
            ("Set-Cookie", "a=1"),
            ("Link", "</a>; rel=preload"),
            ("Set-Cookie", "b=2"),
            ("Link", "</b>; rel=preload"),
        ]
        assert storable_headers(headers) == headers

    def test_private_fields_from_the_targeted_field_are_dropped_too(self) -> None:
        headers = [("CDN-Cache-Control", 'max-age=60, private="x-a"'), ("X-A", "1"), ("X-B", "2")]
        assert storable_headers(headers) == [headers[0], ("X-B", "2")]
