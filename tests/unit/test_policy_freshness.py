"""Freshness lifetime (RFC 9111 4.2.1, 4.2.2) and age (4.2.3)."""

from __future__ import annotations

import pytest

from caching_proxy.policy import (
    NO_DIRECTIVES,
    Action,
    CacheConfig,
    Headers,
    StoredMeta,
    decide_store,
    evaluate,
    format_http_date,
)

T = 1_700_000_000.0
CONFIG = CacheConfig()


def meta_for(
    headers: Headers,
    *,
    status: int = 200,
    request_time: float = T,
    response_time: float = T,
    config: CacheConfig = CONFIG,
) -> StoredMeta:
    decision = decide_store("GET", status, [], headers, request_time, response_time, config)
    assert decision.meta is not None, decision.reason
    return decision.meta


def date(t: float) -> tuple[str, str]:
    return ("Date", format_http_date(t))


class TestAge:
    def test_rfc9111_4_2_3_arithmetic(self) -> None:
        # Request sent at T, response at T+2 carrying Date: T-5 and Age: 10.
        # apparent_age = max(0, (T+2) - (T-5)) = 7; response_delay = 2;
        # corrected_age_value = 10 + 2 = 12; corrected_initial_age = max(7, 12) = 12.
        meta = meta_for(
            [date(T - 5), ("Age", "10"), ("Cache-Control", "max-age=100")],
            request_time=T,
            response_time=T + 2,
        )
        assert meta.corrected_initial_age == 12
        # current_age = 12 + resident_time (now - response_time = 30) = 42.
        lookup = evaluate(NO_DIRECTIVES, meta, T + 32)
        assert lookup.age == 42
        assert lookup.ttl == 100 - 42

    def test_apparent_age_wins_when_larger(self) -> None:
        meta = meta_for([date(T - 50), ("Age", "3"), ("Cache-Control", "max-age=100")])
        assert meta.corrected_initial_age == 50

    def test_date_in_the_future_gives_no_negative_age(self) -> None:
        meta = meta_for([date(T + 500), ("Cache-Control", "max-age=100")])
        assert meta.corrected_initial_age == 0
        assert evaluate(NO_DIRECTIVES, meta, T).age == 0

    def test_missing_date_counts_as_response_time(self) -> None:
        meta = meta_for([("Cache-Control", "max-age=100")], response_time=T + 1, request_time=T)
        assert meta.corrected_initial_age == 1  # only the response delay

    def test_a_date_of_this_very_second_is_no_age(self) -> None:
        # Date is whole seconds: received 0.95 s into the second it names, the response is not
        # 0.95 s old (a rule's `ttl = 1` made it stale on the next request, in CI).
        meta = meta_for([date(T), ("Cache-Control", "max-age=1")],
                        request_time=T + 0.94, response_time=T + 0.95)
        assert meta.corrected_initial_age == pytest.approx(0.01)
        assert evaluate(NO_DIRECTIVES, meta, T + 1.05).action is Action.HIT
        # A whole second later the Date does count.
        assert meta_for([date(T)], request_time=T + 2.4,
                        response_time=T + 2.5).corrected_initial_age == 2

    @pytest.mark.parametrize("age", ["abc", "-7200", "7200.0", "7200;foo=bar", "", '"7200"'])
    def test_invalid_age_is_ignored(self, age: str) -> None:
        # RFC 9111 5.1: an Age that is not a non-negative integer SHOULD be ignored, so the
        # response is as fresh as without it (HTTP cache tests age-parse-nonnumeric & co.).
        meta = meta_for([date(T), ("Age", age), ("Cache-Control", "max-age=3600")])
        assert meta.corrected_initial_age == 0
        lookup = evaluate(NO_DIRECTIVES, meta, T + 10)
        assert lookup.action is Action.HIT
        assert lookup.age == 10

    def test_invalid_age_still_leaves_date_and_delay(self) -> None:
        # Ignoring the field is not ignoring the age: apparent age and response delay remain.
        meta = meta_for(
            [date(T - 30), ("Age", "abc"), ("Cache-Control", "max-age=3600")],
            request_time=T - 1,
            response_time=T,
        )
        assert meta.corrected_initial_age == 30

    @pytest.mark.parametrize(
        ("ages", "expected", "hit"),
        [
            # RFC 9111 5.1: a list-based Age counts by its first member, the rest is discarded.
            ([("Age", "0, 7200")], 0, True),
            ([("Age", "0,7200")], 0, True),
            ([("Age", "7200, 0")], 7200, False),
            ([("Age", "0, 0")], 0, True),
            # RFC 9110 5.3: several lines are one list, so the first line's value counts.
            ([("Age", "0"), ("Age", "7200")], 0, True),
            ([("Age", "7200"), ("Age", "0")], 7200, False),
            ([("Age", "60"), ("Age", "60")], 60, True),
        ],
    )
    def test_list_age_uses_the_first_member(
        self, ages: list[tuple[str, str]], expected: int, hit: bool
    ) -> None:
        meta = meta_for([date(T), *ages, ("Cache-Control", "max-age=3600")])
        assert meta.corrected_initial_age == expected
        assert (evaluate(NO_DIRECTIVES, meta, T).action is Action.HIT) is hit

    def test_invalid_first_member_ignores_the_field(self) -> None:
        # 5.1: "after discarding additional members", the remaining value is what is checked.
        meta = meta_for([date(T), ("Age", "abc, 7200"), ("Cache-Control", "max-age=3600")])
        assert meta.corrected_initial_age == 0

    @pytest.mark.parametrize("age", ["2147483647", "2147483648", "99999999999999999999"])
    def test_huge_age_is_stale(self, age: str) -> None:
        # RFC 9111 1.2.2: delta-seconds past 2^31 are taken as 2^31; either way, far too old.
        meta = meta_for([date(T), ("Age", age), ("Cache-Control", "max-age=3600")])
        assert meta.corrected_initial_age == min(int(age), 2**31)
        assert evaluate(NO_DIRECTIVES, meta, T).action is not Action.HIT

    def test_age_is_integer_and_clock_going_backwards_is_not_negative(self) -> None:
        meta = meta_for([date(T), ("Cache-Control", "max-age=100")])
        assert evaluate(NO_DIRECTIVES, meta, T + 9.9).age == 9
        assert evaluate(NO_DIRECTIVES, meta, T - 100).age == 0

    def test_fresh_until_lifetime_exceeds_age(self) -> None:
        # 4.2: fresh iff freshness_lifetime > current_age.
        meta = meta_for([date(T), ("Cache-Control", "max-age=10"), ("ETag", '"x"')])
        assert evaluate(NO_DIRECTIVES, meta, T + 9.99).action is Action.HIT
        at_limit = evaluate(NO_DIRECTIVES, meta, T + 10)
        assert at_limit.stale
        assert at_limit.action is Action.REVALIDATE


