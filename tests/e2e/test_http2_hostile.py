"""Hostile and failing exchanges with HTTP/2 clients (http2_server.py), end to end: a real proxy
process with --tls-cert, a real counting origin, TLS sockets speaking h2 frames built by hand
(hyperframe), httpx with h2. A header block (HEADERS, then CONTINUATION) past 72 KiB, or a frame
announced past the frame size, is refused as the frame header arrives (GOAWAY, closed; 20
connections flooding 50 MiB each leave the RSS flat); a header list decoding past 64 KiB ends
the connection; with the origin failing, HTTP/2 clients get what HTTP/1 clients get (the stale
response, this proxy's 502 and 504); an origin's `TE: trailers, deflate` must not reach them.
"""

from __future__ import annotations

import re
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import httpx
import pytest
from hpack.hpack import encode_integer
from hyperframe.frame import ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame, SettingsFrame

from support.certs import Certs, make_certs
from support.load import rss_kib
from support.origin import Origin, Reply
from support.proxy import Proxy

KiB = 1024
MiB = 1024 * KiB
ENHANCE_YOUR_CALM = h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
FRAME_SIZE_ERROR = h2.errors.ErrorCodes.FRAME_SIZE_ERROR
CLOSED = (OSError, ssl.SSLError)  # what a send or read on a connection the proxy closed raises


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def tls_args(certs: Certs) -> list[str]:
    return ["--tls-cert", str(certs.cert), "--tls-key", str(certs.key)]


@pytest.fixture
def tls_proxy(origin: Origin, tmp_path: Path, certs: Certs) -> Iterator[Proxy]:
    with Proxy(origin.url, tmp_path / "cache", *tls_args(certs)) as p:
        yield p


def trust(certs: Certs) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certs.ca))


# -- h2 by hand -------------------------------------------------------------------------------

@dataclass
class Peer:
    """What a raw h2 connection got from the proxy."""

    tls: ssl.SSLSocket
    buffer: bytes = b""
    goaway: list[int] = field(default_factory=list)  # error codes, in order
    max_frame_size: int = 16384  # the proxy's SETTINGS_MAX_FRAME_SIZE
    settings: bool = False  # the proxy's SETTINGS came
    closed: bool = False

    def read(self, timeout: float) -> None:
        """Take in what arrives within `timeout` seconds, or until the proxy ends it."""
        deadline = time.monotonic() + timeout
        while not self.ended:
            left = deadline - time.monotonic()
            if not self.tls.pending() and not select.select([self.tls], [], [], max(left, 0))[0]:
                return
            try:
                data = self.tls.recv(65536)
            except TimeoutError:
                return
            except CLOSED:
                data = b""
            self.closed = not data
            self.buffer += data
            self._parse()

    def _parse(self) -> None:
        while len(self.buffer) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
            if len(self.buffer) < 9 + length:
                break
            frame.parse_body(memoryview(self.buffer[9:9 + length]))
            self.buffer = self.buffer[9 + length:]
            if isinstance(frame, GoAwayFrame):
                self.goaway.append(frame.error_code)
            elif isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                self.settings = True
                self.max_frame_size = frame.settings.get(SettingsFrame.MAX_FRAME_SIZE,
                                                         self.max_frame_size)

    def send(self, data: bytes) -> bool:
        """Whether it was sent: False once the proxy closed the connection. Raises on a timeout
        (the proxy neither reads nor closes: a failure, not an end)."""
        try:
            if not self.closed:
                self.tls.sendall(data)
        except TimeoutError:
            raise
        except CLOSED:
            self.closed = True
        return not self.closed

    @property
    def ended(self) -> bool:
        return self.closed or bool(self.goaway)


@contextmanager
def tls_h2(proxy: Proxy, certs: Certs) -> Iterator[ssl.SSLSocket]:
    context = trust(certs)
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.selected_alpn_protocol() == "h2"
        yield tls


@contextmanager
def h2_peer(proxy: Proxy, certs: Certs) -> Iterator[Peer]:
    """A connection that negotiated h2, sent its preface and SETTINGS, read the proxy's."""
    with tls_h2(proxy, certs) as tls:
        client = h2.connection.H2Connection()
        client.initiate_connection()
        tls.sendall(client.data_to_send())
        peer = Peer(tls)
        deadline = time.monotonic() + 10
        while not peer.settings and not peer.closed and time.monotonic() < deadline:
            peer.read(0.05)
        yield peer


