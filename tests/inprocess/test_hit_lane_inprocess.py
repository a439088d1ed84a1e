"""The hit lane inside a real lean master (real sockets, a real diskcache folder, a counting
origin): which requests it answers, which it leaves to mitmproxy, and that answers on a
connection keep the order of its requests whichever side gives them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from caching_proxy.bundle import addons
from caching_proxy.cache.lookup import Reuse
from support.lean_proxy import lean_proxy
from support.origin import Origin, Reply

FRESH = [("Cache-Control", "max-age=600"), ("Content-Type", "text/plain")]


@pytest.fixture
def origin() -> Any:
    server = Origin()
    for name in ("a", "b", "c"):
        server.route(f"/{name}", 200, FRESH, f"body of {name}\n".encode())
    server.route("/slow", handler=lambda seen: Reply(200, FRESH, b"slow body\n", delay=0.4))
    yield server
    server.stop()


class Pins:
    """Counts the requests the lane looked at and those it took (Reuse.pin_hit said yes)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.looked: list[str] = []
        self.taken: list[str] = []
        real = Reuse.pin_hit

        def counted(reuse: Reuse, flow: Any) -> Any:
            self.looked.append(flow.request.path)
            found = real(reuse, flow)
            if found is True:
                self.taken.append(flow.request.path)
            return found

        monkeypatch.setattr(Reuse, "pin_hit", counted)


@pytest.fixture
def pins(monkeypatch: pytest.MonkeyPatch) -> Pins:
    return Pins(monkeypatch)


def run(origin: Origin, tmp_path: Path, scenario: Any, **options: Any) -> None:
    more = {"cache_dir": str(tmp_path / "cache"), "cache_access_log": "off", **options}
    asyncio.run(lean_proxy(origin.url, lambda master, port: scenario(port),
                           *addons(marks=False), **more))


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if line)}
    length = int(fields.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), 5) if length else b""
    return status, fields, body


