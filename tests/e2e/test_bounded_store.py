"""--cache-size bounds the store; least recently used entries go first; expired ones are culled."""

from __future__ import annotations

import os
import time
from pathlib import Path

import diskcache

from support.client import fetch
from support.origin import Origin

ENTRY = 100_000  # stored in a file of its own by diskcache, counted against the size limit


def volume(cache_dir: Path) -> int:
    with diskcache.Cache(str(cache_dir)) as cache:
        return int(cache.volume())


def test_filling_past_the_limit_stays_under_it_and_evicts_the_least_recently_used(
    origin: Origin, make_proxy: object, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    proxy = make_proxy("--cache-size", "2m", "--set", "cache_lru_interval=0")  # type: ignore[operator]
    # diskcache evicts in batches of up to cull_limit (10) least recently used entries once a
    # write takes it past the limit; 2 MiB holds ~20 entries, so /e0 is never in a batch.
    for i in range(40):
        origin.route(f"/e{i}", 200, [("Cache-Control", "max-age=600")], os.urandom(ENTRY))
    assert fetch(proxy.url + "/e0").x_cache == "MISS"
    for i in range(1, 40):
        assert fetch(proxy.url + f"/e{i}").x_cache == "MISS"
        # /e0 is read between every fill, so it is never the least recently used.
        assert fetch(proxy.url + "/e0").x_cache == "HIT"
        assert volume(cache_dir) <= 2 << 20
    assert origin.count("/e0") == 1
    # The oldest untouched entries were evicted, the newest kept.
    assert fetch(proxy.url + "/e1").x_cache == "MISS"
    assert fetch(proxy.url + "/e39").x_cache == "HIT"
    assert origin.count("/e1") == 2 and origin.count("/e39") == 1


def test_entries_past_their_stale_window_are_culled(
    origin: Origin, make_proxy: object, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    proxy = make_proxy("--set", "cache_keep_stale=0")  # type: ignore[operator]
    for i in range(5):
        origin.route(f"/x{i}", 200, [("Cache-Control", "max-age=3")], os.urandom(ENTRY))
        fetch(proxy.url + f"/x{i}")
    with diskcache.Cache(str(cache_dir)) as cache:
        assert len(cache) >= 5
    time.sleep(3.5)
    origin.route("/later", 200, [("Cache-Control", "max-age=60")], b"later")
    fetch(proxy.url + "/later")  # a write culls expired entries (diskcache's cull on set)
    with diskcache.Cache(str(cache_dir)) as cache:
        keys = [k for k in cache.iterkeys() if isinstance(k, str) and k.startswith("http")]
    assert keys == [f"http://127.0.0.1:{origin.port}/later"]
