"""Config-file rule overrides as pure policy: lifetimes by status, ignored response fields, the
bypass header and cookie, and what Cache-Status says was overridden."""

from __future__ import annotations

import pytest

from caching_proxy.policy import (
    CacheConfig,
    Headers,
    Rule,
    StoreDecision,
    cache_status,
    decide_store,
    override_detail,
    parse_statuses,
    rule_bypass,
    rule_config,
    storable_headers,
    stripped_fields,
)

T = 1_700_000_000.0


def decide(rule: Rule, status: int, response: Headers, request: Headers = (),
           base: CacheConfig | None = None) -> StoreDecision:
    config = rule_config(base or CacheConfig(), rule)
    return decide_store("GET", status, request, response, T, T, config)


def lifetime(decision: StoreDecision) -> float:
    assert decision.store and decision.meta is not None, decision.reason
    return decision.meta.freshness_lifetime


# -- status = [...] with ttl ----------------------------------------------------------------------

def test_statuses_and_classes_expand_without_206_and_304() -> None:
    assert parse_statuses([404, 410]) == {404, 410}
    classes = parse_statuses(["2xx", "3xx"])
    assert 200 in classes and 399 in classes and 206 not in classes and 304 not in classes
    assert parse_statuses(["5XX", 404]) == set(range(500, 600)) | {404}
    for bad in (206, 304, 199, 600, "6xx", "404", True, 4.0):
        with pytest.raises(ValueError):
            parse_statuses([bad])


def test_a_listed_status_without_freshness_gets_the_rule_ttl() -> None:
    rule = Rule("/err*", ttl=30, status=parse_statuses([500]))
    assert lifetime(decide(rule, 500, [])) == 30
    # Without the rule a 500 that states no freshness is never stored (not heuristically
    # cacheable), nor is one of a status the rule does not list.
    assert decide_store("GET", 500, [], [], T, T, CacheConfig()).reason == "status"
    assert decide(rule, 503, []).reason == "status"
    meta = decide(rule, 500, []).meta
    assert meta is not None and not meta.heuristic


def test_the_origins_own_freshness_wins_over_a_status_ttl() -> None:
    rule = Rule("/*", ttl=30, status=parse_statuses(["4xx"]))
    assert lifetime(decide(rule, 404, [("Cache-Control", "max-age=5")])) == 5
    assert lifetime(decide(rule, 404, [])) == 30
    # A status rule's ttl replaces nothing for other statuses: a 200 keeps its own lifetime,
    # and one without freshness gets the rule's default_ttl (or the global one).
    assert lifetime(decide(rule, 200, [("Cache-Control", "max-age=5")])) == 5
    assert lifetime(decide(rule, 200, [], base=CacheConfig(default_ttl=300))) == 300
    with_default = Rule("/*", ttl=30, default_ttl=7, status=parse_statuses(["4xx"]))
    assert lifetime(decide(with_default, 200, [])) == 7
    assert lifetime(decide(with_default, 410, [])) == 30


def test_a_status_rule_stores_nothing_the_origin_forbids() -> None:
    rule = Rule("/*", ttl=30, status=parse_statuses(["5xx"]))
    assert decide(rule, 500, [("Cache-Control", "no-store")]).reason == "no-store"
    assert decide(rule, 502, [("Cache-Control", "private")]).reason == "private"
    assert decide(rule, 500, [("Set-Cookie", "a=b")]).reason == "set-cookie"


# -- ignore = [...] -----------------------------------------------------------------------------

def test_ignored_cache_control_with_a_forced_ttl_stores_no_store() -> None:
    rule = Rule("/forced*", ttl=60, ignore=frozenset({"cache-control"}))
    for forbidding in ("no-store", "private", "no-cache", "max-age=0, must-revalidate"):
        decision = decide(rule, 200, [("Cache-Control", forbidding)])
        assert lifetime(decision) == 60
        assert decision.meta is not None
        assert not decision.meta.no_cache and not decision.meta.must_revalidate
    # The targeted field is this cache's Cache-Control: ignored with it.
    assert lifetime(decide(rule, 200, [("CDN-Cache-Control", "no-store")])) == 60
    # Still never: what the request forbids.
    assert decide(rule, 200, [], [("Cache-Control", "no-store")]).reason == "no-store"


def test_without_ignore_the_same_rule_keeps_the_prohibition() -> None:
    assert decide(Rule("/*", ttl=60), 200, [("Cache-Control", "no-store")]).reason == "no-store"


def test_ignored_cache_control_without_ttl_falls_back_to_expires_then_default_ttl() -> None:
    rule = Rule("/*", ignore=frozenset({"cache-control"}))
    expires = [("Cache-Control", "max-age=900"), ("Date", "Tue, 14 Nov 2023 22:13:20 GMT"),
               ("Expires", "Tue, 14 Nov 2023 22:14:20 GMT")]
    assert lifetime(decide(rule, 200, expires)) == 60
    assert lifetime(decide(rule, 200, [("Cache-Control", "max-age=900")],
                           base=CacheConfig(default_ttl=11))) == 11