def get(path: str, *extra: str, method: str = "GET", version: str = "HTTP/1.1") -> bytes:
    lines = [f"{method} {path} {version}", "Host: proxy.test", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def warm(port: int, *paths: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for path in paths:
        writer.write(get(path))
        status, fields, _ = await read_response(reader)
        assert (status, fields["x-cache"]) == (200, "MISS")
    writer.close()


def test_a_stored_response_is_answered_by_the_lane_and_a_miss_by_mitmproxy(
        origin: Origin, tmp_path: Path, pins: Pins) -> None:
    async def scenario(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answers = []
        for path in ("/a", "/a", "/b", "/a", "/b"):
            writer.write(get(path))
            answers.append(await read_response(reader))
        writer.close()
        assert [(s, f["x-cache"], b) for s, f, b in answers] == [
            (200, "MISS", b"body of a\n"), (200, "HIT", b"body of a\n"),
            (200, "MISS", b"body of b\n"), (200, "HIT", b"body of a\n"),
            (200, "HIT", b"body of b\n")]

    run(origin, tmp_path, scenario)
    # The lane took the hits, and again after mitmproxy answered a miss on the same connection.
    assert pins.taken == ["/a", "/a", "/b"]
    assert origin.counts == {"/a": 1, "/b": 1}


def test_pipelined_requests_are_answered_in_order_across_the_two_paths(
        origin: Origin, tmp_path: Path, pins: Pins) -> None:
    async def scenario(port: int) -> None:
        await warm(port, "/a", "/b")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # A hit, then a slow miss, then hits, all in one write: the hits after the miss must
        # wait for it (mitmproxy answers them), though the store holds them.
        writer.write(get("/a") + get("/slow") + get("/b") + get("/a"))
        answers = [await read_response(reader) for _ in range(4)]
        assert [b for _, _, b in answers] == [
            b"body of a\n", b"slow body\n", b"body of b\n", b"body of a\n"]
        assert [f["x-cache"] for _, f, _ in answers] == ["HIT", "MISS", "HIT", "HIT"]
        writer.close()

    run(origin, tmp_path, scenario)
    assert pins.taken == ["/a"]


def test_a_hit_sent_while_a_miss_is_in_flight_waits_for_it(
        origin: Origin, tmp_path: Path, pins: Pins) -> None:
    async def scenario(port: int) -> None:
        await warm(port, "/a")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get("/slow"))
        await asyncio.sleep(0.1)  # the miss is at the origin now
        writer.write(get("/a"))
        first = await read_response(reader)
        second = await read_response(reader)
        assert (first[2], second[2]) == (b"slow body\n", b"body of a\n")
        # Once mitmproxy is done with the connection, the lane takes hits again.
        writer.write(get("/a"))
        assert (await read_response(reader))[1]["x-cache"] == "HIT"
        writer.close()

    run(origin, tmp_path, scenario)
    assert pins.taken == ["/a"]


def test_a_head_trickled_byte_by_byte_is_answered_once_complete(
        origin: Origin, tmp_path: Path, pins: Pins) -> None:
    async def scenario(port: int) -> None:
        await warm(port, "/c")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for byte in get("/c"):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.002)
        status, fields, body = await read_response(reader)
        assert (status, fields["x-cache"], body) == (200, "HIT", b"body of c\n")
        writer.close()

    run(origin, tmp_path, scenario)
    assert pins.taken == ["/c"]


@pytest.mark.parametrize(("request_bytes", "closes"), [
    (get("/a", version="HTTP/1.0"), True),
    (get("/a", "Connection: keep-alive", version="HTTP/1.0"), False),
    (get("/a", "Connection: close"), True),
    (get("/a"), False),
])
def test_the_connection_is_closed_where_mitmproxy_closes_it(
        origin: Origin, tmp_path: Path, pins: Pins, request_bytes: bytes, closes: bool) -> None:
    async def scenario(port: int) -> None:
        await warm(port, "/a")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_bytes)
        status, fields, body = await read_response(reader)
        assert (status, fields["x-cache"], body) == (200, "HIT", b"body of a\n")
        try:
            end = await asyncio.wait_for(reader.read(1), 1.0)
        except TimeoutError:
            end = None  # still open
        assert (end == b"") is closes
        writer.close()

    run(origin, tmp_path, scenario)
    assert pins.taken == ["/a"]


def test_head_gets_the_head_only(origin: Origin, tmp_path: Path, pins: Pins) -> None:
    async def scenario(port: int) -> None:
        await warm(port, "/a")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get("/a", method="HEAD") + get("/b"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b"Content-Length: 10\r\n" in head and b"X-Cache: HIT" in head
        # No body bytes: the next thing on the wire is the next answer.
        status, fields, body = await read_response(reader)
        assert (status, fields["x-cache"], body) == (200, "MISS", b"body of b\n")
        writer.close()

    run(origin, tmp_path, scenario)
    assert pins.taken == ["/a"]


@pytest.mark.parametrize(("request_bytes", "expected"), [
    # bare LF line ends: mitmproxy reads them, and the store answers
    (b"GET /a HTTP/1.1\nHost: proxy.test\n\n", (200, "HIT")),
    # a control byte (HTAB, which field values may hold)
    (b"GET /a HTTP/1.1\r\nHost: proxy.test\r\nX-Tab: a\tb\r\n\r\n", (200, "HIT")),
    # absolute-form naming another host: the guard's 400
    (b"GET http://proxy.test/a HTTP/1.1\r\nHost: proxy.test\r\n\r\n", (400, "MISS")),
    # a body's framing on a GET: the guard drops the (empty) body, the store answers
    (b"GET /a HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 0\r\n\r\n", (200, "HIT")),
])
def test_what_is_not_the_lanes_goes_to_mitmproxy_and_is_answered_there(
        origin: Origin, tmp_path: Path, pins: Pins, request_bytes: bytes,
        expected: tuple[int, str]) -> None:
    seen: list[tuple[int, str]] = []

    async def scenario(port: int) -> None:
        await warm(port, "/a")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_bytes)
        status, fields, _ = await read_response(reader)
        seen.append((status, fields["x-cache"]))
        writer.close()

    run(origin, tmp_path, scenario)
    assert pins.taken == []
    assert seen == [expected]


