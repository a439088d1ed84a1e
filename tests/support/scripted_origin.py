"""A raw-socket origin (asyncio, in its own thread, on 127.0.0.1) whose every answer is scripted
byte for byte, and which records on which connection, and as which request on it, each request
came. For what a well-behaved HTTP server cannot do: interim 1xx responses, closing a kept-alive
connection right after reading a request, before answering it.

Also raw HTTP/1 client helpers that keep every head the proxy sends, interim ones included.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Seen:
    connection: int  # 1 for the first connection accepted, 2 for the next...
    index: int  # 0 for the first request on its connection
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


# What to write for a request, in pieces (written apart, a short pause between them), or None:
# close the connection without answering. A piece CLOSE closes the connection there; a number
# is a pause of that many seconds.
Script = Callable[[Seen], list[bytes | float] | None]
CLOSE = b""


class ScriptedOrigin:
    PAUSE = 0.05  # seconds between the pieces of an answer, so the proxy reads them apart

    def __init__(self, script: Script) -> None:
        self.script = script
        self.seen: list[Seen] = []
        self._connections = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._server: asyncio.Server | None = None

        async def start() -> None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            started.set()

        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        started.wait(10)
        assert self._server is not None
        self.port: int = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def requests_for(self, path: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path == path]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self._connections += 1
            number = self._connections
        index = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                seen = Seen(number, index, method, path, headers, body)
                with self._lock:
                    self.seen.append(seen)
                reply = self.script(seen)
                if reply is None:
                    return  # closed right after reading the request, before any byte of answer
                for i, piece in enumerate(reply):
                    if isinstance(piece, (int, float)):
                        await asyncio.sleep(piece)
                        continue
                    if piece == CLOSE:
                        return
                    if i:
                        await asyncio.sleep(self.PAUSE)
                    writer.write(piece)
                    await writer.drain()
                index += 1
        except ConnectionError:
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            # Connections still held (a scripted pause) end here, inside their loop.
            held = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in held:
                task.cancel()
            await asyncio.gather(*held, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@dataclass
class Head:
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


class RawClient:
    """One client connection; `exchange` sends raw request bytes and returns every head the
    proxy answered with, up to and including the final response (with its body, by
    Content-Length), interim 1xx heads first."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_head(self) -> Head:
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed before a whole head; got {self.buf!r}")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        _, status, *reason = lines[0].split(" ", 2)
        headers = [(k.strip(), v.strip()) for k, v in (line.split(":", 1) for line in lines[1:])]
        return Head(int(status), reason[0] if reason else "", headers)

    def read_response(self) -> list[Head]:
        heads = []
        while True:
            head = self.read_head()
            heads.append(head)
            if not (100 <= head.status < 200):
                break
        final = heads[-1]
        length = int(final.header("Content-Length") or 0)
        while len(self.buf) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed before the whole body")
            self.buf += chunk
        final.body, self.buf = self.buf[:length], self.buf[length:]
        return heads

    def exchange(self, data: bytes) -> list[Head]:
        self.send(data)
        return self.read_response()

    def closed(self, wait: float = 2.0) -> bool:
        """True when the proxy closes the connection within `wait` seconds, sending nothing."""
        self.sock.settimeout(wait)
        try:
            return self.buf == b"" and self.sock.recv(1) == b""
        except TimeoutError:
            return False
        except ConnectionError:
            return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def get(path: str, version: str = "HTTP/1.1", extra: str = "") -> bytes:
    return f"GET {path} {version}\r\nHost: origin\r\n{extra}\r\n".encode()
