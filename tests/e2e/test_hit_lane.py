"""The hit lane end to end: two real proxy processes, one with the lane (the default) and one with
`--no-hit-lane`, each before its own counting origin with the same routes, are sent the same
requests over real sockets. Every answer must be the same bytes (but for the clock: Date, Age and
Cache-Status's ttl), and each origin must have been asked the same things."""

from __future__ import annotations

import gzip
import re
import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.origin import Origin, Reply
from support.proxy import Proxy

ETAG = '"v1"'
LAST_MODIFIED = "Tue, 01 Dec 2026 10:00:00 GMT"
FRESH = [("Cache-Control", "max-age=600"), ("ETag", ETAG), ("Last-Modified", LAST_MODIFIED),
         ("Content-Type", "text/plain")]
TEXT = b"0123456789abcdef" * 8
BIG = bytes(range(256)) * 8192  # 2 MiB: stored mapped, written as a memoryview
CLOCK_FIELDS = re.compile(rb"^(date|age): .*\r\n", re.IGNORECASE | re.MULTILINE)
TTL = re.compile(rb"; ttl=-?\d+")


def routes(origin: Origin) -> None:
    origin.route("/a", 200, FRESH, TEXT)
    origin.route("/q", 200, FRESH, b"query answer\n")
    origin.route("/big", 200, [("Cache-Control", "max-age=600")], BIG)
    origin.route("/tagged", 200, [*FRESH, ("Surrogate-Key", "t1 t2")], b"tagged\n")
    origin.route("/gz", 200, [("Cache-Control", "max-age=600"), ("Content-Encoding", "gzip"),
                              ("Vary", "Accept-Encoding"), ("Content-Type", "text/plain")],
                 gzip.compress(TEXT, mtime=0))
    origin.route("/private", 200, [("Cache-Control", "private, max-age=600")], b"mine\n")
    origin.route("/chunked", handler=lambda seen: Reply(200, FRESH, b"in chunks\n", chunked=True))
    origin.route("/lang", handler=lambda seen: Reply(
        200, [*FRESH, ("Vary", "Accept-Language")],
        f"lang={seen.header('Accept-Language')}\n".encode()))


def head_of(target: str, *fields: str, method: str = "GET", version: str = "HTTP/1.1") -> bytes:
    return ("\r\n".join([f"{method} {target} {version}", "Host: proxy.test", *fields])
            + "\r\n\r\n").encode()


# Each case: the request bytes, sent twice to each proxy on one connection.
CASES: dict[str, bytes] = {
    "plain": head_of("/a"),
    "head": head_of("/a", method="HEAD"),
    "etag matches": head_of("/a", f"If-None-Match: {ETAG}"),
    "etag differs": head_of("/a", 'If-None-Match: "v0"'),
    "if-modified-since": head_of("/a", f"If-Modified-Since: {LAST_MODIFIED}"),
    "range": head_of("/a", "Range: bytes=0-3"),
    "ranges": head_of("/a", "Range: bytes=0-1,5-6"),
    "range past the end": head_of("/a", "Range: bytes=999-"),
    "if-range": head_of("/a", "Range: bytes=2-", f"If-Range: {ETAG}"),
    "no-cache": head_of("/a", "Cache-Control: no-cache"),
    "max-age=0": head_of("/a", "Cache-Control: max-age=0"),
    "only-if-cached": head_of("/q?x=1", "Cache-Control: only-if-cached"),
    "pragma": head_of("/a", "Pragma: no-cache"),
    "query": head_of("/q?b=2&a=1"),
    "percent-encoded": head_of("/a%2Fb"),
    "cookie": head_of("/a", "Cookie: session=1"),
    "authorization": head_of("/a", "Authorization: Bearer x"),
    "another host": head_of("/a", "X-Forwarded-Host: evil.test"),
    "http/1.0": head_of("/a", version="HTTP/1.0"),
    "http/1.0 keep-alive": head_of("/a", "Connection: keep-alive", version="HTTP/1.0"),
    "big": head_of("/big"),
    "big range": head_of("/big", "Range: bytes=1048576-1048591"),
    "tagged": head_of("/tagged"),
    "gzip client": head_of("/gz", "Accept-Encoding: gzip"),
    "identity client of a gzip variant": head_of("/gz"),
    "private": head_of("/private"),
    "chunked from the origin": head_of("/chunked"),
    "vary": head_of("/lang", "Accept-Language: de"),
    "vary other value": head_of("/lang", "Accept-Language: fr"),
    "many fields": head_of("/a", *(f"X-F{i}: v" for i in range(120))),
    "expect": head_of("/a", "Expect: 100-continue"),
    "upgrade": head_of("/a", "Connection: Upgrade", "Upgrade: websocket"),
    "absolute-form": head_of("http://proxy.test/a"),
    "version 2": head_of("/a", version="HTTP/2.0"),
    "bare lf": b"GET /a HTTP/1.1\nHost: proxy.test\n\n",
    "obs-fold": head_of("/a", "X-A: one", " two"),
    "pipelined": head_of("/a") + head_of("/q?p=1") + head_of("/a", method="HEAD"),
}