def test_a_guard_refusal_is_given_on_the_lane_as_mitmproxy_gives_it(
        origin: Origin, tmp_path: Path, pins: Pins) -> None:
    fields = [f"X-F{i}: v" for i in range(120)]  # past the guard's 100 fields, under 8 KiB

    async def scenario(port: int) -> None:
        await warm(port, "/a")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get("/a", *fields))
        status, answer, _ = await read_response(reader)
        assert (status, answer["connection"]) == (431, "close")
        assert await asyncio.wait_for(reader.read(1), 5) == b""
        writer.close()

    run(origin, tmp_path, scenario)
    assert pins.taken == ["/a"]  # taken by the lane, refused by the guard in requestheaders
    assert origin.counts["/a"] == 1


def test_the_option_turns_the_lane_off(origin: Origin, tmp_path: Path, pins: Pins) -> None:
    async def scenario(port: int) -> None:
        await warm(port, "/a")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get("/a"))
        assert (await read_response(reader))[1]["x-cache"] == "HIT"
        writer.close()

    run(origin, tmp_path, scenario, cache_hit_lane=False)
    assert pins.taken == []


def test_a_miss_the_lane_hands_on_reads_the_store_once(
        origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from caching_proxy.store.guarded import GuardedStore

    reads: list[str] = []
    real = GuardedStore.lookup

    def counted(store: GuardedStore, key: str, headers: Any) -> Any:
        reads.append(key.rsplit("/", 1)[-1])
        return real(store, key, headers)

    monkeypatch.setattr(GuardedStore, "lookup", counted)

    async def scenario(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get("/a", "Accept-Encoding: gzip"))
        assert (await read_response(reader))[1]["x-cache"] == "MISS"
        # The lane's "nothing stored" is for that request only: the next miss on the
        # connection, another URL, is read again by the lane.
        writer.write(get("/b", "Accept-Encoding: gzip"))
        assert (await read_response(reader))[1]["x-cache"] == "MISS"
        writer.write(get("/a", "Accept-Encoding: gzip"))
        assert (await read_response(reader))[1]["x-cache"] == "HIT"
        writer.close()

    run(origin, tmp_path, scenario)
    # One read per request: the lane's; mitmproxy's request hook took its answer for the misses.
    # (A coding the client accepts: a client that accepts none has the coded variants read too.)
    assert reads == ["a", "b", "a"]


def test_a_connection_of_misses_is_looked_at_less_and_less_until_a_hit(
        origin: Origin, tmp_path: Path, pins: Pins) -> None:
    async def scenario(port: int) -> None:
        await warm(port, "/a")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in range(1, 21):
            writer.write(get(f"/b?{i}"))
            status, fields, _ = await read_response(reader)
            assert (status, fields["x-cache"]) == (200, "MISS")
        # Requests 21-22 fall in the pause after the look at 14; each is still answered (the
        # hit by mitmproxy's path), and the look at 23 finds a hit: every request looked at.
        for _ in range(5):
            writer.write(get("/a"))
            status, fields, body = await read_response(reader)
            assert (status, fields["x-cache"], body) == (200, "HIT", b"body of a\n")
        writer.close()

    run(origin, tmp_path, scenario)
    # Four looks in a row found nothing, then looks with pauses of 1, 2, 4 and 8 requests.
    assert pins.looked == ["/a", *(f"/b?{i}" for i in (1, 2, 3, 4, 6, 9, 14)), "/a", "/a", "/a"]
    assert pins.taken == ["/a", "/a", "/a"]
    assert origin.count("/a") == 1 and sum(origin.counts.values()) == 21
