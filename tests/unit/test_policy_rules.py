"""Config-file rules: which applies, the key they give, how they change storing."""

from __future__ import annotations

from caching_proxy.policy import CacheConfig, Rule, decide_store, find_rule, key_target, rule_config

RULES = (Rule("/api/*", ttl=60), Rule("/api/x", never_cache=True), Rule("/*.css", ttl=3600))


def test_first_matching_glob_wins_and_the_query_is_not_matched() -> None:
    assert find_rule(RULES, "/api/x") == RULES[0]  # first match, as listed
    assert find_rule(RULES, "/api/v1/users?id=3") == RULES[0]  # * spans slashes
    assert find_rule(RULES, "/static/site.css?v=2") == RULES[2]
    assert find_rule(RULES, "/apix") is None
    assert find_rule(RULES, "/other?x=/api/1") is None


def test_ignored_parameters_leave_the_key_and_nothing_else_changes() -> None:
    rule = Rule("/*", ignore_query=("utm_*", "fbclid"))
    assert key_target("/a?utm_source=x&id=1&fbclid=2", rule) == "/a?id=1"
    assert key_target("/a?utm_source=x", rule) == "/a"
    assert key_target("/a?id=1&b=%2F", rule) == "/a?id=1&b=%2F"  # untouched: no re-encoding
    assert key_target("/a", rule) == "/a"
    assert key_target("/a?utm_source=x", Rule("/*")) == "/a?utm_source=x"


def test_ttl_override_replaces_the_origins_lifetime_but_not_its_prohibitions() -> None:
    config = rule_config(CacheConfig(), Rule("/*", ttl=60))
    decision = decide_store("GET", 200, [], [("Cache-Control", "max-age=5")], 0, 0, config)
    assert decision.meta is not None and decision.meta.freshness_lifetime == 60
    assert not decision.meta.heuristic
    for forbidden in ("no-store", "private"):
        assert not decide_store("GET", 200, [], [("Cache-Control", forbidden)], 0, 0, config).store
    # A status that may not be stored without explicit freshness stays out.
    assert not decide_store("GET", 302, [], [], 0, 0, config).store


def test_rule_default_ttl_only_for_responses_without_explicit_freshness() -> None:
    config = rule_config(CacheConfig(default_ttl=300), Rule("/*", default_ttl=7))
    implicit = decide_store("GET", 200, [], [], 0, 0, config)
    explicit = decide_store("GET", 200, [], [("Cache-Control", "max-age=50")], 0, 0, config)
    assert implicit.meta is not None and implicit.meta.freshness_lifetime == 7
    assert explicit.meta is not None and explicit.meta.freshness_lifetime == 50


def test_key_headers_select_variants_as_if_named_in_vary() -> None:
    config = rule_config(CacheConfig(), Rule("/*", key_headers=("accept-language",)))
    decision = decide_store("GET", 200, [("Accept-Language", "fr")],
                            [("Cache-Control", "max-age=5"), ("Vary", "Accept")], 0, 0, config)
    assert decision.meta is not None and decision.meta.vary == ("accept", "accept-language")
    plain = decide_store("GET", 200, [], [("Cache-Control", "max-age=5")], 0, 0, CacheConfig())
    assert plain.meta is not None and plain.meta.vary == ()
