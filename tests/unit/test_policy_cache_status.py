"""The Cache-Status field value (RFC 9211)."""

from __future__ import annotations

import math

from caching_proxy.policy import cache_status
from caching_proxy.policy.structured import parse_dictionary


def test_rfc9211_examples() -> None:
    # RFC 9211 section 2 and 4.
    assert cache_status("ExampleCache", hit=True) == "ExampleCache; hit"
    assert cache_status("ExampleCache", hit=False, fwd="uri-miss") == "ExampleCache; fwd=uri-miss"
    assert (
        cache_status("ExampleCache", hit=False, fwd="uri-miss", stored=True)
        == "ExampleCache; fwd=uri-miss; stored"
    )
    assert (
        cache_status("ExampleCache", hit=False, fwd="stale", fwd_status=304)
        == "ExampleCache; fwd=stale; fwd-status=304"
    )
    assert cache_status("ExampleCache", hit=True, ttl=-412) == "ExampleCache; hit; ttl=-412"
    assert cache_status("CDN Company Here", hit=True, ttl=545) == '"CDN Company Here"; hit; ttl=545'


def test_brief_examples() -> None:
    assert cache_status("caching-proxy", hit=True, ttl=42.9) == "caching-proxy; hit; ttl=42"
    assert (
        cache_status("caching-proxy", hit=False, fwd="miss", stored=True, ttl=300)
        == "caching-proxy; fwd=miss; stored; ttl=300"
    )
    assert (
        cache_status("caching-proxy", hit=False, fwd="stale", fwd_status=304, ttl=60)
        == "caching-proxy; fwd=stale; fwd-status=304; ttl=60"
    )
    assert (
        cache_status("caching-proxy", hit=False, fwd="uri-miss", detail="no-store")
        == "caching-proxy; fwd=uri-miss; detail=no-store"
    )


def test_ttl_rounds_down_so_just_stale_is_negative() -> None:
    assert cache_status("c", hit=True, ttl=-0.5) == "c; hit; ttl=-1"
    assert cache_status("c", hit=True, ttl=0.5) == "c; hit; ttl=0"
    assert cache_status("c", hit=True, ttl=math.inf) == "c; hit; ttl=999999999999999"
    assert cache_status("c", hit=True, ttl=math.nan) == "c; hit"


def test_detail_that_is_not_a_token_is_quoted() -> None:
    value = cache_status("c", hit=False, fwd="bypass", detail='not "a" token')
    assert value == 'c; fwd=bypass; detail="not \\"a\\" token"'


def test_collapsed() -> None:
    assert cache_status("c", hit=True, collapsed=True) == "c; hit; collapsed"


def test_output_is_a_valid_structured_list_member() -> None:
    # A List member has the Dictionary member grammar once the name is a key; parse the params.
    value = cache_status(
        "caching-proxy", hit=False, fwd="stale", fwd_status=304, stored=True, ttl=-3, detail="x y"
    )
    name, _, params = value.partition("; ")
    assert name == "caching-proxy"
    parsed = parse_dictionary("m;" + params.replace("; ", ";"))
    assert parsed == {"m": True}  # parameters are valid (and dropped by the parser)