class TestExplicitLifetime:
    def test_s_maxage_beats_max_age_beats_expires(self) -> None:
        expires = ("Expires", format_http_date(T + 1000))
        both = meta_for([date(T), ("Cache-Control", "max-age=60, s-maxage=120"), expires])
        assert both.freshness_lifetime == 120
        assert (
            meta_for([date(T), ("Cache-Control", "max-age=60"), expires]).freshness_lifetime == 60
        )
        assert meta_for([date(T), expires]).freshness_lifetime == 1000
        assert not both.heuristic

    def test_expires_minus_date_not_minus_now(self) -> None:
        # Origin clock 100 s behind ours: lifetime is still Expires - Date.
        meta = meta_for([date(T - 100), ("Expires", format_http_date(T - 40))], response_time=T)
        assert meta.freshness_lifetime == 60

    def test_expires_without_date_uses_response_time(self) -> None:
        meta = meta_for([("Expires", format_http_date(T + 30))], response_time=T)
        assert meta.freshness_lifetime == 30

    @pytest.mark.parametrize("expires", ["0", "-1", "yesterday", ""])
    def test_invalid_expires_is_already_stale(self, expires: str) -> None:
        # RFC 9111 5.3: invalid dates, especially "0", are in the past.
        meta = meta_for([date(T), ("Expires", expires), ("ETag", '"v"')])
        assert meta.freshness_lifetime == 0
        assert not meta.heuristic

    @pytest.mark.parametrize(
        "expires",
        [
            "Thu, 18  Aug  2050 02:01:18 GMT",  # doubled spaces
            "Thu 18 Aug 2050 02:01:18 GMT",  # no comma
            "Thu, 18 Aug 50 02:01:18 GMT",  # two-digit year in IMF-fixdate
            "Thu, 18-Aug-2050 02:01:18 GMT",  # dashes with a four-digit year
            "Thu, 18 Aug 2050 02.01.18 GMT",  # periods in the time
            "Thu, 18 Aug 2050 2:01:18 GMT",  # one-digit hour
            "Thu, 18 Aug 2050 02:01:18 UTC",  # not GMT
            "Thu, 18 Aug 2050 02:01:18 AEST",
        ],
    )
    def test_expires_outside_the_rfc9110_grammar_is_already_stale(self, expires: str) -> None:
        # RFC 9110 5.6.7 (only its three formats are HTTP-dates) and RFC 9111 5.3 (an invalid
        # Expires is a time in the past): HTTP cache tests freshness-expires-invalid-*.
        meta = meta_for([date(T), ("Expires", expires), ("ETag", '"v"')])
        assert meta.freshness_lifetime == 0
        assert evaluate(NO_DIRECTIVES, meta, T).action is Action.REVALIDATE

    @pytest.mark.parametrize(
        "expires",
        [
            "Thu, 18 Aug 2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 02:01:18 gmt",  # letter case: the leniency kept
            "THU, 18 AUG 2050 02:01:18 gMT",
            "Thursday, 18-Aug-50 02:01:18 GMT",  # obsolete RFC 850 format
            "Thu Aug 18 02:01:18 2050",  # asctime
        ],
    )
    def test_expires_in_an_rfc9110_format_gives_freshness(self, expires: str) -> None:
        meta = meta_for([date(T), ("Expires", expires)])
        assert meta.freshness_lifetime == 2544400878 - T
        assert evaluate(NO_DIRECTIVES, meta, T).action is Action.HIT

    def test_first_of_several_expires_is_used(self) -> None:
        meta = meta_for(
            [
                date(T),
                ("Expires", format_http_date(T + 10)),
                ("Expires", format_http_date(T + 999)),
            ]
        )
        assert meta.freshness_lifetime == 10

    def test_expires_in_the_past_is_zero(self) -> None:
        meta = meta_for([date(T), ("Expires", format_http_date(T - 10)), ("ETag", '"v"')])
        assert meta.freshness_lifetime == 0

    def test_first_max_age_is_used(self) -> None:
        meta = meta_for([("Cache-Control", "max-age=60"), ("Cache-Control", "max-age=3600")])
        assert meta.freshness_lifetime == 60

    @pytest.mark.parametrize("value", ["abc", "-1", "1.5", '""', ""])
    def test_invalid_max_age_means_stale(self, value: str) -> None:
        # 4.2.1: caches are encouraged to treat invalid freshness information as stale.
        meta = meta_for([("Cache-Control", f"max-age={value}"), ("ETag", '"v"')])
        assert meta.freshness_lifetime == 0
        assert not meta.heuristic

    def test_quoted_max_age_is_accepted(self) -> None:
        assert meta_for([("Cache-Control", 'max-age="60"')]).freshness_lifetime == 60

    def test_huge_max_age_is_clamped(self) -> None:
        meta = meta_for([("Cache-Control", "max-age=99999999999999999999")])
        assert meta.freshness_lifetime == 2**31


