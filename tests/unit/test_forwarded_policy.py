"""policy/forwarded.py: what X-Forwarded-For becomes, who is trusted, what the options accept."""

from __future__ import annotations

import pytest

from caching_proxy.policy.forwarded import (
    forwarded_for,
    is_trusted,
    parse_networks,
    parse_switch,
    peer_address,
)


def test_an_untrusted_peer_replaces_the_list_a_trusted_one_appends() -> None:
    assert forwarded_for(["6.6.6.6"], "192.0.2.1", trusted=False) == "192.0.2.1"
    assert forwarded_for([], "192.0.2.1", trusted=True) == "192.0.2.1"
    assert forwarded_for(["203.0.113.9 , 10.0.0.2", "10.0.0.3", ""], "10.0.0.4", trusted=True
                         ) == "203.0.113.9, 10.0.0.2, 10.0.0.3, 10.0.0.4"


def test_trust_is_by_network_and_never_for_what_is_not_an_address() -> None:
    trusted = parse_networks("10.0.0.0/8, ::1,192.0.2.7")
    assert is_trusted("10.200.1.1", trusted) and is_trusted("::1", trusted)
    assert is_trusted("192.0.2.7", trusted) and not is_trusted("192.0.2.8", trusted)
    assert not is_trusted("11.0.0.1", trusted) and not is_trusted("unknown", trusted)
    assert not is_trusted("10.0.0.1", ())
    assert parse_networks("") == () and parse_networks(" , ") == ()


def test_a_mapped_ipv6_peer_is_written_as_ipv4() -> None:
    assert peer_address("::ffff:192.0.2.1") == "192.0.2.1"
    assert peer_address("2001:db8::1") == "2001:db8::1"
    assert peer_address("not-an-address") == "not-an-address"


@pytest.mark.parametrize("text", ["10.0.0.0/33", "lb.example", "10.0.0.1/8/8", "300.1.1.1"])
def test_bad_networks_are_named(text: str) -> None:
    with pytest.raises(ValueError, match=f"invalid trusted proxy '{text}'"):
        parse_networks(f"10.0.0.1,{text}")


def test_the_switch_is_on_or_off() -> None:
    assert parse_switch("on") is True and parse_switch(" OFF ") is False
    with pytest.raises(ValueError, match="invalid cache_forwarded 'yes'"):
        parse_switch("yes")
