"""SIGTERM drains (mitm/drain.py): the listener closes, idle kept-alive connections close at once,
requests in flight finish, then the process exits 0; past --drain-timeout the rest are cut and
nothing half-fetched is stored. With --workers the supervisor passes it on."""

from __future__ import annotations

import signal
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import h2.connection
import h2.events

from support.certs import make_certs
from support.client import fetch
from support.origin import Origin, Reply, Seen
from support.polling import wait_until
from support.proxy import Proxy, cli
from support.scripted_origin import RawClient, get
from support.sockets import listening_sockets


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def terminate(proxy: Proxy) -> None:
    assert proxy.proc is not None
    proxy.proc.send_signal(signal.SIGTERM)


def exit_code(proxy: Proxy, timeout: float = 20) -> int:
    assert proxy.proc is not None
    return proxy.proc.wait(timeout)


def test_sigterm_finishes_a_slow_miss_and_closes_idle_connections(
        origin: Origin, tmp_path: Path) -> None:
    origin.route("/fast", 200, [("Cache-Control", "max-age=60")], b"fast")
    origin.route("/slow", handler=lambda _: Reply(
        200, [("Cache-Control", "max-age=60")], b"slow answer", delay=1.5))
    with Proxy(origin.url, tmp_path / "cache") as proxy:
        idle = RawClient(proxy.port)
        assert idle.exchange(get("/fast"))[-1].status == 200  # kept alive, then idle
        busy = RawClient(proxy.port)
        busy.send(get("/slow"))
        wait_until(lambda: origin.count("/slow") == 1, what="the slow request at the origin")
        terminate(proxy)
        assert idle.closed(wait=5)  # at once, not after the slow answer
        wait_until(lambda: refused(proxy.port), what="the listener closed")
        answer = busy.read_response()[-1]
        assert (answer.status, answer.body) == (200, b"slow answer")
        assert answer.header("Connection") == "close"
        assert busy.closed()
        assert exit_code(proxy) == 0
        assert proxy.logged("1 connection in flight")
    # What the drain let finish was stored whole.
    listing = cli("--list", "--json", "--cache-dir", str(tmp_path / "cache"))
    assert "/slow" in listing.stdout and "/fast" in listing.stdout


def test_a_large_body_being_streamed_is_sent_whole(origin: Origin, tmp_path: Path) -> None:
    body = bytes(range(256)) * 32 * 1024  # 8 MiB: past --max-object-size, so streamed
    origin.route("/big", 200, [("Content-Type", "application/octet-stream")], body)
    with Proxy(origin.url, tmp_path / "cache", "--max-object-size", "1m") as proxy:
        client = RawClient(proxy.port)
        client.send(get("/big"))
        head = client.read_head()  # the rest waits in the sockets: the client reads slowly
        assert head.status == 200
        terminate(proxy)
        wait_until(lambda: refused(proxy.port), what="the listener closed")
        length = int(head.header("Content-Length") or 0)
        received = client.buf
        while len(received) < length:
            chunk = client.sock.recv(1 << 16)
            assert chunk, f"cut after {len(received)} of {length} bytes"
            received += chunk
        assert received == body
        assert exit_code(proxy) == 0


