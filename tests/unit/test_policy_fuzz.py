"""Property tests of the policy's header parsers on arbitrary input (hypothesis): they never
raise anything but their documented error, and they round-trip what they can serialize.

Bounded for CI; scripts/soak runs them longer (CACHING_PROXY_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import os
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caching_proxy.policy import (
    CacheConfig,
    bypass_reason,
    client_not_modified,
    decide_store,
    evaluate,
    format_http_date,
    freshen_headers,
    invalidation_uris,
    parse_http_date,
    parse_request_directives,
    response_directives,
    storable_headers,
    vary_key,
)
from caching_proxy.policy.fields import parse_delta_seconds, split_list
from caching_proxy.policy.lookup import UNKEYED_OVERRIDE_FIELDS
from caching_proxy.policy.structured import (
    SFError,
    Token,
    parse_dictionary,
    serialize_string,
    serialize_token_or_string,
)

EXAMPLES = int(os.environ.get("CACHING_PROXY_FUZZ_EXAMPLES", "200"))
fuzz = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

# Field values as they come off the wire (latin-1 text, no CR/LF), and ones built from the
# characters the parsers care about, which find edge cases far faster.
wire_text = st.text(st.characters(min_codepoint=0, max_codepoint=255,
                                  blacklist_characters="\r\n"), max_size=80)
syntax_text = st.text(st.sampled_from(list('abc=,;"\\ \t*?()-0123456789.:/')), max_size=60)
values = wire_text | syntax_text
NAMES = ["Cache-Control", "Pragma", "Expires", "Date", "Age", "Last-Modified", "ETag", "Vary",
         "CDN-Cache-Control", "If-None-Match", "If-Modified-Since", "Location",
         "Content-Location", "Set-Cookie", "Connection", "Authorization", "Accept-Encoding",
         "Cookie", "Range", "X-Forwarded-Host"]
headers = st.lists(st.tuples(st.sampled_from(NAMES) | st.text(string.ascii_letters, min_size=1,
                                                               max_size=8), values), max_size=8)
CC = st.lists(st.sampled_from([
    "max-age=60", "max-age=0", "s-maxage=30", "no-cache", 'no-cache="set-cookie"', "no-store",
    "private", "public", "must-revalidate", "proxy-revalidate", "immutable", "max-age=-1",
    "max-age=99999999999999", "stale-while-revalidate=5", "stale-if-error=10", "max-age",
    'max-age="7"', "only-if-cached", "max-stale", "max-stale=3", "min-fresh=2", ",", "",
]), max_size=5).map(", ".join)


@fuzz
@given(values)
def test_split_list_never_raises(value: str) -> None:
    parts = split_list(value)
    assert all(p and p == p.strip(" \t") for p in parts)


@fuzz
@given(st.lists(st.text(string.ascii_letters + string.digits + "=-", min_size=1), max_size=6))
def test_split_list_round_trips(elements: list[str]) -> None:
    assert split_list(", ".join(elements)) == elements


@fuzz
@given(values)
def test_delta_seconds(value: str) -> None:
    parsed = parse_delta_seconds(value)
    assert parsed is None or 0 <= parsed <= 2**31


@fuzz
@given(st.integers(0, 2**31))
def test_delta_seconds_round_trips(n: int) -> None:
    assert parse_delta_seconds(str(n)) == n


@fuzz
@given(values | st.none())
def test_http_date_never_raises(value: str | None) -> None:
    parsed = parse_http_date(value)
    assert parsed is None or isinstance(parsed, float)


@fuzz
@given(st.integers(0, 253402300799))  # 1970 .. 9999-12-31
def test_http_date_round_trips(epoch: int) -> None:
    assert parse_http_date(format_http_date(epoch)) == epoch


@fuzz
@given(values)
def test_structured_dictionary_raises_only_sferror(value: str) -> None:
    try:
        parsed = parse_dictionary(value)
    except SFError:
        return
    assert all(isinstance(k, str) for k in parsed)


sf_keys = st.from_regex(r"[a-z*][a-z0-9_\-.*]{0,8}", fullmatch=True)
sf_values = (st.integers(-999_999_999_999_999, 999_999_999_999_999) | st.booleans()
             | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20)
             | st.from_regex(r"[A-Za-z*][A-Za-z0-9:/!#$%&'*+\-.^_`|~]{0,8}", fullmatch=True)
             .map(Token))


def _serialize(value: object) -> str:
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, Token):
        return serialize_token_or_string(value)
    if isinstance(value, int):
        return str(value)
    assert isinstance(value, str)
    return serialize_string(value)


@fuzz
@given(st.dictionaries(sf_keys, sf_values, max_size=5))
def test_structured_dictionary_round_trips(members: dict[str, object]) -> None:
    text = ", ".join(f"{k}={_serialize(v)}" for k, v in members.items())
    assert parse_dictionary(text) == members


@fuzz
@given(headers, CC)
def test_directives_never_raise(fields: list[tuple[str, str]], cc: str) -> None:
    parse_request_directives([*fields, ("Cache-Control", cc)])
    parse_request_directives(fields)
    response_directives([*fields, ("Cache-Control", cc)], ("cdn-cache-control",))
    response_directives(fields, ())


@fuzz
@given(headers, headers, CC, st.sampled_from([200, 203, 204, 206, 301, 304, 404, 500, 599]),
       st.floats(0, 2e9))
def test_store_and_lookup_never_raise(
    request: list[tuple[str, str]], response: list[tuple[str, str]], cc: str, status: int,
    now: float,
) -> None:
    config = CacheConfig()
    resp = [*response, ("Cache-Control", cc)]
    decision = decide_store("GET", status, request, resp, now, now, config)
    storable_headers(resp)
    vary_key(["Accept-Encoding", "Cookie"], request)
    client_not_modified("GET", request, resp)
    freshen_headers(resp, response, response_time=now, config=config)
    invalidation_uris("POST", status, "http://o:80/a/b", resp)
    bypass_reason("GET", request, config)
    if decision.store and decision.meta is not None:
        for later in (now, now + 30, now + 1e6):
            evaluate(parse_request_directives(request), decision.meta, later)


@pytest.mark.parametrize("name", sorted(UNKEYED_OVERRIDE_FIELDS))
def test_unkeyed_override_fields_pass(name: str) -> None:
    assert bypass_reason("GET", [(name.upper(), "x")], CacheConfig()) == "unkeyed"
    assert bypass_reason("GET", [("X-Forwarded-For", "1.2.3.4")], CacheConfig()) is None
