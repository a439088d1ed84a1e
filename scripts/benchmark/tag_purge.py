"""The tag purge rows of scripts/bench: purging one tag of 100 responses from a store of 1,000
and from a store of N (100,000 by default) responses, every response tagged (100 per tag).

Measured in this process on the store API the proxy uses (DiskStore, and RedisStore when a
redis-server is running for the bench), rounds interleaved between the two sizes; after each
purge the 100 responses are stored again, so every round purges the same amount.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from caching_proxy.store.entry import Entry
from caching_proxy.policy import CacheConfig, decide_store
from caching_proxy.store import DiskStore, Store

PER_TAG = 100
ROUNDS = 7


def entry(url: str, tag: str) -> Entry:
    headers = [("Cache-Control", "max-age=86400"), ("Content-Length", "1024")]
    now = time.time()
    decision = decide_store("GET", 200, [], headers, now, now, CacheConfig())
    assert decision.meta is not None
    return Entry(url=url, status=200, reason=b"OK",
                 headers=tuple((k.encode(), v.encode()) for k, v in headers),
                 body=b"x" * 1024, meta=decision.meta, tags=(tag, "all"))


def tagged(i: int) -> Entry:
    return entry(f"http://origin:80/item/{i}", f"g{i // PER_TAG}")


def fill(store: Store, count: int) -> None:
    """Store `count` tagged responses; on disk 1,000 to a transaction (filling only)."""
    batch = (store.backend.cache.transact if isinstance(store, DiskStore)
             else contextlib.nullcontext)
    for start in range(0, count, 1000):
        with batch():
            for i in range(start, min(count, start + 1000)):
                store.put(tagged(i), 86400)


def purge_once(store: Store) -> float:
    """Seconds to purge tag g0 (its 100 responses), then store them again."""
    began = time.perf_counter()
    purged = store.purge_tag("g0")
    took = time.perf_counter() - began
    if purged != PER_TAG:
        raise RuntimeError(f"purging g0 took {purged} responses, not {PER_TAG}")
    for i in range(PER_TAG):
        store.put(dataclasses.replace(tagged(i)), 86400)
    return took


def measure(stores: dict[str, Store]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in stores}
    for _ in range(ROUNDS):
        for name, store in stores.items():
            times[name].append(purge_once(store))
    return times


def run(work: Path, large: int, redis_url: str | None) -> list[str]:
    """The report lines: one table row per store, and the large/small ratio per kind."""
    lines = ["| tag purge (100 responses) | store | median ms | rounds (ms) |",
             "| --- | ---: | ---: | --- |"]
    kinds: dict[str, Callable[[str], Store]] = {
        "diskcache": lambda name: DiskStore(str(work / f"tags-{name}"), size_limit=8 << 30)}
    if redis_url is not None:
        from caching_proxy.store.redis.store import RedisStore

        # Another database than the proxies' rows use; emptied first.
        def redis_store(name: str) -> Store:
            url = redis_url.rsplit("/", 1)[0] + ("/14" if name == "small" else "/15")
            made = RedisStore(url)
            made.clear()
            return made
        kinds["redis"] = redis_store
    ratios = []
    for kind, make in kinds.items():
        small, big = make("small"), make("large")
        try:
            fill(small, 1000)
            fill(big, large)
            times = measure({f"{kind} 1,000": small, f"{kind} {large:,}": big})
        finally:
            small.close()
            big.close()
        medians = []
        for name, values in times.items():
            median = statistics.median(values) * 1000
            medians.append(median)
            rounds = " / ".join(f"{v * 1000:.1f}" for v in values)
            lines.append(f"| {name} entries | {kind} | {median:.1f} | {rounds} |")
        ratios.append(f"{kind}: {large:,} entries take {medians[1] / medians[0]:.2f}x the "
                      "time of 1,000 (target: within 2x)")
    return [*lines, "", *(f"- {r}" for r in ratios)]