class HeldBody:
    """A body of which the origin sends half, then waits for `release` (no sleep: an event)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def parts(self) -> Iterator[bytes]:
        yield b"a" * 50_000
        self.release.wait(30)
        yield b"b" * 50_000

    def reply(self, _: Seen) -> Reply:
        return Reply(200, [("Cache-Control", "max-age=600"), ("Content-Length", "100000")],
                     parts=self.parts())


def test_past_the_drain_timeout_the_rest_is_cut_and_nothing_half_stored(
        origin: Origin, tmp_path: Path) -> None:
    held = HeldBody()
    origin.route("/held", handler=held.reply)
    cache = tmp_path / "cache"
    try:
        with Proxy(origin.url, cache, "--drain-timeout", "1") as proxy:
            client = RawClient(proxy.port)
            client.send(get("/held"))
            wait_until(lambda: origin.count("/held") == 1, what="the fill at the origin")
            terminate(proxy)
            assert exit_code(proxy) == 0
            assert proxy.logged("drain timeout (1 s): cutting 1 connection")
            assert client.closed()  # cut: not a word of a half-fetched answer
    finally:
        held.release.set()
    listing = cli("--list", "--json", "--cache-dir", str(cache))
    assert listing.returncode == 0 and "/held" not in listing.stdout
    origin.route("/held", 200, [("Cache-Control", "max-age=600")], b"whole")
    with Proxy(origin.url, cache) as proxy:
        again = fetch(proxy.url + "/held")
    assert (again.x_cache, again.body) == ("MISS", b"whole")


def test_a_second_sigterm_drains_on_and_sigint_stops_at_once(origin: Origin,
                                                              tmp_path: Path) -> None:
    held = HeldBody()
    origin.route("/held", handler=held.reply)
    try:
        with Proxy(origin.url, tmp_path / "cache", "--drain-timeout", "600") as proxy:
            client = RawClient(proxy.port)
            client.send(get("/held"))
            wait_until(lambda: origin.count("/held") == 1, what="the fill at the origin")
            terminate(proxy)
            assert proxy.logged("1 connection in flight, waiting up to 600 s")
            terminate(proxy)  # as systemd's KillMode=control-group sends it to every process
            assert proxy.logged("already stopping (SIGINT stops at once)")
            held.release.set()
            answer = client.read_response()[-1]
            assert (answer.status, len(answer.body)) == (200, 100_000)
            assert exit_code(proxy) == 0
        held = HeldBody()
        origin.route("/held", handler=held.reply)
        with Proxy(origin.url, tmp_path / "cache", "--drain-timeout", "600") as proxy:
            client = RawClient(proxy.port)
            client.send(get("/held?2"))
            wait_until(lambda: origin.count("/held?2") == 1, what="the fill at the origin")
            terminate(proxy)
            assert proxy.logged("1 connection in flight, waiting up to 600 s")
            assert proxy.proc is not None
            proxy.proc.send_signal(signal.SIGINT)
            assert exit_code(proxy) == 0
            assert client.closed()
    finally:
        held.release.set()


def test_workers_drain_when_the_supervisor_gets_sigterm(origin: Origin, tmp_path: Path) -> None:
    origin.route("/slow", handler=lambda _: Reply(200, [], b"slow answer", delay=1.5))
    with Proxy(origin.url, tmp_path / "cache", "--workers", "2") as proxy:
        wait_until(lambda: listening_sockets(proxy.port) == 2, timeout=20,
                   what="two workers listening")
        busy = RawClient(proxy.port)
        busy.send(get("/slow"))
        wait_until(lambda: origin.count("/slow") == 1, what="the slow request at the origin")
        terminate(proxy)
        answer = busy.read_response()[-1]
        assert (answer.status, answer.body) == (200, b"slow answer")
        assert exit_code(proxy) == 0
        assert listening_sockets(proxy.port) == 0


def test_an_http2_request_in_flight_finishes_and_its_connection_closes(
        origin: Origin, tmp_path: Path) -> None:
    origin.route("/slow", handler=lambda _: Reply(200, [], b"slow over h2", delay=1.5))
    certs = make_certs(tmp_path / "certs")
    context = ssl.create_default_context(cafile=str(certs.ca))
    context.set_alpn_protocols(["h2"])
    with Proxy(origin.url, tmp_path / "cache", "--tls-cert", str(certs.cert), "--tls-key",
               str(certs.key)) as proxy, \
            socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.selected_alpn_protocol() == "h2"
        conn = h2.connection.H2Connection()
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "GET"), (":path", "/slow"), (":scheme", "https"),
                              (":authority", "localhost")], end_stream=True)
        tls.sendall(conn.data_to_send())
        wait_until(lambda: origin.count("/slow") == 1, what="the slow request at the origin")
        terminate(proxy)
        status, body, ended = 0, b"", False
        while True:
            try:
                data = tls.recv(65536)
            except (ConnectionResetError, ssl.SSLEOFError):
                data = b""
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.StreamEnded):
                    ended = True
            tls.sendall(conn.data_to_send())
        assert (status, body, ended) == (200, b"slow over h2", True)
        assert exit_code(proxy) == 0
