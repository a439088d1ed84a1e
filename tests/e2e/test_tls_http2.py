"""Clients over TLS and HTTP/2 (issue 13, item 5): --tls-cert/--tls-key serve HTTPS on --port,
HTTP/2 by ALPN and HTTP/1.1 otherwise, against a certificate the test makes, with a real proxy
process, a real counting origin and a real HTTP/2 client (httpx with h2)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import h2.connection
import h2.events
import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from support.certs import Certs, make_certs
from support.client import fetch
from support.origin import Origin, Reply
from support.proxy import Proxy, cli


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def trust(certs: Certs) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certs.ca))


@pytest.fixture
def tls_proxy(origin: Origin, tmp_path: Path, certs: Certs) -> Iterator[Proxy]:
    with Proxy(origin.url, tmp_path / "cache", "--tls-cert", str(certs.cert), "--tls-key",
               str(certs.key), "--max-object-size", "1m") as p:
        yield p


def https(proxy: Proxy, path: str) -> str:
    return f"https://127.0.0.1:{proxy.port}{path}"


@pytest.fixture
def h2_client(certs: Certs) -> Iterator[httpx.Client]:
    with httpx.Client(http2=True, verify=trust(certs), timeout=20) as client:
        yield client


def test_over_http2_a_miss_then_a_hit(origin: Origin, tls_proxy: Proxy,
                                      h2_client: httpx.Client) -> None:
    origin.route("/h2", 200, [("Cache-Control", "max-age=600")], b"over h2")
    first = h2_client.get(https(tls_proxy, "/h2"))
    second = h2_client.get(https(tls_proxy, "/h2"))
    assert first.http_version == second.http_version == "HTTP/2"
    assert first.content == second.content == b"over h2"
    assert first.headers["x-cache"] == "MISS"
    assert first.headers["cache-status"].startswith("caching-proxy; fwd=uri-miss")
    assert second.headers["x-cache"] == "HIT"
    assert second.headers["cache-status"].startswith("caching-proxy; hit; ttl=")
    assert origin.count("/h2") == 1
    assert f"listening on https://127.0.0.1:{tls_proxy.port}" in tls_proxy.output


def test_concurrent_http2_streams_for_one_url_ask_the_origin_once(
        origin: Origin, tls_proxy: Proxy, certs: Certs) -> None:
    origin.route("/together", handler=lambda _: Reply(
        200, [("Cache-Control", "max-age=600")], b"one fetch", delay=1.0))

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(http2=True, verify=trust(certs), timeout=20) as client:
            # One connection first, so that the streams below share it.
            await client.get(https(tls_proxy, "/warm-up"))
            return list(await asyncio.gather(
                *(client.get(https(tls_proxy, "/together")) for _ in range(6))))

    answers = asyncio.run(main())
    assert {a.http_version for a in answers} == {"HTTP/2"}
    assert [a.content for a in answers] == [b"one fetch"] * 6
    assert origin.count("/together") == 1
    assert sorted(a.headers["x-cache"] for a in answers) == ["HIT"] * 5 + ["MISS"]
    assert sum("collapsed" in a.headers["cache-status"] for a in answers) == 5


def test_purge_over_http2_from_loopback(origin: Origin, tls_proxy: Proxy,
                                        h2_client: httpx.Client) -> None:
    origin.route("/p", 200, [("Cache-Control", "max-age=600")], b"to purge")
    h2_client.get(https(tls_proxy, "/p"))
    assert h2_client.get(https(tls_proxy, "/p")).headers["x-cache"] == "HIT"
    purged = h2_client.request("PURGE", https(tls_proxy, "/p"))
    assert purged.http_version == "HTTP/2" and purged.status_code == 200, purged.text
    again = h2_client.get(https(tls_proxy, "/p"))
    assert again.headers["x-cache"] == "MISS" and again.content == b"to purge"
    assert origin.count("/p") == 2


def test_a_large_streamed_body_arrives_intact_over_http2(origin: Origin, tls_proxy: Proxy,
                                                         h2_client: httpx.Client) -> None:
    body = bytes(range(256)) * (3 * 4096 + 7)  # 3 MiB and a bit, over --max-object-size 1m
    origin.route("/big", 200, [("Cache-Control", "max-age=600")], body)
    with h2_client.stream("GET", https(tls_proxy, "/big")) as answer:
        got = b"".join(answer.iter_bytes())
        assert answer.http_version == "HTTP/2"
        assert answer.headers["x-cache"] == "MISS"
        assert "stored" not in answer.headers["cache-status"]
    assert got == body
    assert h2_client.get(https(tls_proxy, "/big")).content == body
    assert origin.count("/big") == 2  # streamed past the limit: not stored


def test_http11_over_tls_works(origin: Origin, tls_proxy: Proxy, certs: Certs) -> None:
    origin.route("/one", 200, [("Cache-Control", "max-age=600")], b"over 1.1")
    with httpx.Client(http2=False, verify=trust(certs), timeout=20) as client:
        first = client.get(https(tls_proxy, "/one"))
        second = client.get(https(tls_proxy, "/one"))
    assert first.http_version == second.http_version == "HTTP/1.1"
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert second.content == b"over 1.1" and origin.count("/one") == 1


@pytest.mark.parametrize(("offered", "chosen"), [
    (["h2", "http/1.1"], "h2"), (["http/1.1", "h2"], "h2"), (["http/1.1"], "http/1.1"),
    (None, None)])
def test_alpn_picks_h2_when_offered(tls_proxy: Proxy, certs: Certs, offered: list[str] | None,
                                    chosen: str | None) -> None:
    context = trust(certs)
    if offered:
        context.set_alpn_protocols(offered)
    with socket.create_connection(("127.0.0.1", tls_proxy.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.selected_alpn_protocol() == chosen
        if chosen != "h2":
            tls.sendall(b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert tls.recv(100).startswith(b"HTTP/1.1 ")


def test_cleartext_on_the_https_port_gets_400(origin: Origin, tls_proxy: Proxy) -> None:
    origin.route("/plain", 200, [], b"never")
    answer = fetch(tls_proxy.url + "/plain")
    assert answer.status == 400 and b"HTTPS port" in answer.body
    assert origin.count("/plain") == 0


def test_bad_certificates_and_keys_exit_2_with_one_line(certs: Certs, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(serialization.load_pem_private_key(certs.key.read_bytes(), None)
                          .private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(b"secret")))
    cases = [
        (["--tls-cert", str(certs.cert)], "--tls-cert and --tls-key must be given together"),
        (["--tls-key", str(certs.key)], "--tls-cert and --tls-key must be given together"),
        (["--tls-cert", str(tmp_path / "none.pem"), "--tls-key", str(certs.key)],
         "cannot read TLS certificate"),
        (["--tls-cert", str(garbage), "--tls-key", str(certs.key)], "invalid TLS certificate"),
        (["--tls-cert", str(certs.cert), "--tls-key", str(garbage)], "invalid TLS key"),
        (["--tls-cert", str(certs.cert), "--tls-key", str(encrypted)], "is encrypted"),
        (["--tls-cert", str(certs.cert), "--tls-key", str(certs.other_key)], "does not match"),
        (["--tls-cert", str(certs.key), "--tls-key", str(certs.key)], "invalid TLS certificate"),
        (["--set", f"cache_tls_cert={certs.cert}"],
         "cache_tls_cert and cache_tls_key must be given together"),
    ]
    for args, message in cases:
        result = cli(*args, "--origin", "http://127.0.0.1:9", "--cache-dir", str(tmp_path / "c"))
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, result.stderr)



def h2_get_then_wait_for_close(proxy: Proxy, certs: Certs, path: str) -> tuple[int, bytes]:
    """One HTTP/2 GET on a new connection (h2 by hand, to see the connection itself), then read
    until the proxy closes the connection; the status and body. Fails if it stays open 10 s."""
    context = trust(certs)
    context.set_alpn_protocols(["h2"])
    conn = h2.connection.H2Connection()
    conn.initiate_connection()
    status, body = 0, b""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.selected_alpn_protocol() == "h2"
        conn.send_headers(1, [(":method", "GET"), (":path", path), (":scheme", "https"),
                              (":authority", "localhost")], end_stream=True)
        tls.sendall(conn.data_to_send())
        while True:
            try:
                data = tls.recv(65536)
            except (ConnectionResetError, ssl.SSLEOFError):
                data = b""
            if not data:
                return status, body
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
            tls.sendall(conn.data_to_send())


def test_client_timeouts_apply_over_tls_and_http2(origin: Origin, tmp_path: Path,
                                                  certs: Certs) -> None:
    origin.route("/k", 200, [("Cache-Control", "max-age=600")], b"kept")
    with Proxy(origin.url, tmp_path / "cache", "--tls-cert", str(certs.cert), "--tls-key",
               str(certs.key), "--keepalive-timeout", "1", "--header-timeout", "1") as proxy:
        # An HTTP/2 connection idle after its answer is closed at the keep-alive timeout.
        assert h2_get_then_wait_for_close(proxy, certs, "/k") == (200, b"kept")
        # A TLS handshake that stalls is closed at the header timeout (no 408: not in TLS).
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as stalled:
            stalled.sendall(b"\x16\x03\x01\x00")
            assert stalled.recv(100) == b""