def exchange(port: int, request: bytes, answers: int) -> list[bytes]:
    """Send `request` (one or more heads) on a new connection and read `answers` final
    responses whole (interim 1xx ones are read past), so that no answer is cut short by the
    client leaving: what either proxy stores must not depend on that race."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        buf = b""
        out: list[bytes] = []
        heads = re.findall(rb"^(GET|HEAD) ", request, re.MULTILINE)
        while len(out) < answers:
            while b"\r\n\r\n" not in buf:
                more = s.recv(65536)
                if not more:
                    return [*out, buf]
                buf += more
            head, _, buf = buf.partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            if 100 <= status < 200:
                continue
            length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
            is_head = heads and heads[len(out) % len(heads)] == b"HEAD"
            if is_head or status in (204, 304):
                size = 0
            elif length is not None:
                size = int(length[1])
            elif re.search(rb"\r\ntransfer-encoding: *chunked", head, re.IGNORECASE):
                while b"0\r\n\r\n" not in buf and (more := s.recv(65536)):
                    buf += more
                size = buf.find(b"0\r\n\r\n") + 5 if b"0\r\n\r\n" in buf else len(buf)
            else:  # framed by the close
                while more := s.recv(65536):
                    buf += more
                size = len(buf)
            while len(buf) < size and (more := s.recv(65536)):
                buf += more
            out.append(head + b"\r\n\r\n" + buf[:size])
            buf = buf[size:]
        return out


def comparable(answer: bytes, origin: Origin) -> bytes:
    """The answer without what the clock and chance decide (a multipart answer's boundary), and
    with its origin's address (in an error message) written alike for both proxies."""
    answer = TTL.sub(b"", CLOCK_FIELDS.sub(b"", answer)).replace(
        f"127.0.0.1:{origin.port}".encode(), b"ORIGIN")
    boundary = re.search(rb"boundary=([0-9A-Za-z]+)", answer)
    return answer.replace(boundary[1], b"BOUNDARY") if boundary else answer


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Origin, Proxy, Origin, Proxy]]:
    work = tmp_path_factory.mktemp("lane")
    lane_origin, plain_origin = Origin(), Origin()
    routes(lane_origin)
    routes(plain_origin)
    lane = Proxy(lane_origin.url, work / "lane", "--quiet").start()
    plain = Proxy(plain_origin.url, work / "plain", "--quiet", "--no-hit-lane").start()
    yield lane_origin, lane, plain_origin, plain
    lane.stop()
    plain.stop()
    lane_origin.stop()
    plain_origin.stop()


@pytest.mark.parametrize("case", list(CASES))
def test_the_lane_answers_what_mitmproxys_path_answers(
        pair: tuple[Origin, Proxy, Origin, Proxy], case: str) -> None:
    lane_origin, lane, plain_origin, plain = pair
    request = CASES[case]
    heads = len(re.findall(rb"^(GET|HEAD) ", request, re.MULTILINE)) or 1
    for round_ in range(2):  # the first may fill the store; the second is what the store gives
        got = [comparable(a, lane_origin) for a in exchange(lane.port, request, heads)]
        want = [comparable(a, plain_origin) for a in exchange(plain.port, request, heads)]
        assert got == want, f"{case}, round {round_ + 1}"
    assert lane_origin.counts == plain_origin.counts


def test_the_lane_keeps_a_connection_for_the_next_request_and_serves_hits_on_it(
        pair: tuple[Origin, Proxy, Origin, Proxy]) -> None:
    lane_origin, lane, _, _ = pair
    exchange(lane.port, head_of("/a"), 1)
    before = lane_origin.counts["/a"]
    answers = exchange(lane.port, head_of("/a") * 50, 50)
    assert len(answers) == 50
    assert all(b"X-Cache: HIT" in a and a.endswith(TEXT) for a in answers)
    assert lane_origin.counts["/a"] == before  # no origin request: all hits


# Pieces of request heads, combined by hypothesis: what the lane takes, what it must leave to
# mitmproxy, and what mitmproxy or the guard refuse.
METHODS = ["GET", "GET", "HEAD", "get", "POST", "OPTIONS", "PURGE"]
TARGETS = ["/a", "/a?x=1", "/a%2Fb", "/gz", "/lang", "/q?z", "http://proxy.test/a",
           "http://127.0.0.1/a", "*", "/big"]
VERSIONS = ["HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.2"]
FIELDS = ["Host: proxy.test", "Cache-Control: no-cache", "Cache-Control: max-age=0",
          "Cache-Control: only-if-cached", "Pragma: no-cache", "Range: bytes=0-3",
          "Range: bytes=5-", "Range: bytes=0-1,3-4", f"If-None-Match: {ETAG}",
          f"If-Modified-Since: {LAST_MODIFIED}", "Accept-Encoding: gzip",
          "Accept-Encoding: br;q=0, identity", "Accept-Language: de", "Connection: close",
          "Connection: keep-alive", "Content-Length: 0", "Expect: 100-continue",
          "X-Tab: a\tb", "X-Ctl: a\x01b", " folded", "Cookie: a=1", "Authorization: Basic x",
          "X-Long: " + "v" * 9000, "Bad Name: v", "Upgrade: websocket"]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(method=st.sampled_from(METHODS), target=st.sampled_from(TARGETS),
       version=st.sampled_from(VERSIONS), fields=st.lists(st.sampled_from(FIELDS), max_size=5),
       line_end=st.sampled_from(["\r\n", "\r\n", "\n"]))
def test_any_request_is_answered_by_the_lane_as_by_mitmproxys_path(
        pair: tuple[Origin, Proxy, Origin, Proxy], method: str, target: str, version: str,
        fields: list[str], line_end: str) -> None:
    lane_origin, lane, plain_origin, plain = pair
    request = (line_end.join([f"{method} {target} {version}", *fields]) + line_end * 2).encode()
    for _ in range(2):
        assert ([comparable(a, lane_origin) for a in exchange(lane.port, request, 1)]
                == [comparable(a, plain_origin) for a in exchange(plain.port, request, 1)]), request
    assert lane_origin.counts == plain_origin.counts