def request_block(path: str = "/flood") -> bytes:
    """An HPACK block for GET `path` made of static-table references and one literal, so that
    what follows it does not depend on a dynamic table."""
    authority = b"localhost"
    return (b"\x82\x87"  # :method GET, :scheme https
            + b"\x04" + encode_integer(len(path), 7) + path.encode()  # :path, not indexed
            + b"\x01" + encode_integer(len(authority), 7) + authority)  # :authority


def headers_frame(block: bytes, *flags: str) -> bytes:
    return bytes(HeadersFrame(1, data=block, flags=flags).serialize())


def continuation(size: int) -> bytes:
    # Never decoded (no END_HEADERS ever comes): the bytes need not be HPACK.
    return bytes(ContinuationFrame(1, data=b"a" * size).serialize())


@dataclass
class Flood:
    sent: int = 0  # header block bytes sent before the proxy ended the connection
    goaway: list[int] = field(default_factory=list)  # error codes, in order
    ended: bool = False


def continuation_flood(proxy: Proxy, certs: Certs, *, frame: int = 0, total: int = 50 * MiB,
                       lockstep: float = 0.0, seconds: float = 30.0) -> Flood:
    """One connection: HEADERS without END_HEADERS, then CONTINUATION frames of `frame` bytes
    (0: the largest the proxy allows) until `total` bytes, `seconds` or the proxy ended the
    connection. `lockstep`: wait that long for an answer after each frame, so that `sent` is
    no more than one frame past what the proxy had read when it answered."""
    started = time.monotonic()
    result = Flood()
    with h2_peer(proxy, certs) as peer:
        first = request_block()
        size = frame or peer.max_frame_size
        piece = continuation(size)
        if peer.send(headers_frame(first, "END_STREAM")):
            result.sent = len(first)
        while result.sent < total and time.monotonic() - started < seconds:
            peer.read(lockstep)
            if peer.ended or not peer.send(piece):
                break
            result.sent += size
        peer.read(5)  # until the proxy ends the connection, if it has not yet
        result.goaway, result.ended = peer.goaway, peer.ended
    return result


def h2_get(proxy: Proxy, certs: Certs, path: str, http2: bool = True) -> httpx.Response:
    """GET on a new connection, HTTP/2 (or HTTP/1.1) by ALPN."""
    with httpx.Client(http2=http2, verify=trust(certs), timeout=20) as client:
        answer = client.get(f"https://127.0.0.1:{proxy.port}{path}")
    assert answer.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    return answer


