"""Secondary keys from Vary (RFC 9111 4.1)."""

from __future__ import annotations

from caching_proxy.policy import ABSENT, vary_key


def test_no_vary_is_an_empty_key() -> None:
    assert vary_key((), [("Accept", "text/html")]) == ()


def test_one_value_per_vary_name_in_order() -> None:
    key = vary_key(("accept", "x-mode"), [("X-Mode", "a"), ("Accept", "text/html")])
    assert key == ("text/html", "a")


def test_absent_differs_from_empty() -> None:
    # 4.1: an absent field only matches absence.
    absent = vary_key(("x-mode",), [])
    empty = vary_key(("x-mode",), [("X-Mode", "")])
    assert absent == (ABSENT,)
    assert empty == ("",)
    assert absent != empty


def test_field_names_match_case_insensitively() -> None:
    assert vary_key(("Accept-Language",), [("accept-language", "en")]) == ("en",)


def test_whitespace_around_commas_and_line_combining() -> None:
    # 4.1: adding/removing whitespace where the syntax allows it, and combining field lines.
    a = vary_key(("accept-encoding",), [("Accept-Encoding", "gzip,  br")])
    b = vary_key(("accept-encoding",), [("Accept-Encoding", "gzip"), ("Accept-Encoding", " br ")])
    c = vary_key(("accept-encoding",), [("Accept-Encoding", "gzip,br")])
    assert a == b == c == ("gzip,br",)


def test_case_insensitive_fields_are_lowercased() -> None:
    a = vary_key(
        ("accept-encoding", "accept-language"),
        [("Accept-Encoding", "GZIP"), ("Accept-Language", "en-US")],
    )
    assert a == ("gzip", "en-us")


def test_case_sensitive_values_are_kept() -> None:
    assert vary_key(("x-user",), [("X-User", "Alice")]) == ("Alice",)
    # Media type parameter values may be case-sensitive: Accept is not lowercased.
    assert vary_key(("accept",), [("Accept", "Text/HTML")]) == ("Text/HTML",)


def test_whitespace_around_parameters() -> None:
    a = vary_key(("accept-encoding",), [("Accept-Encoding", "gzip ; q=1.0, br;q=0.5")])
    assert a == ("gzip;q=1.0,br;q=0.5",)
    # Quoted strings are left alone.
    quoted = vary_key(("accept",), [("Accept", 'text/x; a="1 ; 2"')])
    assert quoted == ('text/x; a="1 ; 2"',)


def test_order_is_significant() -> None:
    # Reordering is only allowed where the field says order does not matter; we never reorder.
    a = vary_key(("accept-language",), [("Accept-Language", "en, fr")])
    b = vary_key(("accept-language",), [("Accept-Language", "fr, en")])
    assert a != b


def test_non_list_fields_keep_inner_whitespace() -> None:
    a = vary_key(("user-agent",), [("User-Agent", "Foo (a, b)")])
    b = vary_key(("user-agent",), [("User-Agent", "Foo (a,b)")])
    assert a != b
    assert vary_key(("user-agent",), [("User-Agent", "  Foo  ")]) == ("Foo",)


def test_split_cookie_lines_join_with_semicolons() -> None:
    # RFC 9113 8.2.3: HTTP/2 may send one Cookie per crumb.
    split = vary_key(("cookie",), [("cookie", "a=1"), ("cookie", "b=2")])
    single = vary_key(("cookie",), [("Cookie", "a=1; b=2")])
    assert split == single == ("a=1; b=2",)
