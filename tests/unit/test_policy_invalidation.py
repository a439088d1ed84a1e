"""Invalidation after unsafe methods (RFC 9111 4.4)."""

from __future__ import annotations

import pytest

from caching_proxy.policy import invalidation_uris

URL = "http://example.com:80/items/1?x=1"


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "TRACE"])
def test_safe_methods_invalidate_nothing(method: str) -> None:
    assert invalidation_uris(method, 200, URL, [("Location", "/x")]) == []


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "PURGEX", "get"])
def test_unsafe_or_unknown_methods_invalidate_the_target(method: str) -> None:
    assert invalidation_uris(method, 200, URL, []) == [URL]


@pytest.mark.parametrize(
    ("status", "invalidates"),
    [
        (200, True),
        (204, True),
        (303, True),
        (399, True),
        (400, False),
        (404, False),
        (500, False),
        (100, False),
    ],
)
def test_only_non_error_statuses(status: int, invalidates: bool) -> None:
    assert (invalidation_uris("POST", status, URL, []) == [URL]) is invalidates


def test_location_and_content_location_resolved_against_the_target() -> None:
    headers = [("Location", "../other?y=2"), ("Content-Location", "http://EXAMPLE.com/items/1/v")]
    assert invalidation_uris("POST", 201, URL, headers) == [
        URL,
        "http://example.com:80/other?y=2",
        "http://example.com:80/items/1/v",
    ]


def test_other_origins_are_never_invalidated() -> None:
    headers = [
        ("Location", "http://evil.example/items/1"),
        ("Content-Location", "https://example.com/items/1"),  # other scheme and port
    ]
    assert invalidation_uris("PUT", 200, URL, headers) == [URL]
    other_port = [("Location", "http://example.com:8080/a")]
    assert invalidation_uris("PUT", 200, URL, other_port) == [URL]


def test_duplicates_are_listed_once() -> None:
    headers = [("Location", "/items/1?x=1"), ("Content-Location", "/items/1?x=1")]
    assert invalidation_uris("DELETE", 200, URL, headers) == [URL]


def test_unparseable_request_url() -> None:
    assert invalidation_uris("POST", 200, "not a url", []) == []
