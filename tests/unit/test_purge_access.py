"""Who may PURGE, and how purge targets map to store keys (pure functions)."""

from __future__ import annotations

import pytest

from caching_proxy.edge.purge import key_of, prefix_glob, purge_allowed


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_loopback_peers_may_purge_without_a_secret(peer: str) -> None:
    assert purge_allowed(peer, None, secret="")


@pytest.mark.parametrize(
    "peer", ["10.0.0.5", "192.168.1.20", "203.0.113.7", "::ffff:10.0.0.1", "2001:db8::1", "",
             "localhost", "not-an-address"])
def test_other_peers_are_refused_without_a_secret(peer: str) -> None:
    assert not purge_allowed(peer, None, secret="")
    assert not purge_allowed(peer, "anything", secret="")  # a header alone opens nothing


def test_with_a_secret_configured_only_the_secret_counts() -> None:
    assert purge_allowed("203.0.113.7", "s3cret", secret="s3cret")
    assert not purge_allowed("203.0.113.7", "s3cre", secret="s3cret")
    assert not purge_allowed("203.0.113.7", None, secret="s3cret")
    assert not purge_allowed("127.0.0.1", None, secret="s3cret")
    assert not purge_allowed("127.0.0.1", "", secret="s3cret")


def test_keys_write_the_port_and_keep_the_path_and_query() -> None:
    assert key_of("http://Example.com/a?b=1") == "http://example.com:80/a?b=1"
    assert key_of("https://h/") == "https://h:443/"
    assert key_of("http://h:8080") == "http://h:8080/"
    assert key_of("https://[::1]:8443/x") == "https://[::1]:8443/x"
    with pytest.raises(ValueError):
        key_of("ftp://h/x")


def test_a_prefix_is_a_glob_with_its_own_wildcards_escaped() -> None:
    assert prefix_glob("/api/") == "/api/*"
    assert prefix_glob("/x[1]*") == "/x[[]1][*]*"
