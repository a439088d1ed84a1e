"""A mixed load against a running proxy, every body verified: hits, misses, revalidations and
invalidations by POST, from many keep-alive connections at once (asyncio, raw HTTP/1.1).

Used by tests/e2e/test_load.py (short, in CI) and scripts/soak (200 connections, 60 s):
`python -m support.load --connections 200 --seconds 60` (run from tests/, or with it on
PYTHONPATH) starts its own origin and proxy and prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from support.checked import body_ok, checked_body
from support.origin import Origin, Reply, Seen
from support.proxy import Proxy

HOT = 50  # /h0../h49: stored for 5 minutes, invalidated by POSTs
REVALIDATED = 20  # /r0../r19: max-age=0 with an ETag, so every GET revalidates


@dataclass
class Figures:
    requests: int = 0
    errors: int = 0  # connection errors, timeouts, unexpected statuses
    wrong_bodies: int = 0
    seconds: float = 0.0
    connections: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    x_cache: Counter[str] = field(default_factory=Counter)
    origin_requests: int = 0
    origin_304: int = 0
    rss_kib_before: int = 0
    rss_kib_after: int = 0
    rss_kib_every_10s: list[int] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)

    def as_json(self) -> str:
        # dataclasses.asdict would rebuild the Counters from (key, value) pairs.
        return json.dumps({k: dict(v) if isinstance(v, Counter) else v
                           for k, v in vars(self).items()}, indent=1)


class LoadOrigin:
    """An origin whose every body carries its checksum; POST /hN bumps /hN's version."""

    def __init__(self) -> None:
        self.origin = Origin()
        # socketserver listens with a backlog of 5; the proxy opens up to one origin connection
        # per client connection, and a real origin would not refuse them.
        self.origin.server.socket.listen(1024)
        self.versions: Counter[str] = Counter()
        self.not_modified = 0
        self.lock = threading.Lock()
        self.origin.routes.clear()
        for k in range(HOT):
            self.origin.route(f"/h{k}", handler=self.hot)
        for k in range(REVALIDATED):
            self.origin.route(f"/r{k}", handler=self.revalidated)
        self.origin.route("/m", handler=self.miss)

    def hot(self, seen: Seen) -> Reply:
        path = seen.path
        with self.lock:
            if seen.method == "POST":
                self.versions[path] += 1
                return Reply(200, [], b"updated")
            version = self.versions[path]
        return Reply(200, [("Cache-Control", "max-age=300")], checked_body(path, version, 600))

    def revalidated(self, seen: Seen) -> Reply:
        etag = f'"{seen.path}-v1"'
        if seen.header("If-None-Match") == etag:
            with self.lock:
                self.not_modified += 1
            return Reply(304, [("ETag", etag), ("Cache-Control", "max-age=0")])
        return Reply(200, [("ETag", etag), ("Cache-Control", "max-age=0")],
                     checked_body(seen.path, 1, 2000))

    def miss(self, seen: Seen) -> Reply:
        return Reply(200, [("Cache-Control", "max-age=300")],
                     checked_body(seen.path.split("?")[0], 0, 300))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return status, headers, body


async def _connection(port: int, deadline: float, figures: Figures, rng: random.Random,
                      misses: itertools.count[int]) -> None:
    reader = writer = None
    while time.monotonic() < deadline:
        if writer is None:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError as e:
                figures.errors += 1
                figures.samples.append(f"connect: {e!r}")
                await asyncio.sleep(0.05)
                continue
        assert reader is not None
        roll = rng.random()
        if roll < 0.60:
            kind, method, path = "hit", "GET", f"/h{rng.randrange(HOT)}"
        elif roll < 0.75:
            kind, method, path = "miss", "GET", f"/m?n={next(misses)}"
        elif roll < 0.92:
            kind, method, path = "revalidation", "GET", f"/r{rng.randrange(REVALIDATED)}"
        else:
            kind, method, path = "invalidation", "POST", f"/h{rng.randrange(HOT)}"
        body = b"x=1" if method == "POST" else b""
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: load\r\nContent-Length: {len(body)}"
                     f"\r\n\r\n".encode() + body)
        try:
            status, headers, got = await asyncio.wait_for(_read_response(reader), 30)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as e:
            figures.errors += 1
            figures.samples.append(f"{method} {path}: {e!r}")
            writer.close()
            writer = None
            continue
        figures.requests += 1
        figures.kinds[kind] += 1
        figures.x_cache[headers.get("x-cache", "-")] += 1
        if status != 200:
            figures.errors += 1
            figures.samples.append(f"{method} {path}: {status} {got[:120]!r}")
        elif method == "GET" and not body_ok(got, path.split("?")[0]):
            figures.wrong_bodies += 1
            figures.samples.append(f"{method} {path}: wrong body {got[:60]!r}")
        if headers.get("connection", "").lower() == "close":
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def _sample_rss(pid: int, deadline: float, figures: Figures) -> None:
    while time.monotonic() + 10 < deadline:
        await asyncio.sleep(10)
        figures.rss_kib_every_10s.append(rss_kib(pid))


async def _run(port: int, connections: int, seconds: float, seed: int, pid: int) -> Figures:
    figures = Figures(connections=connections)
    misses = itertools.count()
    deadline = time.monotonic() + seconds
    start = time.monotonic()
    await asyncio.gather(_sample_rss(pid, deadline, figures), *(
        _connection(port, deadline, figures, random.Random(seed + i), misses)
        for i in range(connections)))
    figures.seconds = round(time.monotonic() - start, 1)
    figures.samples = figures.samples[:10]
    return figures


def run_load(proxy: Proxy, origin: LoadOrigin, connections: int, seconds: float,
             seed: int = 1) -> Figures:
    """Warm up, then load for `seconds`; RSS is read after the warm-up and at the end."""
    assert proxy.proc is not None
    pid = proxy.proc.pid
    asyncio.run(_run(proxy.port, min(connections, 20), min(2.0, seconds / 5), seed + 10_000, pid))
    before_origin = len(origin.origin.seen)
    before_304 = origin.not_modified
    rss_before = rss_kib(pid)
    figures = asyncio.run(_run(proxy.port, connections, seconds, seed, pid))
    figures.rss_kib_before = rss_before
    figures.rss_kib_after = rss_kib(pid)
    figures.origin_requests = len(origin.origin.seen) - before_origin
    figures.origin_304 = origin.not_modified - before_304
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    origin = LoadOrigin()
    with tempfile.TemporaryDirectory() as tmp, Proxy(origin.origin.url, Path(tmp) / "c") as proxy:
        figures = run_load(proxy, origin, args.connections, args.seconds)
    origin.origin.stop()
    print(figures.as_json())
    return 0 if figures.errors == 0 and figures.wrong_bodies == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