def test_ignored_expires_leaves_cache_control_in_charge() -> None:
    rule = Rule("/*", default_ttl=9, ignore=frozenset({"expires"}))
    assert lifetime(decide(rule, 200, [("Expires", "0")])) == 9  # an invalid Expires: stale
    assert lifetime(decide(rule, 200, [("Expires", "0"), ("Cache-Control", "max-age=4")])) == 4
    assert decide(rule, 200, [("Cache-Control", "no-store")]).reason == "no-store"


def test_ignored_set_cookie_is_stored_without_the_cookie() -> None:
    rule = Rule("/*", ignore=frozenset({"set-cookie"}))
    headers = [("Cache-Control", "max-age=60"), ("Set-Cookie", "session=secret"), ("X-A", "1")]
    assert lifetime(decide(rule, 200, headers)) == 60
    config = rule_config(CacheConfig(), rule)
    assert stripped_fields(config) == {"set-cookie"}
    assert storable_headers(headers, config.targeted_fields, stripped_fields(config)) == [
        ("Cache-Control", "max-age=60"), ("X-A", "1")]
    assert stripped_fields(rule_config(CacheConfig(), Rule("/*"))) == set()


def test_ignored_vary_keys_by_url_but_keeps_accept_encoding() -> None:
    rule = Rule("/*", ignore=frozenset({"vary"}))
    fresh = ("Cache-Control", "max-age=60")
    star = decide(rule, 200, [fresh, ("Vary", "*")])
    assert star.meta is not None and star.meta.vary == ()
    mixed = decide(rule, 200, [fresh, ("Vary", "User-Agent, Accept-Encoding")])
    assert mixed.meta is not None and mixed.meta.vary == ("accept-encoding",)
    keyed = decide(Rule("/*", ignore=frozenset({"vary"}), key_headers=("accept-language",)),
                   200, [fresh, ("Vary", "Cookie")])
    assert keyed.meta is not None and keyed.meta.vary == ("accept-language",)


def test_status_and_ignore_together_force_a_lifetime_for_those_statuses() -> None:
    rule = Rule("/*", ttl=20, status=parse_statuses([404]), ignore=frozenset({"cache-control"}))
    assert lifetime(decide(rule, 404, [("Cache-Control", "no-store, max-age=900")])) == 20
    assert lifetime(decide(rule, 200, [("Cache-Control", "no-store")],
                           base=CacheConfig(default_ttl=5))) == 5


def test_cache_status_detail_names_what_was_overridden() -> None:
    config = rule_config(CacheConfig(), Rule("/*", ttl=60, ignore=frozenset(
        {"set-cookie", "cache-control", "vary"})))
    detail = override_detail([("Cache-Control", "no-store"), ("Set-Cookie", "a=b"),
                              ("Vary", "Accept-Encoding")], config)
    assert detail == "ignored:cache-control+set-cookie"
    assert cache_status("caching-proxy", hit=True, ttl=60, detail=detail) == (
        "caching-proxy; hit; ttl=60; detail=ignored:cache-control+set-cookie")  # an sf-token
    assert override_detail([("ETag", '"x"')], config) is None  # nothing there to override
    assert override_detail([("Cache-Control", "no-store")],
                           rule_config(CacheConfig(), Rule("/*"))) is None


# -- bypass_header / bypass_cookie ----------------------------------------------------------------

def test_bypass_header_and_cookie_as_nginx_reads_them() -> None:
    rule = Rule("/*", bypass_header="x-no-cache", bypass_cookie="nocache")
    assert rule_bypass(rule, [("X-No-Cache", "1")]) == "bypass-header"
    assert rule_bypass(rule, [("x-no-cache", "yes")]) == "bypass-header"
    assert rule_bypass(rule, [("X-No-Cache", "0")]) is None
    assert rule_bypass(rule, [("X-No-Cache", "")]) is None
    assert rule_bypass(rule, [("Cookie", "a=1; nocache=1")]) == "bypass-cookie"
    assert rule_bypass(rule, [("Cookie", "nocache=0; a=1")]) is None
    assert rule_bypass(rule, [("Cookie", "NoCache=1; xnocache=1")]) is None  # names are exact
    assert rule_bypass(rule, [("Cookie", "a=1"), ("Cookie", "nocache=true")]) == "bypass-cookie"
    assert rule_bypass(Rule("/*"), [("X-No-Cache", "1"), ("Cookie", "nocache=1")]) is None


def test_min_uses_reaches_the_storing_config() -> None:
    assert rule_config(CacheConfig(), Rule("/*", min_uses=3)).min_uses == 3
    assert rule_config(CacheConfig(), Rule("/*")).min_uses == 1
