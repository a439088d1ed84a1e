"""Load generation: wrk with benchmark/wrk.lua, or a Python stand-in where wrk is missing.

Both produce a `Result` from the same JSON line. The Python generator keeps wrk's request
patterns (see wrk.lua) but spends several times wrk's CPU per request, CPU the server under test
then lacks on a small machine; the table header says which one ran.
Run by hand: `python -m benchmark.loadgen URL MODE PREFIX KEYS LIMIT --seconds 5`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

WRK_LUA = Path(__file__).with_name("wrk.lua")


@dataclass(frozen=True)
class Load:
    """What to send: wrk.lua's MODE, PREFIX, KEYS and LIMIT."""

    mode: str
    prefix: str
    keys: int = 0
    limit: int = 0
    header: str = ""  # one "Name: value" sent with every request


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # connect, read, write and timeout errors
    responses: int
    hits: int  # responses with X-Cache: HIT
    non200: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_path() -> str | None:
    return shutil.which("wrk")


def wrk_version() -> str:
    wrk = wrk_path()
    if wrk is None:
        return "none"
    # `wrk -v` prints its version line and exits 1.
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout
    return out.split(" Copyright")[0].removeprefix("wrk ").strip()


def run(
    url: str, load: Load, seconds: int, *, use_wrk: bool, threads: int, connections: int
) -> Result:
    """One timed run against `url` (scheme://host:port); a LIMIT run ends at the limit."""
    args = [load.mode, load.prefix, str(load.keys), str(load.limit)]
    if use_wrk:
        wrk = wrk_path()
        assert wrk is not None
        command = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
                   "--timeout", "10s", "-s", str(WRK_LUA), url, "--", *args, str(threads),
                   load.header]
    else:
        command = [sys.executable, "-m", "benchmark.loadgen", url, *args,
                   "--seconds", str(seconds), "--connections", str(connections),
                   "--header", load.header]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as process:
        assert process.stdout is not None
        lines = []
        stopped = 0
        for line in process.stdout:
            lines.append(line)
            stopped += line == "stopped\n"
            if use_wrk and load.limit and stopped == threads:
                # Every thread reached its share of LIMIT; wrk would sleep out -d regardless.
                process.send_signal(signal.SIGINT)
        process.wait()
    summary = next((s for s in reversed(lines) if s.startswith("{")), None)
    if summary is None:
        raise RuntimeError(f"load generator failed ({process.returncode}): {''.join(lines)}")
    return Result(**json.loads(summary))


# -- the Python generator ----------------------------------------------------------------------


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = self.hits = self.non200 = 0


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p / 100))]


class Paths:
    """wrk.lua's patterns; `walk` and `unique` count across all connections of the run."""

    def __init__(self, load: Load) -> None:
        self.load = load
        self.counter = 0

    def next(self) -> str:
        load = self.load
        if load.mode == "fixed":
            return load.prefix
        self.counter += 1
        if load.mode == "random":
            return f"{load.prefix}{random.randrange(load.keys)}"
        if load.mode == "unique":
            return f"{load.prefix}0-{self.counter}"
        return f"{load.prefix}{self.counter - 1}"


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool, bool]:
    """Reads one Content-Length framed response: (status, X-Cache is HIT, server closes)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    await reader.readexactly(int(fields.get("content-length", "0")))
    return status, fields.get("x-cache") == "HIT", fields.get("connection", "").lower() == "close"


async def connection(host: str, port: int, paths: Paths, stats: Stats, deadline: float,
                     limit: int) -> None:
    reader = writer = None
    while time.monotonic() < deadline and not (limit and len(stats.latencies) >= limit):
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            start = time.perf_counter()
            extra = f"{paths.load.header}\r\n" if paths.load.header else ""
            writer.write(
                f"GET {paths.next()} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode())
            status, hit, close = await read_response(reader)
            stats.latencies.append(time.perf_counter() - start)
            stats.hits += hit
            stats.non200 += status not in (200, 206)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            stats.errors += 1
            close = True
        if close and writer is not None:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def generate(url: str, load: Load, seconds: float, connections: int) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    stats, paths = Stats(), Paths(load)
    start = time.monotonic()
    await asyncio.gather(*(
        connection(host, port, paths, stats, start + seconds, load.limit)
        for _ in range(connections)
    ))
    elapsed = time.monotonic() - start
    latencies = sorted(stats.latencies)
    return {
        "requests": len(latencies), "seconds": elapsed,
        "p50_ms": percentile(latencies, 50) * 1e3, "p99_ms": percentile(latencies, 99) * 1e3,
        "errors": stats.errors, "responses": len(latencies), "hits": stats.hits,
        "non200": stats.non200,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Python stand-in for wrk + wrk.lua")
    parser.add_argument("url")
    parser.add_argument("mode", choices=("fixed", "random", "unique", "walk"))
    parser.add_argument("prefix")
    parser.add_argument("keys", type=int)
    parser.add_argument("limit", type=int)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--header", default="")
    a = parser.parse_args()
    load = Load(a.mode, a.prefix, a.keys, a.limit, a.header)
    print(json.dumps(asyncio.run(generate(a.url, load, a.seconds, a.connections))))


if __name__ == "__main__":
    main()
