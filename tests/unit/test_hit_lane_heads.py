"""The hit lane's pure parts: which request heads it takes (all others go to mitmproxy byte for
byte), where it closes a connection and how it frames a body, each as mitmproxy's HTTP/1 server
would."""

from __future__ import annotations

import pytest
from mitmproxy import http
from mitmproxy.net.http import http1

from caching_proxy.mitm import hit_lane
from caching_proxy.mitm.hit_lane import MAX_HEAD, encoded_body, must_close, read_head


def head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize("raw", [
    head("GET / HTTP/1.1", "Host: a"),
    head("GET /x?y=1 HTTP/1.1", "Host: a", "Accept: */*", "If-None-Match: \"v\""),
    head("HEAD /x HTTP/1.1", "Host: a"),
    head("GET /x HTTP/1.0"),
    head("GET /x HTTP/1.1", "Host: a", "Range: bytes=0-1", "Cache-Control: max-age=0"),
])
def test_plain_gets_and_heads_are_the_lanes(raw: bytes) -> None:
    request = read_head(raw, True)
    assert request is not None
    # Exactly what mitmproxy's own reader makes of it.
    same = http1.read_request_head(raw[:-4].split(b"\r\n"))
    assert (request.method, request.data.path, request.http_version, request.headers.fields) == (
        same.method, same.data.path, same.http_version, same.headers.fields)


@pytest.mark.parametrize(("raw", "why"), [
    (head("POST /x HTTP/1.1", "Host: a"), "not GET or HEAD"),
    (head("PURGE /x HTTP/1.1", "Host: a"), "the purge addon's"),
    (head("OPTIONS * HTTP/1.1", "Host: a"), "asterisk-form"),
    (head("GET http://a/x HTTP/1.1", "Host: a"), "absolute-form: the guard rewrites or refuses"),
    (head("GET a:80 HTTP/1.1"), "authority-form"),
    (head("GET /x HTTP/2.0", "Host: a"), "not HTTP/1.0 or 1.1: the guard's 505"),
    (head("GET /x HTTP/1.1", "Content-Length: 0"), "a body's framing"),
    (head("GET /x HTTP/1.1", "Transfer-Encoding: chunked"), "a body's framing"),
    (head("GET /x HTTP/1.1", "Expect: 100-continue"), "mitmproxy answers 100 Continue"),
    (head("GET /x HTTP/1.1", "Connection: Upgrade", "Upgrade: websocket"), "another protocol"),
    (head("GET /x HTTP/1.1", "X-A: a\tb"), "a control byte"),
    (head("GET /x HTTP/1.1", "X-A: a\x00b"), "a NUL"),
    (head("GET /x HTTP/1.1", "X-A: a\x7fb"), "DEL"),
    (b"GET /x HTTP/1.1\nHost: a\r\n\r\n", "a bare LF: the line ends are mitmproxy's to read"),
    (b"GET /x HTTP/1.1\rHost: a\r\n\r\n", "a bare CR"),
    (head("GET /x HTTP/1.1", "Bad Name: v"), "a field name mitmproxy refuses"),
    (head("GET /x HTTP/1.1", "X: " + "v" * MAX_HEAD), "larger than the lane reads"),
    (head("GET /x"), "a request line without a version"),
    (head("GET /x HTTP/1.1", "no colon here"), "a malformed field line"),
])
def test_anything_else_is_left_to_mitmproxy(raw: bytes, why: str) -> None:
    assert read_head(raw, True) is None, why


def request(version: str = "HTTP/1.1", method: str = "GET", **fields: str) -> http.Request:
    lines = [f"{method} /x {version}", *(f"{k.replace('_', '-')}: {v}" for k, v in fields.items())]
    return http1.read_request_head([line.encode() for line in lines])


def response(status: int = 200, body: bytes = b"abc", **fields: str) -> http.Response:
    made = http.Response.make(status, body, {k.replace("_", "-"): v for k, v in fields.items()})
    if "Transfer-Encoding" in fields:
        del made.headers["content-length"]
    return made


@pytest.mark.parametrize(("req", "resp", "closes"), [
    (request(), response(), False),
    (request("HTTP/1.0"), response(), True),
    (request("HTTP/1.0", Connection="keep-alive"), response(), False),
    (request(Connection="close"), response(), True),
    (request(), response(Connection="close"), True),
])
def test_the_connection_closes_where_mitmproxy_closes_it(
        req: http.Request, resp: http.Response, closes: bool) -> None:
    assert must_close(req, resp) is closes


def test_a_response_framed_by_the_close_closes() -> None:
    resp = response()
    del resp.headers["content-length"]
    assert must_close(request(), resp)


def test_bodies_are_framed_as_mitmproxy_frames_them() -> None:
    assert encoded_body(request(), response(body=b"abc")) == [b"abc"]
    assert encoded_body(request(method="HEAD"), response(body=b"")) == []
    chunked = response(body=b"abc", Transfer_Encoding="chunked")
    assert b"".join(encoded_body(request(), chunked)) == b"3\r\nabc\r\n0\r\n\r\n"
    assert b"".join(encoded_body(request(), response(body=b"", Transfer_Encoding="chunked"))) == (
        b"0\r\n\r\n")


def test_this_mitmproxy_has_what_the_lane_relies_on() -> None:
    assert hit_lane.problems() == []