class TestHeuristic:
    def test_ten_percent_of_time_since_last_modified(self) -> None:
        meta = meta_for([date(T), ("Last-Modified", format_http_date(T - 5 * 3600))])
        assert meta.freshness_lifetime == pytest.approx(1800)
        assert meta.heuristic

    def test_capped_at_heuristic_max(self) -> None:
        meta = meta_for([date(T), ("Last-Modified", format_http_date(T - 365 * 86400))])
        assert meta.freshness_lifetime == 86400

    def test_fraction_and_cap_are_configurable(self) -> None:
        config = CacheConfig(heuristic_fraction=0.5, heuristic_max=100)
        headers = [date(T), ("Last-Modified", format_http_date(T - 150))]
        assert meta_for(headers, config=config).freshness_lifetime == 75
        headers = [date(T), ("Last-Modified", format_http_date(T - 1000))]
        assert meta_for(headers, config=config).freshness_lifetime == 100

    def test_last_modified_after_date_gives_zero(self) -> None:
        meta = meta_for([date(T), ("Last-Modified", format_http_date(T + 60))])
        assert meta.freshness_lifetime == 0

    def test_default_ttl_without_last_modified(self) -> None:
        meta = meta_for([date(T)], config=CacheConfig(default_ttl=42))
        assert meta.freshness_lifetime == 42
        assert meta.heuristic

    def test_invalid_last_modified_falls_back_to_default_ttl(self) -> None:
        meta = meta_for([date(T), ("Last-Modified", "garbage")], config=CacheConfig(default_ttl=7))
        assert meta.freshness_lifetime == 7

    def test_no_heuristic_for_explicit_only_status(self) -> None:
        decision = decide_store("GET", 302, [], [date(T)], T, T, CONFIG)
        assert (decision.store, decision.reason) == (False, "status")

    def test_public_allows_heuristic_for_explicit_only_status(self) -> None:
        meta = meta_for([date(T), ("Cache-Control", "public")], status=302)
        assert meta.heuristic
        assert meta.freshness_lifetime == CONFIG.default_ttl
