"""The one cache key: a request's, a typed URL's and an invalidated URL's agree."""

from __future__ import annotations

import pytest

from caching_proxy.policy import invalidation_uris
from caching_proxy.policy.keys import origin_of, primary_key, target_of, url_key


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.com/a", "http://example.com:80/a"),
        ("HTTPS://Example.COM/a?q=B", "https://example.com:443/a?q=B"),
        ("http://example.com", "http://example.com:80/"),
        ("http://user:pw@example.com:8080/a#frag", "http://example.com:8080/a"),
        ("http://[::1]:8080/a", "http://[::1]:8080/a"),
    ],
)
def test_url_forms(url: str, expected: str) -> None:
    assert url_key(url) == expected


@pytest.mark.parametrize("url", ["ftp://example.com/", "/relative", "http://:80/", "http://h:99999/"])
def test_not_http_urls(url: str) -> None:
    assert url_key(url) is None


@pytest.mark.parametrize(
    ("host", "port", "typed"),
    [("LocalHost", 8080, "http://localhost:8080/p?x=1"),
     ("Example.COM", 80, "http://EXAMPLE.com/p?x=1"),
     ("::1", 8080, "http://[::1]:8080/p?x=1")],
)
def test_request_key_matches_typed_and_invalidated_url(host: str, port: int, typed: str) -> None:
    # mitmproxy keeps the host as the operator spelled the origin; a POST's invalidation and a
    # typed purge URL spell it otherwise, and all three must name the same entry.
    key = primary_key("http", host, port, "/p?x=1")
    assert url_key(typed) == key
    assert invalidation_uris("POST", 200, typed, []) == [key]


def test_target_kept_exactly() -> None:
    # No re-encoding or case change of the path: the origin may tell these apart.
    assert primary_key("http", "h", 80, "/A%2fb?Q=1&q=2") == "http://h:80/A%2fb?Q=1&q=2"
    assert primary_key("http", "h", 80, "") == "http://h:80/"


def test_origin_and_target_of() -> None:
    key = "https://h:443/a/b?c=1"
    assert origin_of(key) == "https://h:443"
    assert target_of(key) == "/a/b?c=1"
    assert target_of("https://h:443") == "/"