def strict_h2_get(proxy: Proxy, certs: Certs, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    """GET on a new connection with h2's own client, which checks the response's fields as RFC
    9113 8.2.2 requires and browsers do (httpx turns that off): a TE other than "trailers", or
    any connection-specific field, fails it. The status, fields and body."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":path", path), (":scheme", "https"),
                          (":authority", "localhost")], end_stream=True)
    status, fields, body = 0, {}, b""
    with tls_h2(proxy, certs) as tls:
        tls.sendall(conn.data_to_send())
        while True:
            data = tls.recv(65536)  # TimeoutError after 10 s without a byte
            assert data, "the proxy closed the connection"
            for event in conn.receive_data(data):  # raises on a field h2 refuses
                if isinstance(event, h2.events.ResponseReceived):
                    fields = dict(event.headers)
                    status = int(fields[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.StreamReset | h2.events.ConnectionTerminated):
                    raise AssertionError(f"the proxy ended the exchange: {event}")
                elif isinstance(event, h2.events.StreamEnded):
                    return status, fields, body
            tls.sendall(conn.data_to_send())


def assert_still_serves(proxy: Proxy, certs: Certs, origin: Origin) -> None:
    origin.route("/after", 200, [("Cache-Control", "max-age=600")], b"still here")
    answer = h2_get(proxy, certs, "/after")
    assert (answer.status_code, answer.content) == (200, b"still here")
    assert "Traceback" not in proxy.output, proxy.output


# -- header blocks ----------------------------------------------------------------------------

def test_a_continuation_flood_gets_goaway_before_100_kib(
        origin: Origin, tls_proxy: Proxy, certs: Certs) -> None:
    flood = continuation_flood(tls_proxy, certs, frame=8 * KiB, total=4 * MiB, lockstep=0.25)
    print(f"\nheader block bytes sent before the proxy's GOAWAY: {flood.sent}")
    assert flood.ended and flood.goaway, flood
    assert flood.goaway[0] in (ENHANCE_YOUR_CALM, h2.errors.ErrorCodes.PROTOCOL_ERROR), flood
    # The bound is 72 KiB; the lockstep lets at most one 8 KiB frame more through.
    assert 64 * KiB < flood.sent <= 100 * KiB, flood
    assert origin.seen == []
    assert_still_serves(tls_proxy, certs, origin)


def twenty_floods(proxy: Proxy, certs: Certs, total: int,
                  meanwhile: Callable[[], object] = lambda: None) -> list[Flood]:
    """20 connections at once, each flooding CONTINUATION frames of 16 KiB (h2's default frame
    size; the proxy allows 128 KiB, which the bound refuses at the first CONTINUATION);
    `meanwhile()` is called every 10 ms until all have ended."""
    with ThreadPoolExecutor(20) as pool:
        floods = [pool.submit(continuation_flood, proxy, certs, frame=16 * KiB, total=total)
                  for _ in range(20)]
        while not all(flood.done() for flood in floods):
            meanwhile()
            time.sleep(0.01)
        return [flood.result() for flood in floods]


def test_twenty_continuation_floods_leave_the_proxy_rss_flat(
        origin: Origin, tls_proxy: Proxy, certs: Certs) -> None:
    assert tls_proxy.proc is not None
    pid = tls_proxy.proc.pid
    h2_get(tls_proxy, certs, "/warm-up")
    # Twenty connections read at full speed cost the proxy some 7 MiB once (asyncio's 256 KiB
    # reads, TLS), whatever they send (a PRIORITY flood costs the same): taken first, with 1 MiB
    # floods, so that what is measured is what 50 MiB each adds. Without the bound each held up
    # to 64 frames (1 MiB): measured, 29 MiB more here and 20 MiB more below.
    twenty_floods(tls_proxy, certs, total=1 * MiB)
    before = rss_kib(pid)
    peak = [before]
    floods = twenty_floods(tls_proxy, certs, 50 * MiB, lambda: peak.append(rss_kib(pid)))
    peak.append(rss_kib(pid))
    print(f"\nRSS before {before} KiB, peak {max(peak)} KiB, after {peak[-1]} KiB; sent per "
          f"connection (KiB): {sorted(f.sent // KiB for f in floods)}")
    assert len(floods) == 20
    # Ended long before 50 MiB. Sent is not read: the kernels' socket buffers take what the
    # proxy never reads, and its close can reset the connection before the GOAWAY is read.
    assert all(f.ended and f.sent < 16 * MiB for f in floods), floods
    assert all(f.goaway[:1] in ([], [ENHANCE_YOUR_CALM]) for f in floods), floods
    assert max(peak) - before < 8 * 1024, (before, max(peak))
    assert [seen.path for seen in origin.seen] == ["/warm-up"]
    assert_still_serves(tls_proxy, certs, origin)


def test_a_frame_announcing_more_than_the_frame_size_is_refused_at_its_header(
        origin: Origin, tls_proxy: Proxy, certs: Certs) -> None:
    announced = (1 << 24) - 1  # 16 MiB, which h2 alone would buffer whole before refusing
    for name, first, header in (
        # A header block announced in one frame: the header block bound.
        ("headers", b"", HeadersFrame(1, flags=["END_STREAM"])),
        # A request body frame after a complete request head: the frame size.
        ("data", headers_frame(request_block("/upload"), "END_HEADERS"), DataFrame(1)),
    ):
        with h2_peer(tls_proxy, certs) as peer:
            wire = bytearray(header.serialize())
            wire[:3] = announced.to_bytes(3, "big")
            assert peer.send(first + bytes(wire))
            sent = 0
            while not peer.ended and sent < 1 * MiB and peer.send(b"\0" * (8 * KiB)):
                sent += 8 * KiB
                peer.read(0.25)
            peer.read(5)
            print(f"\n{name}: {sent} body bytes sent before the proxy's GOAWAY {peer.goaway}")
            expected = ENHANCE_YOUR_CALM if name == "headers" else FRAME_SIZE_ERROR
            assert peer.goaway and peer.goaway[0] == expected, (name, peer)
            assert sent <= 16 * KiB, (name, sent)
    assert origin.seen == []
    assert_still_serves(tls_proxy, certs, origin)


def test_a_header_list_decoding_past_64_kib_ends_the_connection(
        origin: Origin, tls_proxy: Proxy, certs: Certs) -> None:
    origin.route("/big-list", 200, [], b"never")
    value = b"v" * 4000
    block = (request_block("/big-list")
             # x-big: 4000 bytes, added to the dynamic table (its entry 62)...
             + b"\x40" + encode_integer(5, 7) + b"x-big" + encode_integer(len(value), 7) + value
             # ...then named 20 times more, one byte each: 4 KiB sent, 80 KiB decoded.
             + b"\xbe" * 20)
    assert len(block) < 8 * KiB
    with h2_peer(tls_proxy, certs) as peer:
        assert peer.send(headers_frame(block, "END_HEADERS", "END_STREAM"))
        peer.read(10)
        assert peer.goaway and peer.goaway[0] == ENHANCE_YOUR_CALM, peer
    assert origin.count("/big-list") == 0
    assert_still_serves(tls_proxy, certs, origin)


# -- origin failures --------------------------------------------------------------------------

def marks(answer: httpx.Response) -> tuple[int, bytes, str | None, str]:
    """What a client is told: status, body, X-Cache, Cache-Status (its ttl aside, which may
    move by a second between two requests)."""
    status = re.sub(r"ttl=-?\d+", "ttl=N", answer.headers.get("cache-status", ""))
    return answer.status_code, answer.content, answer.headers.get("x-cache"), status


def test_with_the_origin_down_http2_clients_get_what_http1_clients_get(
        tmp_path: Path, certs: Certs) -> None:
    origin = Origin()
    origin.route("/kept", 200, [("Cache-Control", "max-age=1"), ("Content-Type", "text/x-kept")],
                 b"the stored body")
    with Proxy(origin.url, tmp_path / "cache", *tls_args(certs)) as proxy:
        # Stored over its own connection, closed, so that no kept-alive origin connection is
        # left to answer after the origin stops.
        stored = h2_get(proxy, certs, "/kept")
        assert stored.headers["x-cache"] == "MISS"
        time.sleep(2.1)
        origin.stop()
        over_h2, over_h1 = h2_get(proxy, certs, "/kept"), h2_get(proxy, certs, "/kept", False)
        missing_h2 = h2_get(proxy, certs, "/never-stored")
        missing_h1 = h2_get(proxy, certs, "/never-stored", False)
        # h2's own client refuses a connection-specific field (the Connection: close an
        # HTTP/1 client gets with it) in the answer.
        strict = strict_h2_get(proxy, certs, "/kept")
        output = proxy.output
    assert marks(over_h2) == marks(over_h1) == (
        200, b"the stored body", "HIT", "caching-proxy; fwd=stale; ttl=N; detail=stale-on-error")
    assert over_h2.headers["content-type"] == over_h1.headers["content-type"] == "text/x-kept"
    assert "connection" not in over_h2.headers
    assert (strict[0], strict[2], strict[1][b"x-cache"]) == (200, b"the stored body", b"HIT")
    # Nothing stored: this proxy's own 502, not mitmproxy's HTML page, over either protocol.
    assert marks(missing_h2) == marks(missing_h1)
    assert marks(missing_h2)[2:] == ("MISS", "caching-proxy; fwd=miss; detail=origin-error")
    assert missing_h2.status_code == 502 and missing_h2.content.startswith(b"502 Bad Gateway")
    assert missing_h2.headers["content-type"] == "text/plain; charset=utf-8"
    assert origin.count("/kept") == 1
    assert "Traceback" not in output, output


def test_an_origin_timeout_gives_http2_clients_the_proxy_504(
        origin: Origin, tmp_path: Path, certs: Certs) -> None:
    origin.route("/slow", handler=lambda _: Reply(200, [], b"too late", delay=3))
    with Proxy(origin.url, tmp_path / "cache", *tls_args(certs), "--first-byte-timeout", "1") as proxy:
        over_h2, over_h1 = h2_get(proxy, certs, "/slow"), h2_get(proxy, certs, "/slow", False)
        output = proxy.output
    assert marks(over_h2) == marks(over_h1)
    assert marks(over_h2)[2:] == ("MISS", "caching-proxy; fwd=miss; detail=origin-timeout")
    assert over_h2.status_code == 504 and over_h2.content.startswith(b"504 Gateway Timeout")
    assert over_h2.headers["content-type"] == "text/plain; charset=utf-8"
    assert "Traceback" not in output, output


def test_an_origin_te_field_does_not_break_the_http2_answer(
        origin: Origin, tls_proxy: Proxy, certs: Certs) -> None:
    origin.route("/te", 200, [("Cache-Control", "max-age=600"),
                              ("TE", "trailers, deflate;q=0.5")], b"with te")
    status, fields, body = strict_h2_get(tls_proxy, certs, "/te")
    assert (status, body) == (200, b"with te")
    assert b"te" not in fields
