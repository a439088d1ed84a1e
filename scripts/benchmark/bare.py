"""The machine's bound for a Python server: a bare asyncio server answering one prepared 1 KiB
HTTP/1.1 keep-alive response to every request, on the stdlib loop or (--uvloop) on uvloop.

No HTTP parser, no flow, no hook, no cache: it only finds the end of each request head
(b"\\r\\n\\r\\n") and writes the same bytes. What a Python process on this machine can answer at
most, so `hit / bare` is the share of it the proxy keeps (issue 31: >= 0.5x).

    python -m benchmark.bare --port 8082 [--uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable

BODY = b"x" * 1024
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\nCache-Control: max-age=86400\r\n\r\n" % len(BODY)) + BODY
END = b"\r\n\r\n"


class Answer(asyncio.Protocol):
    """Writes RESPONSE once per complete request head received, in order; a head split over
    reads is kept until its end arrives (requests carry no body in the bench)."""

    def __init__(self) -> None:
        self.pending = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        data = self.pending + data if self.pending else data
        heads = data.count(END)
        self.pending = data[data.rfind(END) + len(END):] if heads else data
        if heads and self.transport is not None:
            self.transport.write(RESPONSE * heads)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Answer, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def loop_factory(use_uvloop: bool) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if not use_uvloop:
        return None
    import uvloop  # the bench extra's; the `bareuv` row runs only where it imports

    return uvloop.new_event_loop


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--uvloop", action="store_true", help="run on uvloop instead of asyncio's loop")
    args = p.parse_args()
    with asyncio.Runner(loop_factory=loop_factory(args.uvloop)) as runner:
        runner.run(serve(args.port))


if __name__ == "__main__":
    main()
