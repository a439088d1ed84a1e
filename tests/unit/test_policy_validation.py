"""Validation: client conditionals (RFC 9110 13, RFC 9111 4.3.2), freshening (3.2, 4.3.4, 4.3.5)."""

from __future__ import annotations

import pytest

from caching_proxy.policy import (
    NO_DIRECTIVES,
    Action,
    CacheConfig,
    Headers,
    StoredMeta,
    client_not_modified,
    decide_store,
    evaluate,
    format_http_date,
    freshen_from_head,
    freshen_headers,
    not_modified_headers,
)

T = 1_700_000_000.0
LM = "Sun, 06 Nov 1994 08:49:37 GMT"
STORED: list[tuple[str, str]] = [
    ("Date", format_http_date(T)),
    ("Cache-Control", "max-age=60"),
    ("ETag", '"v1"'),
    ("Last-Modified", LM),
    ("Content-Type", "text/plain"),
    ("Content-Length", "5"),
    ("Age", "30"),
    ("X-Old", "1"),
]


def meta_of(headers: Headers) -> StoredMeta:
    decision = decide_store("GET", 200, [], headers, T, T, CacheConfig())
    assert decision.meta is not None
    return decision.meta


class TestClientNotModified:
    @pytest.mark.parametrize("inm", ['"v1"', 'W/"v1"', '"x", "v1"', "*", '"x"\t,W/"v1"'])
    def test_if_none_match_weak_comparison(self, inm: str) -> None:
        assert client_not_modified("GET", [("If-None-Match", inm)], STORED)

    def test_if_none_match_no_match(self) -> None:
        assert not client_not_modified("GET", [("If-None-Match", '"v2"')], STORED)

    def test_if_none_match_takes_precedence_over_if_modified_since(self) -> None:
        # RFC 9110 13.1.3: IMS is ignored when INM is present.
        headers = [("If-None-Match", '"v2"'), ("If-Modified-Since", format_http_date(T))]
        assert not client_not_modified("GET", headers, STORED)

    def test_if_none_match_against_response_without_etag(self) -> None:
        stored = [h for h in STORED if h[0] != "ETag"]
        assert not client_not_modified("GET", [("If-None-Match", '"v1"')], stored)
        assert client_not_modified("GET", [("If-None-Match", "*")], stored)

    def test_if_modified_since(self) -> None:
        assert client_not_modified("HEAD", [("If-Modified-Since", LM)], STORED)
        later = format_http_date(784111777 + 1)
        earlier = format_http_date(784111777 - 1)
        assert client_not_modified("GET", [("If-Modified-Since", later)], STORED)
        assert not client_not_modified("GET", [("If-Modified-Since", earlier)], STORED)

    def test_if_modified_since_invalid_or_repeated_is_ignored(self) -> None:
        assert not client_not_modified("GET", [("If-Modified-Since", "yesterday")], STORED)
        twice = [("If-Modified-Since", LM), ("If-Modified-Since", LM)]
        assert not client_not_modified("GET", twice, STORED)

    def test_if_modified_since_falls_back_to_date(self) -> None:
        # RFC 9111 4.3.2
        stored = [("Date", format_http_date(T))]
        assert client_not_modified("GET", [("If-Modified-Since", format_http_date(T))], stored)
        assert not client_not_modified(
            "GET", [("If-Modified-Since", format_http_date(T - 1))], stored
        )
        assert not client_not_modified("GET", [("If-Modified-Since", format_http_date(T))], [])

    def test_if_modified_since_without_last_modified_compares_date(self) -> None:
        # RFC 9111 4.3.2 with RFC 9110 13.1.3: a fresh stored response with no Last-Modified
        # was current at its Date, so a Date not later than the client's date answers 304, a
        # later one (a change the client may not have) the full response.
        stored = [("Date", format_http_date(T)), ("Cache-Control", "max-age=10000")]
        for since in (T, T + 1, T + 3000):
            ims = [("If-Modified-Since", format_http_date(since))]
            assert client_not_modified("GET", ims, stored)
        ims = [("If-Modified-Since", format_http_date(T - 3000))]
        assert not client_not_modified("GET", ims, stored)

    def test_if_modified_since_without_date_uses_the_time_received(self) -> None:
        # RFC 9111 4.3.2: "or, if no Date field is present, the time that the stored response
        # was received"; an invalid Date counts as none (RFC 9110 6.6.1).
        for stored in ([("Cache-Control", "max-age=60")], [("Date", "soon")]):
            at_t = [("If-Modified-Since", format_http_date(T))]
            before = [("If-Modified-Since", format_http_date(T - 1))]
            assert client_not_modified("GET", at_t, stored, response_time=T)
            assert not client_not_modified("GET", before, stored, response_time=T)
            assert not client_not_modified("GET", at_t, stored)  # nothing to compare

    def test_if_modified_since_in_an_invalid_format_is_ignored(self) -> None:
        # RFC 9110 13.1.3: ignored unless a valid HTTP-date; doubled spaces are not one.
        ims = [("If-Modified-Since", "Sun,  06 Nov 1994 08:49:37 GMT")]
        assert not client_not_modified("GET", ims, STORED)

    def test_only_get_and_head(self) -> None:
        assert not client_not_modified("POST", [("If-None-Match", "*")], STORED)

    def test_if_match_is_not_for_caches(self) -> None:
        assert not client_not_modified("GET", [("If-Match", '"nope"')], STORED)


