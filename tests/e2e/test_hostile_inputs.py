"""What a hostile client sends, table-driven, on the three ways in: the hit lane, mitmproxy's
path (`--no-hit-lane`) and HTTP/2 over TLS.

Every case: a fresh entry is stored for the case's path first (a MISS, then a HIT); the hostile
request goes on a new connection; its answer is the one the case states (a status, or the
connection closed or the stream reset); the origin saw nothing it should not (no request at all
where the case says so, and never a hop-by-hop or underscore field); the stored entry is still
the one served, as a HIT, without asking the origin; and the proxy's log holds no traceback.

The origin reflects what poisoning would need (X-Forwarded-Host and the like change its body to
"evil") and sends every hop-by-hop field there is on each answer, so every miss also checks that
none of them reaches a client (RFC 9110 7.6.1).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from support.certs import Certs, make_certs
from support.client import fetch
from support.h2_client import H2Answer, h2_request
from support.load import rss_kib
from support.origin import Origin, Reply, Seen
from support.proxy import Proxy

SECRET = "s3cret"
PATHS = ("lane", "no-lane", "h2")
# Hop-by-hop fields the origin sends on every answer, and the field its Connection names.
ORIGIN_HOP = [("Connection", "X-Origin-Hop"), ("X-Origin-Hop", "1"), ("Keep-Alive", "timeout=5"),
              ("TE", "trailers, deflate;q=0.5"), ("Trailer", "X-Tail"), ("Upgrade", "h2c"),
              ("Proxy-Connection", "keep-alive")]
HOP_NAMES = {"x-origin-hop", "keep-alive", "te", "trailer", "upgrade", "proxy-connection",
             "x-secret"}
# What the origin reads to change its answer (and a cache must key, or pass).
REFLECTED = {"x-forwarded-host", "forwarded", "x-http-method-override", "x-forwarded-prefix",
             "x-forwarded-port"}


def reflecting(seen: Seen) -> Reply:
    evil = any(k.lower().replace("_", "-") in REFLECTED for k, _ in seen.headers)
    return Reply(200, [("Cache-Control", "max-age=300"), *ORIGIN_HOP],
                 b"evil" if evil else b"good")


@dataclass(frozen=True)
class Case:
    id: str
    wire: bytes | None  # the HTTP/1 request, `{P}` standing for the case's path; None: h2 only
    expect: int | str  # the status of the last answer, or "close"
    # The same over HTTP/2: (method, extra fields); None where HTTP/2 cannot carry it.
    h2: tuple[bytes, list[tuple[bytes, bytes]]] | None = None
    h2_expect: int | str | None = None  # when HTTP/2 answers otherwise (a malformed request)
    reaches_origin: bool = False  # may the hostile request reach the origin at all
    answers: int = 1  # answers on the connection (pipelined requests)
    half_close: bool = False  # shut the write side once sent
    body: bytes | None = None  # the body the last answer must carry


def head(line: str, *fields: str) -> bytes:
    return ("\r\n".join((line, *fields)) + "\r\n\r\n").encode("latin-1")


NO_CACHE = "Cache-Control: no-cache"
FILLER = "".join(f"X-Filler-{i}: {'a' * 1000}\r\n" for i in range(100))

CASES = [
    # 1. A method is case-sensitive: `get` is not GET (it was keyed as GET, forwarded as `get`).
    Case("method-lower", head("get {P} HTTP/1.1", "Host: x", NO_CACHE), 400,
         h2=(b"get", [(b"cache-control", b"no-cache")])),
    Case("method-mixed", head("Get {P} HTTP/1.1", "Host: x"), 400, h2=(b"Get", [])),
    Case("method-purge-lower", head("purge {P} HTTP/1.1", "Host: x"), 400, h2=(b"purge", [])),
    # 3. Unkeyed overrides, in any spelling: dropped (underscore) or passed, never stored.
    Case("underscore-forwarded-host",
         head("GET {P} HTTP/1.1", "Host: x", "X_Forwarded_Host: evil.example", NO_CACHE), 200,
         h2=(b"GET", [(b"x_forwarded_host", b"evil.example"), (b"cache-control", b"no-cache")]),
         reaches_origin=True, body=b"good"),
    Case("underscore-method-override",
         head("GET {P} HTTP/1.1", "Host: x", "X_HTTP_Method_Override: DELETE", NO_CACHE), 200,
         h2=(b"GET", [(b"x_http_method_override", b"DELETE"), (b"cache-control", b"no-cache")]),
         reaches_origin=True, body=b"good"),
    Case("forwarded-host",
         head("GET {P} HTTP/1.1", "Host: x", "Forwarded: host=evil.example", NO_CACHE), 200,
         h2=(b"GET", [(b"forwarded", b"host=evil.example"), (b"cache-control", b"no-cache")]),
         reaches_origin=True),
    Case("forwarded-prefix",
         head("GET {P} HTTP/1.1", "Host: x", "X-Forwarded-Prefix: /evil", NO_CACHE), 200,
         h2=(b"GET", [(b"x-forwarded-prefix", b"/evil"), (b"cache-control", b"no-cache")]),
         reaches_origin=True),
    Case("forwarded-port", head("GET {P} HTTP/1.1", "Host: x", "X-Forwarded-Port: 1", NO_CACHE),
         200,
         h2=(b"GET", [(b"x-forwarded-port", b"1"), (b"cache-control", b"no-cache")]), reaches_origin=True),
    # 4. A PURGE secret that cannot be decoded, or sent twice, refuses; nothing reaches the origin.
    Case("purge-secret-bytes", b"PURGE {P} HTTP/1.1\r\nHost: x\r\nX-Purge-Secret: \xff\xfe\r\n\r\n",
         403, h2=(b"PURGE", [(b"x-purge-secret", b"\xff\xfe")])),
    Case("purge-secret-twice",
         head("PURGE {P} HTTP/1.1", "Host: x", "X-Purge-Secret: wrong",
              f"X-Purge-Secret: {SECRET}"), 403,
         h2=(b"PURGE", [(b"x-purge-secret", b"wrong"), (b"x-purge-secret", SECRET.encode())])),
    Case("purge-no-secret", head("PURGE {P} HTTP/1.1", "Host: x"), 403, h2=(b"PURGE", [])),
    # 8. Hop-by-hop request fields never reach the origin (HTTP/2 forbids them: malformed).
    Case("hop-by-hop-request",
         head("GET {P} HTTP/1.1", "Host: x", "Connection: X-Secret, keep-alive", "X-Secret: 1",
              "Keep-Alive: 300", "TE: gzip", "Trailer: X-T", "Proxy-Connection: keep-alive",
              "Upgrade: evil", NO_CACHE), 200,
         h2=(b"GET", [(b"connection", b"x-secret"), (b"x-secret", b"1"),
                      (b"cache-control", b"no-cache")]),
         h2_expect="close", reaches_origin=True, body=b"good"),
    # 10. Empty lines before a request are ignored (RFC 9112 2.2), also after a body.
    Case("leading-crlf", b"\r\n" + head("GET {P} HTTP/1.1", "Host: x"), 200, body=b"good"),
    Case("empty-line-flood", b"\r\n\n" * 40000 + head("GET {P} HTTP/1.1", "Host: x"), 200,
         body=b"good"),
    Case("crlf-after-body",
         head("POST {P}-post HTTP/1.1", "Host: x", "Content-Length: 2") + b"ab\r\n"
         + head("GET {P} HTTP/1.1", "Host: x"), 200, answers=2, reaches_origin=True,
         body=b"good"),
    # 12. A client that shuts its write side after the request is still answered.
    Case("half-closed-hit", head("GET {P} HTTP/1.1", "Host: x"), 200, half_close=True,
         body=b"good"),
    Case("half-closed-miss", head("GET {P} HTTP/1.1", "Host: x", NO_CACHE), 200,
         half_close=True, reaches_origin=True, body=b"good"),
    # 14. Host (RFC 9112 3.2), the asterisk form, and a strict request line.
    Case("no-host", head("GET {P} HTTP/1.1"), 400),
    Case("two-hosts", head("GET {P} HTTP/1.1", "Host: x", "Host: y"), 400),
    Case("empty-host", head("GET {P} HTTP/1.1", "Host:"), 400),
    Case("http10-no-host", head("GET {P} HTTP/1.0"), 200, body=b"good"),
    Case("asterisk-get", head("GET * HTTP/1.1", "Host: x"), 400),
    Case("tab-in-line", head("GET\t{P} HTTP/1.1", "Host: x"), 400),
    Case("vt-in-line", head("GET\x0b{P} HTTP/1.1", "Host: x"), 400),
    Case("ff-in-line", head("GET {P}\x0cHTTP/1.1", "Host: x"), 400),
    Case("leading-space", head(" GET {P} HTTP/1.1", "Host: x"), 400),
    Case("double-space", head("GET  {P} HTTP/1.1", "Host: x"), 400),
    # 2. A head that never ends: refused past the guard's limits, and closed.
    Case("long-request-line", b"GET /" + b"a" * 9000, 414),
    Case("unterminated-head", f"GET {{P}} HTTP/1.1\r\nHost: x\r\n{FILLER}".encode(), 431),
    # Today's smuggling shapes, for the record (mitmproxy or the guard refuse them).
    Case("cl-and-te", head("POST {P} HTTP/1.1", "Host: x", "Content-Length: 3",
                           "Transfer-Encoding: chunked") + b"0\r\n\r\n", 400),
    Case("obs-fold", head("GET {P} HTTP/1.1", "Host: x", "X-A: 1", " folded"), 400),
    Case("absolute-form-other-host", head("GET http://evil.example{P} HTTP/1.1", "Host: x"), 400),
]


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def parse_answers(data: bytes) -> list[Answer]:
    """The complete HTTP/1 responses at the front of `data` (Content-Length or chunked)."""
    out: list[Answer] = []
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return out
        lines = data[:end].decode("latin-1").split("\r\n")
        headers = [(k, v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
        answer = Answer(int(lines[0].split()[1]), headers)
        rest = data[end + 4:]
        length = answer.header("Content-Length")
        if length is not None:
            if len(rest) < int(length):
                return out
            answer.body, data = rest[:int(length)], rest[int(length):]
        elif "chunked" in (answer.header("Transfer-Encoding") or ""):
            body = b""
            while True:
                line_end = rest.find(b"\r\n")
                if line_end < 0:
                    return out
                size = int(rest[:line_end].split(b";")[0], 16)
                if len(rest) < line_end + 2 + size + 2:
                    return out
                body += rest[line_end + 2:line_end + 2 + size]
                rest = rest[line_end + 2 + size + 2:]
                if size == 0:
                    break
            answer.body, data = body, rest
        else:
            answer.body, data = rest, b""
        out.append(answer)


def exchange(port: int, data: bytes, answers: int, half_close: bool = False,
             timeout: float = 5.0) -> tuple[list[Answer], bool]:
    """Send `data` on a new connection; the answers read (up to `answers`) and whether the
    proxy closed the connection."""
    deadline = time.monotonic() + timeout
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with contextlib.suppress(OSError):  # refused part way (an endless head): read on
            s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                return parse_answers(received), True
            except TimeoutError:
                break
            if not chunk:
                return parse_answers(received), True
            received += chunk
            if len(parse_answers(received)) >= answers:
                break
    return parse_answers(received), False


@pytest.fixture(scope="module")
def hostile_origin() -> Iterator[Origin]:
    server = Origin()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def proxies(hostile_origin: Origin, tmp_path_factory: pytest.TempPathFactory,
            certs: Certs) -> Iterator[dict[str, Proxy]]:
    folder = tmp_path_factory.mktemp("hostile")
    common = ("--purge-secret", SECRET)
    started = {
        "lane": Proxy(hostile_origin.url, folder / "lane", *common),
        "no-lane": Proxy(hostile_origin.url, folder / "no-lane", "--no-hit-lane", *common),
        "h2": Proxy(hostile_origin.url, folder / "h2", "--tls-cert", str(certs.cert),
                    "--tls-key", str(certs.key), *common),
    }
    for p in started.values():
        p.start()
    yield started
    for p in started.values():
        p.stop()


def tls(certs: Certs) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certs.ca))


class Way:
    """One way in: plain GETs and the hostile request, over HTTP/1 or HTTP/2."""

    def __init__(self, name: str, proxy: Proxy, certs: Certs) -> None:
        self.name, self.proxy, self.certs = name, proxy, certs

    def get(self, path: str) -> Answer:
        if self.name == "h2":
            got = h2_request(self.proxy.port, tls(self.certs), b"GET", path.encode())
            assert got.status is not None, f"GET {path} over h2: {got.outcome}"
            return Answer(got.status, [(k.decode(), v.decode("latin-1")) for k, v in got.headers],
                          got.body)
        r = fetch(self.proxy.url + path)
        return Answer(r.status, r.headers, r.body)


@pytest.fixture(params=PATHS)
def way(request: pytest.FixtureRequest, proxies: dict[str, Proxy], certs: Certs) -> Way:
    return Way(request.param, proxies[request.param], certs)


_serial = iter(range(1_000_000))


def prime(way: Way, origin: Origin) -> tuple[str, list[Answer]]:
    """A path of the case's own with a fresh stored entry (a MISS, then a HIT), and the two
    answers."""
    path = f"/h{next(_serial)}-{way.name}"
    origin.route(path, handler=reflecting)
    first, second = way.get(path), way.get(path)
    assert (first.status, first.header("X-Cache"), first.body) == (200, "MISS", b"good")
    assert (second.status, second.header("X-Cache"), second.body) == (200, "HIT", b"good")
    return path, [first, second]


def hop_fields(answers: list[Answer]) -> list[set[str]]:
    """The hop-by-hop fields each answer carried (each should be empty)."""
    return [{k.lower() for k, _ in a.headers} & HOP_NAMES for a in answers]


def lines_for(origin: Origin, path: str) -> int:
    with origin.lock:
        return sum(1 for line in origin.request_lines if path in line)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_request(case: Case, way: Way, hostile_origin: Origin) -> None:
    if way.name == "h2" and case.h2 is None:
        pytest.skip("an HTTP/1 byte-level case: HTTP/2 frames carry no such bytes")
    origin = hostile_origin
    path, primed = prime(way, origin)
    before = lines_for(origin, path)
    logged = len(way.proxy.lines)

    if way.name == "h2":
        assert case.h2 is not None
        method, fields = case.h2
        got: H2Answer = h2_request(way.proxy.port, tls(way.certs), method, path.encode(), fields)
        expected = case.h2_expect if case.h2_expect is not None else case.expect
        assert got.outcome == expected, (got.outcome, got.body)
        answer: Answer | None = Answer(got.status, [(k.decode(), v.decode("latin-1"))
                                                    for k, v in got.headers], got.body) \
            if got.status is not None else None
    else:
        assert case.wire is not None
        wire = case.wire.replace(b"{P}", path.encode())
        answers, closed = exchange(way.proxy.port, wire, case.answers, case.half_close)
        if case.expect == "close":
            assert closed and not answers, answers
            answer = None
        else:
            assert len(answers) == case.answers, (answers, closed)
            answer = answers[-1]
            assert answer.status == case.expect, (answer.status, answer.body)
            if answer.status in (400, 414, 431):  # the guard's refusals end the connection
                assert closed or answer.header("Connection") == "close"
    if answer is not None and case.body is not None:
        assert answer.body == case.body

    if not case.reaches_origin:
        assert lines_for(origin, path) == before, "the hostile request reached the origin"
    for seen in origin.requests_for(path):
        names = {k.lower() for k, _ in seen.headers}
        assert not names & HOP_NAMES and not any("_" in n for n in names), seen.headers
    # The stored entry is the one still served, without asking the origin.
    count = origin.count(path)
    after = way.get(path)
    assert (after.status, after.header("X-Cache"), after.body) == (200, "HIT", b"good")
    assert origin.count(path) == count
    assert not any("Traceback" in line for line in way.proxy.lines[logged:]), \
        "\n".join(way.proxy.lines[logged:])
    # 8. No hop-by-hop field of the origin's reached the client, on the miss, the hit, or this.
    assert hop_fields([*primed, after, *([answer] if answer else [])]) == [set()] * (
        len(primed) + 1 + bool(answer))


def test_vary_keeps_the_clients_language_order(way: Way, hostile_origin: Origin) -> None:
    """9. `fr, de` and `de, fr` are two preferences (RFC 4647 2.3), two variants."""
    path = f"/vary{next(_serial)}-{way.name}"

    def by_language(seen: Seen) -> Reply:
        # The first of the highest weight: what an origin negotiating languages answers.
        ranges = [part.strip().partition(";q=") for part in
                  (seen.header("Accept-Language") or "").split(",")]
        best = max(ranges, key=lambda r: float(r[2] or 1))[0]
        return Reply(200, [("Cache-Control", "max-age=300"), ("Vary", "Accept-Language")],
                     best.encode())

    hostile_origin.route(path, handler=by_language)

    def get(languages: str) -> Answer:
        if way.name == "h2":
            got = h2_request(way.proxy.port, tls(way.certs), b"GET", path.encode(),
                             [(b"accept-language", languages.encode())])
            return Answer(got.status or 0, [(k.decode(), v.decode()) for k, v in got.headers],
                          got.body)
        r = fetch(way.proxy.url + path, headers={"Accept-Language": languages})
        return Answer(r.status, r.headers, r.body)

    assert get("de, fr").body == b"de"
    assert get("fr, de").body == b"fr"
    assert hostile_origin.count(path) == 2
    again = get("fr,de")
    assert (again.body, again.header("X-Cache")) == (b"fr", "HIT")
    # Weights still say the order: `de;q=0.5, fr` is `fr, de;q=0.5`.
    assert get("de;q=0.5, fr").body == b"fr"
    assert get("fr, de;q=0.50").header("X-Cache") == "HIT"
    assert hostile_origin.count(path) == 3


def test_an_origin_date_is_added_and_odd_transfer_codings_are_not_stored(
        way: Way, hostile_origin: Origin) -> None:
    """14. A response without Date gets one (RFC 9110 6.6.1); `Transfer-Encoding: gzip,
    chunked` is passed on but never stored, so no hit serves its coded body as plain."""
    dateless = f"/nodate{next(_serial)}-{way.name}"
    body = b"no date here"
    hostile_origin.route(dateless, handler=lambda _: Reply(raw=(
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=300\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n%s" % (len(body), body))))
    first, second = way.get(dateless), way.get(dateless)
    assert first.body == second.body == body
    assert first.header("Date") and second.header("Date") == first.header("Date")
    assert second.header("X-Cache") == "HIT"

    coded = f"/tecoded{next(_serial)}-{way.name}"
    import gzip

    payload = gzip.compress(b"coded body")
    hostile_origin.route(coded, handler=lambda _: Reply(raw=(
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=300\r\nTransfer-Encoding: gzip, chunked\r\n"
        b"Connection: close\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload))))
    way.get(coded)
    again = way.get(coded)
    assert again.header("X-Cache") != "HIT"
    assert hostile_origin.count(coded) == 2


def test_a_reset_connection_is_not_answered_logged_or_counted(
        proxies: dict[str, Proxy], hostile_origin: Origin) -> None:
    """11. 2,000 pipelined hits, then a reset at once: the lane stops at the closed transport
    (it wrote 2,000 answers into it, logging each as a HIT, with 1,995 asyncio warnings)."""
    proxy = proxies["lane"]
    path, _ = prime(Way("lane", proxy, None), hostile_origin)  # type: ignore[arg-type]
    logged = len(proxy.lines)
    request = head(f"GET {path} HTTP/1.1", "Host: x")
    s = socket.create_connection(("127.0.0.1", proxy.port))
    s.sendall(request * 2000)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # a reset, with the answers unread
    seen, deadline = -1, time.monotonic() + 3
    while len(proxy.lines) != seen and time.monotonic() < deadline:  # until the log is quiet
        seen = len(proxy.lines)
        time.sleep(0.3)
    out = proxy.lines[logged:]
    assert not any("socket.send() raised" in line for line in out), out[-3:]
    assert sum(path in line and "HIT" in line for line in out) < 2000
    assert fetch(proxy.url + path).x_cache == "HIT"


def test_endless_heads_take_no_memory(proxies: dict[str, Proxy]) -> None:
    """2. 20 connections each sending 50 MiB of a head that never ends: each is answered 431
    and closed after the guard's limit, and the proxy grows less than 8 MiB (mitmproxy alone
    buffered them all: 400 MiB took a process from 66 to 834 MiB)."""
    proxy = proxies["lane"]
    assert proxy.proc is not None
    fetch(proxy.url + "/warm-up")
    line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    chunk = line * 64
    results: list[tuple[int, bytes]] = []

    def flood(limit: int = 50 * 1024 * 1024) -> None:
        sent, answer = 0, b""
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
            try:
                s.sendall(b"GET /flood HTTP/1.1\r\nHost: x\r\n")
                while sent < limit:
                    s.sendall(chunk)
                    sent += len(chunk)
            except OSError:
                pass
            with contextlib.suppress(OSError):
                answer = s.recv(4096)
        results.append((sent, answer))

    # A first round, so that what 20 connections at once cost the process anyway (its
    # allocator's arenas, the sockets' buffers: 6 to 9 MiB on Python 3.13) is in the baseline.
    warm = [threading.Thread(target=flood, args=(1024 * 1024,)) for _ in range(20)]
    for t in warm:
        t.start()
    for t in warm:
        t.join(30)
    results.clear()
    base = rss_kib(proxy.proc.pid)
    peak = [base]
    sending = threading.Event()
    sending.set()

    def sample() -> None:
        while sending.is_set():
            peak[0] = max(peak[0], rss_kib(proxy.proc.pid))  # type: ignore[union-attr]
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    floods = [threading.Thread(target=flood) for _ in range(20)]
    for t in floods:
        t.start()
    for t in floods:
        t.join(60)
    sending.clear()
    sampler.join()
    assert len(results) == 20
    for sent, answer in results:
        assert sent < 8 * 1024 * 1024, sent  # refused long before the 50 MiB
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:80]
    assert any(answer.startswith(b"HTTP/1.1 431 ") for _, answer in results)
    growth_mib = (peak[0] - base) / 1024
    print(f"RSS {base / 1024:.1f} MiB, peak +{growth_mib:.2f} MiB; sent per connection before "
          f"the refusal: {sorted(sent for sent, _ in results)[len(results) // 2] / 1024:.0f} KiB "
          "(median)")
    assert growth_mib < 8, growth_mib
    assert fetch(proxy.url + "/after-flood").status == 404  # the origin's: still serving
