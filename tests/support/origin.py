"""A scripted origin server on 127.0.0.1 that counts every request it gets.

A test says what each path answers (`origin.route(...)`); a HIT is then proven by the origin's
count not moving. Handlers may also write raw bytes to misbehave on purpose.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Seen:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


@dataclass
class Reply:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    # Raw bytes written instead of a well-formed response (then the connection is closed).
    raw: bytes | None = None
    # Write no Content-Length and send the body chunked.
    chunked: bool = False
    # Seconds to wait before answering (a slow origin).
    delay: float = 0.0
    # Body written piece by piece as produced (a huge or slow body); with Content-Length from
    # `headers`, or chunked when `chunked`.
    parts: Iterable[bytes] | None = None


Handler = Callable[[Seen], Reply]


class Origin:
    def __init__(self, port: int = 0) -> None:
        self.routes: dict[str, Handler] = {}
        self.fallback: Handler | None = None  # answers the paths no route names (else 404)
        self.counts: Counter[str] = Counter()
        self.seen: list[Seen] = []
        # Every request line parsed, methods it has no handler for (a 501) included.
        self.request_lines: list[str] = []
        self.lock = threading.Lock()
        origin = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def parse_request(self) -> bool:
                parsed = super().parse_request()
                if parsed:
                    with origin.lock:
                        origin.request_lines.append(self.requestline)
                return parsed

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(self.command, self.path, list(self.headers.items()), body)
                with origin.lock:
                    origin.counts[self.path] += 1
                    origin.seen.append(seen)
                    handler = origin.routes.get(self.path) or origin.routes.get(
                        self.path.split("?")[0]
                    ) or origin.fallback
                reply = handler(seen) if handler else Reply(404, [], b"no route\n")
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.raw is not None:
                    self.wfile.write(reply.raw)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                names = {k.lower() for k, _ in reply.headers}
                for k, v in reply.headers:
                    self.send_header(k, v)
                no_body = reply.status in (204, 304) or 100 <= reply.status < 200
                if reply.parts is not None:
                    if reply.chunked:
                        self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    try:
                        for part in reply.parts:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part)
                                             if reply.chunked else part)
                        if reply.chunked:
                            self.wfile.write(b"0\r\n\r\n")
                    except OSError:
                        self.close_connection = True
                    return
                if reply.chunked and not no_body:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    if self.command != "HEAD":
                        if reply.body:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(reply.body), reply.body))
                        self.wfile.write(b"0\r\n\r\n")
                    return
                if "content-length" not in names and not no_body:
                    self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command != "HEAD" and not no_body:
                    self.wfile.write(reply.body)

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _handle
            do_PURGE = _handle  # counted, so a PURGE that reached the origin would show

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", port), RequestHandler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def route(
        self,
        path: str,
        status: int = 200,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        handler: Handler | None = None,
    ) -> None:
        if handler is None:
            reply = Reply(status, list(headers or []), body)

            def handler(_: Seen) -> Reply:
                return reply

        with self.lock:
            self.routes[path] = handler

    def count(self, path: str) -> int:
        with self.lock:
            return self.counts[path]

    def requests_for(self, path: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.path == path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
