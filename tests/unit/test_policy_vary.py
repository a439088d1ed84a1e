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
    assert a == b == c == ("br,gzip",)  # one weight: sorted


def test_unknown_fields_are_lists_for_whitespace_and_combining() -> None:
    # The caching tests' vary-normalise-space and vary-normalise-combine.
    spaced = vary_key(("foo",), [("Foo", " 1, 2 ")])
    assert spaced == vary_key(("foo",), [("Foo", "1,2")]) == ("1,2",)
    assert vary_key(("foo",), [("Foo", "1"), ("Foo", "2")]) == ("1,2",)
    assert vary_key(("foo",), [("Foo", "2,1")]) != spaced  # order kept where unknown


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
    a = vary_key(("accept-encoding",), [("Accept-Encoding", "gzip ; q=1.0, br;q=0.50")])
    assert a == ("gzip,br;q=0.5",)  # q=1 is the default; 0.50 is 0.5
    # Quoted strings are left alone.
    quoted = vary_key(("accept",), [("Accept", 'text/x; a="1 ; 2"')])
    assert quoted == ('text/x; a="1 ; 2"',)


def test_equal_weights_keep_the_clients_order_of_languages_and_charsets() -> None:
    # RFC 4647 2.3: within one weight the order of language ranges is the client's preference,
    # so `fr, de` is not `de, fr` (which the suite's optimal vary-normalise-lang-order merges).
    a = vary_key(("accept-language",), [("Accept-Language", "fr, de")])
    assert a == ("fr,de",)
    assert a != vary_key(("accept-language",), [("Accept-Language", "de, fr")])
    assert a == vary_key(("accept-language",), [("Accept-Language", " FR ,   de")])
    assert vary_key(("accept-charset",), [("Accept-Charset", "utf-8, iso-8859-1")]) != vary_key(
        ("accept-charset",), [("Accept-Charset", "iso-8859-1, utf-8")])
    # Weights still order them, and are written one way.
    weighted = vary_key(("accept-language",), [("Accept-Language", "fr;q=0.5, en")])
    assert weighted == ("en,fr;q=0.5",)
    assert weighted == vary_key(("accept-language",), [("Accept-Language", "en, fr;q=0.50")])
    assert weighted != vary_key(("accept-language",), [("Accept-Language", "en;q=0.5, fr")])


def test_equal_weights_of_content_codings_say_nothing() -> None:
    # RFC 9110 12.5.3: codings of one weight are equally acceptable, in any order.
    assert vary_key(("accept-encoding",), [("Accept-Encoding", "gzip, br")]) == vary_key(
        ("accept-encoding",), [("Accept-Encoding", "BR,gzip")]) == ("br,gzip",)
    # Accept is not reordered: media ranges of one weight may still differ by specificity.
    assert vary_key(("accept",), [("Accept", "a/b, c/d")]) != vary_key(
        ("accept",), [("Accept", "c/d, a/b")])


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
