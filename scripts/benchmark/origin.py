"""The benchmark's origin: nginx when installed, else a small asyncio server with the same routes.

Routes (any suffix after the prefix, so every URL is distinct for the cache):
  /b1k/...      1 KiB body,  Cache-Control: max-age=86400
  /b44k/...     44 KiB body, Cache-Control: max-age=86400
  /nostore/...  1 KiB body,  Cache-Control: no-store
  /t1k/...      1 KiB body,  Cache-Control: max-age=86400, Surrogate-Key: bench products
  /b10m/...     10 MiB body, Cache-Control: max-age=86400 (ranges are cut from it)
  /gz1k/...     a 1 KiB text gzip-encoded, Vary: Accept-Encoding (to every client: decoding rows)

Run the fallback by hand with `python -m benchmark.origin --port 8080`.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import shutil
import time
from email.utils import formatdate
from pathlib import Path

SMALL = 1024
LARGE = 44 * 1024
TAGS = "bench products"
HUGE = 10 << 20
ROUTES: dict[str, tuple[int, str]] = {
    "/b1k/": (SMALL, "max-age=86400"),
    "/b44k/": (LARGE, "max-age=86400"),
    "/nostore/": (SMALL, "no-store"),
    "/t1k/": (SMALL, "max-age=86400"),
    "/b10m/": (HUGE, "max-age=86400"),
}
EXTRA = {"/t1k/": f"Surrogate-Key: {TAGS}\r\n"}


def gzipped_text() -> bytes:
    return gzip.compress(b"caching-proxy benchmark text. " * 34, 6, mtime=0)

NGINX_CONF = """\
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    # nginx closes a keep-alive connection after 1000 requests by default; the reconnects would
    # be noise in every row.
    keepalive_requests 10000000;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {prefix}/www;
        location /b1k/ {{ add_header Cache-Control "max-age=86400"; try_files /1k.bin =404; }}
        location /b44k/ {{ add_header Cache-Control "max-age=86400"; try_files /44k.bin =404; }}
        location /nostore/ {{ add_header Cache-Control "no-store"; try_files /1k.bin =404; }}
        location /b10m/ {{ add_header Cache-Control "max-age=86400"; try_files /10m.bin =404; }}
        location /gz1k/ {{ default_type text/plain; add_header Cache-Control "max-age=86400";
                          add_header Vary "Accept-Encoding"; add_header Content-Encoding gzip;
                          try_files /1k.txt.gz =404; }}
        location /t1k/ {{ add_header Cache-Control "max-age=86400";
                         add_header Surrogate-Key "{tags}"; try_files /1k.bin =404; }}
    }}
}}
"""


def body(size: int) -> bytes:
    return (b"0123456789abcdef" * (size // 16 + 1))[:size]


def nginx_path() -> str | None:
    """nginx's binary (often in an sbin folder outside a user's PATH), or None."""
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )


def nginx_command(prefix: Path, port: int) -> list[str] | None:
    """The command line of an nginx origin in `prefix`, or None when nginx is not installed."""
    nginx = nginx_path()
    if nginx is None:
        return None
    www = prefix / "www"
    www.mkdir(parents=True)
    (www / "1k.bin").write_bytes(body(SMALL))
    (www / "44k.bin").write_bytes(body(LARGE))
    (www / "10m.bin").write_bytes(body(HUGE))
    (www / "1k.txt.gz").write_bytes(gzipped_text())
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, port=port, tags=TAGS))
    return [nginx, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf),
            "-g", "daemon off;"]


class Handler:
    """Answers keep-alive HTTP/1.1 GETs from prepared bytes; only the Date line is built."""

    def __init__(self) -> None:
        self.responses = {
            prefix: (
                f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n"
                f"Cache-Control: {cache_control}\r\n{EXTRA.get(prefix, '')}\r\n".encode()
                + body(size)
            )
            for prefix, (size, cache_control) in ROUTES.items()
        }
        packed = gzipped_text()
        self.responses["/gz1k/"] = (
            f"Content-Type: text/plain\r\nContent-Length: {len(packed)}\r\n"
            "Cache-Control: max-age=86400\r\nVary: Accept-Encoding\r\n"
            "Content-Encoding: gzip\r\n\r\n".encode() + packed)
        self._second = 0
        self._head = b""

    def status_and_date(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._head = f"HTTP/1.1 200 OK\r\nDate: {formatdate(now, usegmt=True)}\r\n".encode()
        return self._head

    def answer(self, request_line: bytes) -> bytes:
        parts = request_line.split(b" ")
        path = parts[1].decode("latin-1") if len(parts) == 3 else ""
        for prefix, response in self.responses.items():
            if path.startswith(prefix):
                return self.status_and_date() + response
        return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                writer.write(self.answer(head.split(b"\r\n", 1)[0]))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def serve(port: int) -> None:
    server = await asyncio.start_server(Handler().serve, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
