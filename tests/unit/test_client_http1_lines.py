"""The request line as client_http1 checks it before mitmproxy parses it (RFC 9112 3)."""

from __future__ import annotations

import pytest

from caching_proxy.mitm.client_http1 import LINE_WINDOW, line_refusal


@pytest.mark.parametrize("line", [
    b"GET / HTTP/1.1\r\n", b"GET /a?b=c HTTP/1.0\n", b"PURGE /x HTTP/1.1\r\nHost: x",
    b"OPTIONS * HTTP/1.1\r\n", b"GET http://h/x HTTP/1.1\r\n", b"GET /\xc3\xa9 HTTP/1.1\r\n",
])
def test_well_formed_lines_pass(line: bytes) -> None:
    assert line_refusal(line) is None


@pytest.mark.parametrize("line", [
    b"GET\t/ HTTP/1.1\r\n", b" GET / HTTP/1.1\r\n", b"GET  / HTTP/1.1\r\n",
    b"GET / HTTP/1.1 \r\n", b"GET /\x0b HTTP/1.1\r\n", b"GET /\x0c HTTP/1.1\r\n",
    b"GET /\r\n", b"G(T / HTTP/1.1\r\n", b"GET / HTTP/11\r\n", b"GET / http/1.1\r\n",
])
def test_any_other_spacing_or_shape_is_400(line: bytes) -> None:
    assert line_refusal(line) == (400, "malformed request line")


def test_an_unfinished_line_waits_until_it_is_too_long() -> None:
    assert line_refusal(b"GET /" + b"a" * 100) is None
    assert line_refusal(b"GET /" + b"a" * LINE_WINDOW) == (414, "request line too long")
