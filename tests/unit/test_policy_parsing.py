"""Parsing edge cases: list splitting, HTTP-dates, delta-seconds, RFC 8941 dictionaries."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from caching_proxy.policy import (
    CacheConfig,
    decide_store,
    field_values,
    format_http_date,
    parse_http_date,
    parse_request_directives,
    response_directives,
    vary_key,
)
from caching_proxy.policy.fields import DELTA_SECONDS_MAX, parse_delta_seconds, split_list, unquote
from caching_proxy.policy.structured import (
    SFError,
    Token,
    is_token,
    parse_dictionary,
    serialize_string,
)

RFC_DATE = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT, the RFC 9110 5.6.7 example


class TestSplitList:
    def test_trims_whitespace_around_commas(self) -> None:
        assert split_list(" a ,b,\tc ") == ["a", "b", "c"]

    def test_commas_inside_quoted_strings_do_not_split(self) -> None:
        assert split_list('no-cache="a, b", max-age=5') == ['no-cache="a, b"', "max-age=5"]

    def test_escaped_quote_does_not_end_the_string(self) -> None:
        assert split_list(r'x="a\", b", y') == [r'x="a\", b"', "y"]

    def test_empty_elements_are_dropped(self) -> None:
        # RFC 9110 5.6.1: recipients ignore empty list elements.
        assert split_list("a,, b, ,") == ["a", "b"]
        assert split_list("") == []

    def test_unterminated_quote_swallows_the_rest(self) -> None:
        assert split_list('a="b, c') == ['a="b, c']


def test_field_values_is_case_insensitive_and_combines_lines_in_order() -> None:
    headers = [("Vary", "Accept"), ("X", "1"), ("vary", "Accept-Encoding, Cookie")]
    assert field_values(headers, "VARY") == ["Accept", "Accept-Encoding", "Cookie"]
    assert field_values(headers, "missing") == []


def test_unquote() -> None:
    assert unquote('"a\\"b"') == 'a"b'
    assert unquote("plain") == "plain"
    assert unquote('"') == '"'


class TestHttpDate:
    @pytest.mark.parametrize(
        "value",
        [
            "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
            "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850 format
            "Sun Nov  6 08:49:37 1994",  # ANSI C asctime() format
            "  sun, 06 nov 1994 08:49:37 GMT ",  # lenient on case and surrounding space
        ],
    )
    def test_the_three_formats_of_rfc9110_5_6_7(self, value: str) -> None:
        assert parse_http_date(value) == RFC_DATE

    @pytest.mark.parametrize(
        "value",
        [
            None,
            "",
            "0",
            "-1",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49:37 +0000",
            "1994-11-06T08:49:37Z",
        ],
    )
    def test_invalid_dates_are_none(self, value: str | None) -> None:
        assert parse_http_date(value) is None

    @pytest.mark.parametrize(
        "value",
        [
            "Sun,  06 Nov 1994 08:49:37 GMT",  # RFC 9110 5.6.7: exactly one SP each
            "Sun, 06  Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994  08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37  GMT",
            "Sun,06 Nov 1994 08:49:37 GMT",
            "Sun 06 Nov 1994 08:49:37 GMT",  # the comma is part of IMF-fixdate
            "Sun, 6 Nov 1994 08:49:37 GMT",  # day = 2DIGIT
            "Sun, 06 Nov 94 08:49:37 GMT",  # year = 4DIGIT
            "Sun, 06 Nov 1994 8:49:37 GMT",  # hour = 2DIGIT
            "Sun, 06 Nov 1994 08.49.37 GMT",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06-Nov-1994 08:49:37 GMT",  # rfc850-date has a two-digit year ...
            "Sun, 06-Nov-94 08:49:37 GMT",  # ... and the long day name
            "Sunday, 06-Nov-94  08:49:37 GMT",
            "Sun Nov 6 08:49:37 1994",  # asctime: ( 2DIGIT / ( SP DIGIT ) )
            "Sun  Nov  6 08:49:37 1994",
            "Sun Nov  6 08:49:37 1994 GMT",
            "Foo, 06 Nov 1994 08:49:37 GMT",  # day-name is one of seven
            "Fooday, 06-Nov-94 08:49:37 GMT",
            "Sun, 01 Jan 0000 00:00:00 GMT",  # fits the grammar, not the calendar
        ],
    )
    def test_anything_outside_the_rfc9110_grammar_is_invalid(self, value: str) -> None:
        assert parse_http_date(value) is None

    @pytest.mark.parametrize(
        "value",
        [
            "Sun, 06 Nov 1994 08:49:37 gmt",
            "SUN, 06 NOV 1994 08:49:37 GMT",
            "SUNDAY, 06-nov-94 08:49:37 gMT",
            "sun nov  6 08:49:37 1994",
            "Sun Nov 06 08:49:37 1994",  # asctime's day may be 2DIGIT with a leading zero
        ],
    )
    def test_letter_case_is_the_one_leniency(self, value: str) -> None:
        assert parse_http_date(value) == RFC_DATE

    def test_leap_second_is_accepted(self) -> None:
        assert parse_http_date("Sat, 31 Dec 2016 23:59:60 GMT") == parse_http_date(
            "Sun, 01 Jan 2017 00:00:00 GMT"
        )

    def test_two_digit_years(self) -> None:
        assert parse_http_date("Thursday, 01-Jan-70 00:00:00 GMT") == 0.0
        assert parse_http_date("Friday, 01-Jan-30 00:00:00 GMT") == parse_http_date(
            "Tue, 01 Jan 2030 00:00:00 GMT"
        )

    def test_format_is_imf_fixdate(self) -> None:
        assert format_http_date(RFC_DATE) == "Sun, 06 Nov 1994 08:49:37 GMT"


class TestDeltaSeconds:
    def test_valid(self) -> None:
        assert parse_delta_seconds("0") == 0
        assert parse_delta_seconds("0060") == 60

    @pytest.mark.parametrize("value", ["", "-1", "1.5", " 5", "5s", "\u0663", "+5"])
    def test_invalid(self, value: str) -> None:
        assert parse_delta_seconds(value) is None

    def test_overflow_is_clamped_to_2_pow_31(self) -> None:
        # RFC 9111 1.2.2
        assert parse_delta_seconds("99999999999999999999") == DELTA_SECONDS_MAX == 2**31
        assert parse_delta_seconds("2147483649") == 2**31


class TestStructuredDictionary:
    def test_rfc8941_examples(self) -> None:
        # RFC 8941 3.2
        assert parse_dictionary('en="Applepie", da=:w4ZibGV0w6ZsZQ==:') == {
            "en": "Applepie",
            "da": b"\xc3\x86blet\xc3\xa6le",
        }
        assert parse_dictionary("a=?0, b, c; foo=bar") == {"a": False, "b": True, "c": True}
        assert parse_dictionary("rating=1.5, feelings=(joy sadness)") == {
            "rating": 1.5,
            "feelings": ["joy", "sadness"],
        }

    def test_tokens_and_strings_are_distinguished(self) -> None:
        parsed = parse_dictionary('a=tok, b="str", c=-12')
        assert isinstance(parsed["a"], Token)
        assert not isinstance(parsed["b"], Token)
        assert parsed["c"] == -12

    def test_last_duplicate_wins(self) -> None:
        assert parse_dictionary("max-age=1, max-age=2") == {"max-age": 2}

    @pytest.mark.parametrize(
        "value",
        [
            "Max-Age=1",  # keys are lowercase
            "a=1,",  # trailing comma
            "a=1.2345",  # four fractional digits
            'a="unterminated',
            "a=1 b=2",  # missing comma
            "a=1234567890123456",  # 16-digit integer
            "a=?2",
            'a="\\x"',  # only \\ and \" escapes
            "a=(1 2",
        ],
    )
    def test_invalid(self, value: str) -> None:
        with pytest.raises(SFError):
            parse_dictionary(value)

    def test_serialization_helpers(self) -> None:
        assert is_token("caching-proxy")
        assert not is_token("CDN Company Here")
        assert not is_token("1abc")
        assert serialize_string('a"b\\c\x01') == '"a\\"b\\\\c?"'


# --- properties: parsers never raise on arbitrary text, and round-trip where meaningful.

_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=80)


@given(_text)
def test_split_list_elements_are_trimmed_and_non_empty(value: str) -> None:
    for element in split_list(value):
        assert element
        assert element == element.strip(" \t")


@given(st.lists(st.from_regex(r"[a-z0-9\-]{1,10}", fullmatch=True), max_size=6))
def test_split_list_round_trip(elements: list[str]) -> None:
    assert split_list(", ".join(elements)) == elements


@given(_text)
def test_http_date_never_raises(value: str) -> None:
    result = parse_http_date(value)
    assert result is None or isinstance(result, float)


@given(st.integers(min_value=0, max_value=253402300799))
def test_http_date_round_trip(epoch: int) -> None:
    assert parse_http_date(format_http_date(epoch)) == epoch


@given(_text)
def test_dictionary_parser_fails_only_with_sferror(value: str) -> None:
    with contextlib.suppress(SFError):
        parse_dictionary(value)


@given(_text, _text)
def test_directive_parsers_never_raise(cc: str, cdn: str) -> None:
    headers = [("Cache-Control", cc), ("CDN-Cache-Control", cdn), ("Pragma", cc)]
    parse_request_directives(headers)
    d = response_directives(headers, ("cdn-cache-control",))
    assert d.max_age is None or d.max_age >= 0
    assert d.stale_while_revalidate >= 0
    vary_key(["cache-control", "accept-encoding", "x"], headers)
    decision = decide_store(
        "GET", 200, [], [*headers, ("Expires", cc), ("Age", cdn)], 0.0, 1.0, CacheConfig()
    )
    assert decision.store == (decision.meta is not None)
