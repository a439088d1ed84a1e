"""Store faults: a proxy killed with SIGKILL mid-write restarts on its folder and serves only whole
bodies; two proxies share a folder under load; a folder taken away or a full disk turns the proxy
into a pass-through that warns once and never answers 500 because of its store.

Every origin body carries its own SHA-256 (support.checked), and every body served is verified.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from support.checked import body_ok, sized_handler
from support.client import fetch
from support.origin import Origin
from support.proxy import Proxy

WARNING = "cache store unavailable"
# Small bodies live in SQLite, those over 32 KiB in files of their own (diskcache's min_file_size).
SIZES = (100, 5_000, 40_000, 200_000)


def route_sizes(origin: Origin, prefix: str) -> list[str]:
    paths = []
    for size in SIZES:
        origin.route(f"{prefix}{size}", handler=sized_handler(size))
        paths.append(f"{prefix}{size}")
    return paths


def hammer(proxy_urls: list[str], paths: list[str], seconds: float, threads: int = 8,
           stop: threading.Event | None = None) -> tuple[int, list[str]]:
    """GET `paths` (with a varying query, so there are misses and hits) until time is up;
    returns the count and every problem seen."""
    deadline = time.monotonic() + seconds
    problems: list[str] = []
    counts = [0] * threads

    def worker(w: int) -> None:
        i = 0
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            path = paths[i % len(paths)]
            url = proxy_urls[i % len(proxy_urls)] + f"{path}?q={(i * 7 + w) % 40}"
            i += 1
            try:
                r = fetch(url, timeout=10)
            except OSError as e:
                if stop and stop.is_set():
                    return
                problems.append(f"{url}: {e!r}")
                continue
            counts[w] += 1
            if r.status != 200 or not body_ok(r.body, path):
                problems.append(f"{url}: {r.status} {r.body[:80]!r}")

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))
    return sum(counts), problems


def test_kill_9_during_writes_then_restart(origin: Origin, tmp_path: Path) -> None:
    paths = route_sizes(origin, "/k")
    cache = tmp_path / "cache"
    proxy = Proxy(origin.url, cache).start()
    stop = threading.Event()
    # The CLI re-execs itself with `python -O` (os.execv keeps the pid): Popen's pid is the proxy.
    assert proxy.proc is not None
    threading.Timer(1.5, lambda: (proxy.proc.kill() if proxy.proc else None, stop.set())).start()
    sent, problems = hammer([proxy.url], paths, 5, stop=stop)
    assert proxy.proc.wait(5) == -9
    assert sent > 20 and not problems, problems[:5]
    before = sum(origin.counts.values())
    with Proxy(origin.url, cache) as again:
        served, problems = hammer([again.url], paths, 1.5)
        hits = served - (sum(origin.counts.values()) - before)
        assert not problems, problems[:5]
        assert hits > 0, "nothing survived the kill"
        assert "Traceback" not in again.output and WARNING not in again.output


def test_two_proxies_share_one_folder_under_load(origin: Origin, tmp_path: Path) -> None:
    paths = route_sizes(origin, "/s")
    cache = tmp_path / "cache"
    with Proxy(origin.url, cache) as a, Proxy(origin.url, cache) as b:
        sent, problems = hammer([a.url, b.url], paths, 3)
        assert sent > 100 and not problems, problems[:5]
        # Each stored answer is shared: far fewer origin requests than requests served.
        assert sum(origin.counts.values()) <= len(paths) * 40 * 2
        for p in (a, b):
            assert "Traceback" not in p.output and WARNING not in p.output


def _pass_through_after(origin: Origin, proxy: Proxy, break_store: object) -> None:
    paths = route_sizes(origin, "/b")
    assert fetch(proxy.url + "/b100").x_cache == "MISS"
    assert fetch(proxy.url + "/b100").x_cache == "HIT", proxy.output[-3000:]
    break_store()  # type: ignore[operator]
    for round_ in range(3):
        for path in paths:
            r = fetch(proxy.url + f"{path}?r={round_}")
            assert r.status == 200 and body_ok(r.body, path), (r.status, r.body[:80])
    assert proxy.output.count(WARNING) == 1, proxy.output[-2000:]
    assert "Traceback" not in proxy.output


def test_folder_replaced_by_a_file(origin: Origin, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with Proxy(origin.url, cache) as proxy:
        def replace() -> None:
            shutil.rmtree(cache)
            cache.write_text("not a folder")
        _pass_through_after(origin, proxy, replace)


def test_disk_full(origin: Origin, tmp_path: Path) -> None:
    """A full disk, made with RLIMIT_FSIZE on the proxy process (works unprivileged, unlike
    mounting a small tmpfs): any write that takes a file past 8 MiB fails with EFBIG, as on a
    full filesystem; each 9 MB body goes to a file of its own and never fits, while SQLite's
    files (its WAL grows to about 4 MiB before a checkpoint) still do."""
    cache = tmp_path / "cache"
    port_proxy = Proxy(origin.url, cache)
    port_proxy.command = [
        sys.executable, "-c",
        "import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (8 << 20, 8 << 20));"
        "os.execv(sys.executable, [sys.executable, '-m', 'caching_proxy', *sys.argv[1:]])",
        "--port", str(port_proxy.port), "--origin", origin.url, "--cache-dir", str(cache),
    ]
    with port_proxy as proxy:
        for i in range(6):
            path = f"/full{i}"
            origin.route(path, handler=sized_handler(9_000_000))
            r = fetch(proxy.url + path)
            assert r.status == 200 and body_ok(r.body, path)
        _pass_through_after(origin, proxy, lambda: None)
