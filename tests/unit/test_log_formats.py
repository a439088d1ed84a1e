"""Access log formats (log_formats.py) on mitmproxy's test flows: NCSA combined, each template
directive, escaping, and the one-line errors for unknown directives."""

from __future__ import annotations

import base64
import re

import pytest
from mitmproxy import http
from mitmproxy.test import tflow, tutils

from caching_proxy.ops.log_formats import COMBINED, escape, parse_format

START = 1796155471.25  # 2026-12-01T20:04:31.25Z


def flow(path: str = "/p?x=1", headers: list[tuple[str, str]] | None = None,
         body: bytes = b"12345", status: int = 200) -> http.HTTPFlow:
    request = tutils.treq(path=path.encode(), headers=http.Headers(
        [(k.encode(), v.encode()) for k, v in headers or []]))
    request.timestamp_start = START
    response = tutils.tresp(status_code=status, content=body, headers=http.Headers(
        [(b"X-Cache", b"HIT"), (b"Cache-Status", b"caching-proxy; hit; ttl=287")]))
    f = tflow.tflow(req=request, resp=response)
    f.client_conn.peername = ("192.0.2.7", 51234)
    return f


def test_combined_is_ncsa_combined_followed_by_the_cache_status() -> None:
    line = parse_format("combined")(flow(headers=[("Referer", "http://r/"),
                                                  ("User-Agent", "curl/8.5")]), START + 0.004)
    assert line == ('192.0.2.7 - - [01/Dec/2026:20:04:31 +0000] "GET /p?x=1 HTTP/1.1" 200 5 '
                    '"http://r/" "curl/8.5" HIT "caching-proxy; hit; ttl=287"')
    assert COMBINED.startswith('%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"')


def test_every_directive() -> None:
    auth = "Basic " + base64.b64encode(b"ann:secret").decode()
    f = flow(headers=[("Authorization", auth), ("Accept", "*/*")])
    line = parse_format("%h|%l|%u|%t|%r|%s|%>s|%b|%B|%D|%T|%m|%U|%q|%H|%{accept}i|"
                        "%{X-Cache}o|%{Nope}o|%%")(f, START + 2.5)
    assert line.split("|") == [
        "192.0.2.7", "-", "ann", "[01/Dec/2026:20:04:31 +0000]", "GET /p?x=1 HTTP/1.1", "200",
        "200", "5", "5", "2500000", "2", "GET", "/p", "?x=1", "HTTP/1.1", "*/*", "HIT", "-", "%"]


def test_empty_body_and_query_and_no_response() -> None:
    f = flow(path="/e", body=b"")
    assert parse_format("%b %B [%q]")(f, START) == "- 0 []"
    f.response = None
    assert parse_format("%s %b %{X-Cache}o")(f, START) == "- - -"


def test_values_from_clients_cannot_break_or_forge_a_line() -> None:
    f = flow(headers=[("User-Agent", 'x" 200 "\\evil\x01é')])
    line = parse_format("combined")(f, START)
    assert '"x\\" 200 \\"\\\\evil\\x01\\xc3\\xa9"' in line
    assert "\n" not in escape("a\nb") and escape("a\nb") == "a\\x0ab"


@pytest.mark.parametrize(("template", "bad"), [
    ("%h %Z", "%Z"), ("%{X}z", "%{X}z"), ("%{}i", "%{}i"), ("trailing %", "%"),
])
def test_an_unknown_directive_is_named(template: str, bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"unknown directive {bad!r}")):
        parse_format(template)


def test_a_word_that_is_no_format_is_refused() -> None:
    with pytest.raises(ValueError, match="text, json, combined or a template"):
        parse_format("xml")


def test_text_and_json_are_as_before() -> None:
    text = parse_format("text")(flow(), START + 0.0004)
    assert text == '2026-12-01T20:04:31Z GET /p?x=1 200 HIT "caching-proxy; hit; ttl=287" 5 0.4ms'
    assert parse_format("json")(flow(), START).startswith('{"time": "2026-12-01T20:04:31Z"')