class TestNotModifiedHeaders:
    def test_fields_listed_by_rfc9110_15_4_5(self) -> None:
        stored = [
            ("Content-Type", "text/plain"),
            ("Cache-Control", "max-age=60"),
            ("ETag", '"v1"'),
            ("Last-Modified", LM),
            ("Vary", "Accept"),
            ("Content-Location", "/a.txt"),
            ("Expires", "0"),
            ("Date", "Sun, 06 Nov 1994 08:49:37 GMT"),
            ("CDN-Cache-Control", "max-age=600"),
            ("Content-Length", "5"),
        ]
        assert [k for k, _ in not_modified_headers(stored)] == [
            "Cache-Control",
            "ETag",
            "Vary",
            "Content-Location",
            "Expires",
            "Date",
            "CDN-Cache-Control",
        ]

    def test_last_modified_only_without_etag(self) -> None:
        stored = [("Last-Modified", LM), ("Content-Type", "text/plain")]
        assert not_modified_headers(stored) == [("Last-Modified", LM)]


class TestFreshenHeaders:
    def test_replaces_in_place_appends_new_and_keeps_the_rest(self) -> None:
        validation = [
            ("Date", format_http_date(T + 100)),
            ("Cache-Control", "max-age=120"),
            ("ETag", '"v1"'),
            ("X-New", "n"),
        ]
        assert freshen_headers(STORED, validation) == [
            ("Date", format_http_date(T + 100)),
            ("Cache-Control", "max-age=120"),
            ("ETag", '"v1"'),
            ("Last-Modified", LM),
            ("Content-Type", "text/plain"),
            ("Content-Length", "5"),
            ("X-Old", "1"),
            ("X-New", "n"),
        ]

    def test_content_length_and_hop_by_hop_are_not_updated(self) -> None:
        validation = [
            ("Content-Length", "0"),
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "1"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Type", "text/html"),
        ]
        out = dict(freshen_headers(STORED, validation, response_time=T))
        assert out["Content-Length"] == "5"
        assert out["Content-Type"] == "text/html"
        assert "X-Hop" not in out and "Connection" not in out and "Transfer-Encoding" not in out

    def test_fields_describing_the_stored_bytes_are_not_updated(self) -> None:
        stored = [*STORED, ("Content-Encoding", "gzip"), ("Content-MD5", "old==")]
        validation = [("ETag", '"other"'), ("Content-Encoding", "br"), ("Content-MD5", "new=="),
                      ("X-Old", "2")]
        out = dict(freshen_headers(stored, validation, response_time=T))
        assert (out["ETag"], out["Content-Encoding"], out["Content-MD5"]) == ('"v1"', "gzip", "old==")
        assert out["X-Old"] == "2"

    def test_repeated_fields_replace_all_stored_lines(self) -> None:
        stored = [("Link", "<a>"), ("X", "1"), ("Link", "<b>")]
        out = freshen_headers(stored, [("Link", "<c>"), ("Link", "<d>")])
        assert out == [("Link", "<c>"), ("Link", "<d>"), ("X", "1")]

    def test_stored_age_is_dropped_and_a_missing_date_generated(self) -> None:
        out = freshen_headers(STORED, [("ETag", '"v1"')], response_time=T + 500)
        names = [k for k, _ in out]
        assert "Age" not in names
        assert dict(out)["Date"] == format_http_date(T + 500)

    def test_without_response_time_the_old_date_is_dropped(self) -> None:
        out = freshen_headers(STORED, [("ETag", '"v1"')])
        assert "Date" not in dict(out)

    def test_set_cookie_in_a_304_is_not_stored_by_default(self) -> None:
        validation = [("Set-Cookie", "sid=1")]
        assert "Set-Cookie" not in dict(freshen_headers(STORED, validation))
        config = CacheConfig(cache_set_cookie=True)
        assert "Set-Cookie" in dict(freshen_headers(STORED, validation, config=config))

    def test_private_fields_of_the_merged_response_are_removed(self) -> None:
        stored = [("Cache-Control", 'max-age=60, private="x-user"')]
        out = freshen_headers(stored, [("X-User", "bob")])
        assert out == stored

    def test_freshened_metadata_restarts_the_lifetime(self) -> None:
        # The 304 arrives at T+100 with a new Date: decide_store on the merged fields
        # gives a fresh entry again.
        old = meta_of(STORED)
        assert evaluate(NO_DIRECTIVES, old, T + 100).action is Action.REVALIDATE
        merged = freshen_headers(STORED, [("Date", format_http_date(T + 100)), ("ETag", '"v1"')])
        decision = decide_store("GET", 200, [], merged, T + 99, T + 100, CacheConfig())
        assert decision.meta is not None
        assert decision.meta.corrected_initial_age == 1  # the stored Age: 30 is gone
        assert evaluate(NO_DIRECTIVES, decision.meta, T + 110).action is Action.HIT


class TestFreshenFromHead:
    def test_matching_validators_and_length(self) -> None:
        head = [("ETag", '"v1"'), ("Last-Modified", LM), ("Content-Length", "5")]
        assert freshen_from_head(STORED, head)

    def test_any_mismatch_refuses(self) -> None:
        assert not freshen_from_head(STORED, [("ETag", '"v2"')])
        assert not freshen_from_head(STORED, [("ETag", '"v1"'), ("Content-Length", "6")])
        assert not freshen_from_head(STORED, [("Last-Modified", format_http_date(T))])

    def test_no_validator_proves_nothing(self) -> None:
        assert not freshen_from_head(STORED, [("Content-Length", "5")])
