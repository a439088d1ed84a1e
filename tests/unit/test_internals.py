"""The mitmproxy internals behind caching_proxy.mitm.internals: present as expected, and working through
a real proxy (an in-process mitmproxy in reverse mode, real sockets). A failure here after a
mitmproxy upgrade names the internal that changed; see the module's docstring."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from mitmproxy import http

from caching_proxy.mitm import internals
from support.lean_proxy import free_port, lean_proxy


def test_every_internal_is_as_expected() -> None:
    assert internals.problems() == [], "mitmproxy changed:\n" + "\n".join(internals.problems())


class Flows:
    """Keeps each flow the proxy sees and says when its request went to the origin."""

    def __init__(self) -> None:
        self.flows: list[http.HTTPFlow] = []
        self.errors: list[str] = []

    def request(self, flow: http.HTTPFlow) -> None:
        self.flows.append(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        assert flow.error is not None
        self.errors.append(flow.error.msg)


async def through_proxy(origin_port: int, scenario: Callable[[Any, int, Flows], Awaitable[None]],
                        ) -> Flows:
    """Run `scenario(master, proxy_port, flows)` against a lean proxy in reverse mode to the
    origin on `origin_port`."""
    flows = Flows()
    await lean_proxy(f"http://127.0.0.1:{origin_port}",
                     lambda master, port: scenario(master, port, flows), flows)
    return flows


async def get(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: origin\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


def test_cancelling_the_origin_connections_fails_the_flow() -> None:
    async def main() -> Flows:
        asked = asyncio.Event()

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")  # ...and never answers
            asked.set()
            await reader.read()

        origin = await asyncio.start_server(silent, "127.0.0.1", 0)
        origin_port = origin.sockets[0].getsockname()[1]

        async def scenario(master: Any, port: int, flows: Flows) -> None:
            reader, writer = await get(port, "/hangs")
            await asked.wait()
            client_id = flows.flows[0].client_conn.id
            assert internals.cancel_origin_connections(master, "no such client", "x") == 0
            assert internals.cancel_origin_connections(master, client_id, "origin timeout") == 1
            status = await reader.readline()
            assert status.startswith(b"HTTP/1.1 502 "), status
            writer.close()

        try:
            return await through_proxy(origin_port, scenario)
        finally:
            origin.close()

    flows = asyncio.run(main())
    assert len(flows.errors) == 1, flows.errors  # the error hook ran for the cut flow


@pytest.fixture
def page_restored() -> Any:
    module = importlib.import_module(internals.ERROR_PAGE_MODULE)
    original = getattr(module, internals.ERROR_PAGE_FUNCTION)
    yield
    setattr(module, internals.ERROR_PAGE_FUNCTION, original)


def test_the_installed_error_page_is_what_clients_get(page_restored: None) -> None:
    seen: list[tuple[int, str]] = []

    def page(status_code: int, message: str = "") -> bytes:
        seen.append((status_code, message))
        return b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 8\r\nConnection: close\r\n\r\nour page"

    assert internals.install_error_page(page)
    assert internals.install_error_page(page)  # idempotent

    async def scenario(master: Any, port: int, flows: Flows) -> None:
        reader, writer = await get(port, "/refused")
        answer = await reader.read()
        writer.close()
        assert answer.endswith(b"\r\n\r\nour page"), answer

    flows = asyncio.run(through_proxy(free_port(), scenario))  # nothing listens there: refused
    assert len(seen) == 1 and seen[0][0] == 502
    # error_page.answer_instead relies on it: the page is given the flow's own error message.
    assert [message for _, message in seen] == flows.errors


def test_a_missing_internal_is_named_and_turns_its_feature_off(
        monkeypatch: pytest.MonkeyPatch, page_restored: None) -> None:
    module = importlib.import_module(internals.ERROR_PAGE_MODULE)
    monkeypatch.delattr(module, internals.ERROR_PAGE_FUNCTION)
    def page(status_code: int, message: str = "") -> bytes:
        return b""

    assert not internals.install_error_page(page)
    assert not hasattr(module, internals.ERROR_PAGE_FUNCTION)
    assert any("make_error_response is gone" in p for p in internals.problems())


class ClientProbe:
    """Notes the bytes-arrived calls of every client connection (client_limits.py's adapters)."""

    def __init__(self, master: Any) -> None:
        self.master = master
        self.reads = 0
        self.watching: list[bool] = []
        self.clients: list[str] = []

    def client_connected(self, client: Any) -> None:
        self.clients.append(client.id)
        self.watching.append(internals.watch_client_reads(self.master, client.id, self.note))

    def note(self) -> None:
        self.reads += 1


def test_client_reads_are_noted_and_a_client_can_be_closed_with_last_words() -> None:
    # Relies on Proxyserver.connections, ConnectionHandler.client and .transports, and the
    # client's ConnectionIO: reader (read by handle_connection after client_connected), writer,
    # handler (cancelled: the connection closes).
    probes: list[ClientProbe] = []

    async def scenario(master: Any, port: int, flows: Flows) -> None:
        probe = ClientProbe(master)
        probes.append(probe)
        master.addons.add(probe)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /a HTTP/1.1\r\n")
        await writer.drain()
        while probe.reads < 1:
            await asyncio.sleep(0.01)
        writer.write(b"Host: origin\r\n")  # a head not finished
        await writer.drain()
        while probe.reads < 2:
            await asyncio.sleep(0.01)
        client_id = probe.clients[-1]
        assert internals.client_unsent_bytes(master, client_id) == 0
        assert internals.client_unsent_bytes(master, "no such client") == 0
        assert not internals.close_client(master, "no such client", "test")
        assert internals.close_client(master, client_id, "test", b"last words")
        assert await reader.read() == b"last words"  # then the close
        writer.close()

    asyncio.run(through_proxy(free_port(), scenario))
    assert probes[0].watching == [True] and probes[0].reads == 2
