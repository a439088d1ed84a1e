"""The memory tier in front of a real diskcache folder: hits from memory, and every change made
through another handle on the folder (another process: a worker, `--purge`, `--clear-cache`)
seen at once; bounded in bytes; copies dropped when the store would have expired them."""

from __future__ import annotations

import dataclasses
import gc
import itertools
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from caching_proxy.store import DiskStore, Store
from caching_proxy.store.memory.tier import MemoryTier
from support.entries import make_entry
from support.polling import wait_until
from support.proxy import ROOT
from support.resident import mapped_resident

URL = "http://o:80/m"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tiered(folder: Path, size: int = 1 << 20, clock: Clock | None = None) -> tuple[Store,
                                                                                   MemoryTier]:
    disk = DiskStore(str(folder)).backend
    tier = MemoryTier(disk, disk.generations, size, **({"clock": clock} if clock else {}))
    return Store(tier), tier


def body_of(store: Store, url: str = URL, headers: list[tuple[str, str]] | None = None) -> bytes:
    found = store.lookup(url, headers or [])
    return b"" if found is None else found.body


def test_a_key_read_again_is_answered_from_memory(tmp_path: Path) -> None:
    store, tier = tiered(tmp_path)
    store.put(make_entry(URL, body=b"one"), 60)
    # The first read only notes the key (most keys of a large store are read once); the
    # second keeps a copy; the third is answered from it.
    assert body_of(store) == b"one" and (tier.hits, tier.misses, len(tier._copies)) == (0, 1, 0)
    assert body_of(store) == b"one" and (tier.hits, tier.misses, len(tier._copies)) == (0, 2, 1)
    assert body_of(store) == b"one" and (tier.hits, tier.misses) == (1, 2)


def test_a_key_read_once_is_forgotten_after_a_sixteenth_of_the_marks(tmp_path: Path) -> None:
    """The marks of keys read once are cleared once a sixteenth of the table's slots are marked
    (1,024 of 16,384 for a 1 MiB tier): a key read once before that counts as read once again."""
    _, tier = tiered(tmp_path, size=1 << 20)
    slots = len(tier._seen)
    assert slots == 16_384
    first = "http://o:80/first"
    taken = {hash(first) % slots}
    apart = []  # keys of slots of their own: each read leaves a new mark
    for i in itertools.count():
        key = f"http://o:80/other{i}"
        if hash(key) % slots not in taken and len(apart) < slots // 16:
            taken.add(hash(key) % slots)
            apart.append(key)
        if len(apart) == slots // 16:
            break
    tier.get(first)
    tier.get(first)  # its second read: a copy of "nothing stored"
    assert first in tier._copies
    tier.forget([first])
    for key in apart[:slots // 16 - 1]:  # all the marks but one
        tier.get(key)
    tier.get(first)  # still marked: a copy
    assert first in tier._copies
    tier.forget([first])
    tier.get(apart[-1])  # the marks are cleared, then this key marked
    tier.get(first)
    assert first not in tier._copies


def test_changes_through_another_handle_are_seen_at_once(tmp_path: Path) -> None:
    store, _ = tiered(tmp_path)
    other = DiskStore(str(tmp_path))  # what another process opens
    store.put(make_entry(URL, body=b"one"), 60)
    store.put(make_entry("http://o:80/v", vary="Accept", value="a", body=b"va"), 60)
    assert body_of(store) == b"one" and body_of(store) == b"one"
    assert body_of(store, "http://o:80/v", [("Accept", "a")]) == b"va"

    other.put(make_entry(URL, body=b"two"), 60)  # a worker stored a newer response
    assert body_of(store) == b"two"
    other.delete_url(URL)  # --purge
    assert body_of(store) == b""
    other.put(make_entry("http://o:80/v", vary="Accept", value="a", body=b"vb"), 60)
    assert body_of(store, "http://o:80/v", [("Accept", "a")]) == b"vb"
    other.put(dataclasses.replace(make_entry(URL, body=b"tagged"), tags=("t",)), 60)
    assert body_of(store) == b"tagged"
    assert other.purge_tag("t") == 1
    assert body_of(store) == b""
    store.put(make_entry(URL, body=b"three"), 60)
    assert body_of(store) == b"three"
    other.clear()  # --clear-cache
    assert body_of(store) == b"" and body_of(store, "http://o:80/v", [("Accept", "a")]) == b""


def test_a_purge_by_another_process_is_seen(tmp_path: Path) -> None:
    store, _ = tiered(tmp_path)
    store.put(make_entry(URL, body=b"one"), 60)
    assert body_of(store) == body_of(store) == body_of(store) == b"one"
    code = (f"from caching_proxy.store import DiskStore; "
            f"print(DiskStore({str(tmp_path)!r}).delete_url({URL!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={"PYTHONPATH": str(ROOT / "addons")})
    assert done.stdout.strip() == "1"
    assert body_of(store) == b""


def test_bounded_in_bytes_oldest_out_and_a_hot_copy_kept(tmp_path: Path) -> None:
    store, tier = tiered(tmp_path, size=1 << 20)
    store.put(make_entry("http://o:80/hot", body=bytes(30_000)), 60)
    for i in range(60):  # 1.8 MB of copies through a 1 MiB tier
        store.put(make_entry(f"http://o:80/b{i}", body=bytes(30_000)), 60)
        store.lookup(f"http://o:80/b{i}", [])
        store.lookup(f"http://o:80/b{i}", [])
        store.lookup("http://o:80/hot", [])
        assert tier.bytes <= 1 << 20
    hits = tier.hits
    store.lookup("http://o:80/b59", [])  # recent: from memory
    store.lookup("http://o:80/hot", [])  # read all along: from memory
    assert tier.hits == hits + 2
    store.lookup("http://o:80/b0", [])  # long pushed out: from disk
    assert tier.hits == hits + 2
    store.put(make_entry("http://o:80/huge", body=bytes(tier.max_item + 1)), 60)
    for _ in range(3):  # over a sixteenth of the tier: never kept
        store.lookup("http://o:80/huge", [])
    assert tier.hits == hits + 2


def test_a_copy_goes_when_the_store_would_expire_it(tmp_path: Path) -> None:
    clock = Clock()
    store, tier = tiered(tmp_path, clock=clock)
    store.put(make_entry(URL, body=b"one"), 30)
    body_of(store)
    body_of(store)
    assert body_of(store) == b"one" and tier.hits == 1
    clock.now += 31
    body_of(store)
    assert tier.hits == 1  # read from the store again, not from memory


def test_on_redis_changes_published_by_another_instance_are_seen(store_redis: Any) -> None:
    import redis as redis_py

    from caching_proxy.store import open_store
    from caching_proxy.store.redis.store import RedisStore

    redis_py.Redis.from_url(store_redis.url).flushdb()
    store = open_store(store_redis.url, memory_size=1 << 20)
    tier = store.backend
    assert isinstance(tier, MemoryTier)
    other = RedisStore(store_redis.url)  # another machine's proxy, or --purge
    try:
        wait_until(lambda: tier.changes.read(URL) == tier.changes.read(URL))  # subscribed
        other.put(make_entry(URL, body=b"one"), 60)
        wait_until(lambda: body_of(store) == b"one")
        time.sleep(0.1)  # its own announcement has arrived: the next copy stays
        hits = tier.hits
        assert body_of(store) == body_of(store) == body_of(store) == b"one"
        assert tier.hits >= hits + 1
        other.put(make_entry(URL, body=b"two"), 60)
        wait_until(lambda: body_of(store) == b"two")
        other.delete_url(URL)
        wait_until(lambda: body_of(store) == b"")
        other.put(make_entry(URL, body=b"three"), 60)
        wait_until(lambda: body_of(store) == b"three")
        other.clear()
        wait_until(lambda: body_of(store) == b"")
    finally:
        store.close()
        other.close()


def test_on_redis_nothing_is_used_while_the_subscription_is_down(store_redis: Any) -> None:
    import redis as redis_py

    from caching_proxy.store import open_store

    store = open_store(store_redis.url, memory_size=1 << 20)
    tier = store.backend
    assert isinstance(tier, MemoryTier)
    try:
        wait_until(lambda: tier.changes.read(URL) == tier.changes.read(URL))
        store.put(make_entry(URL, body=b"one"), 60)
        time.sleep(0.1)  # its own announcement has arrived
        assert body_of(store) == body_of(store) == body_of(store) == b"one"
        hits = tier.hits
        assert hits >= 1
        # The server drops the subscription (as on a restart or a network cut).
        redis_py.Redis.from_url(store_redis.url).client_kill_filter(_type="pubsub")
        wait_until(lambda: tier.changes.read(URL) != tier.changes.read(URL))  # noticed
        body_of(store)
        assert tier.hits == hits
        wait_until(lambda: tier.changes.read(URL) == tier.changes.read(URL))  # back
        body_of(store)  # every counter was bumped: the copy from before is not used
        assert tier.hits == hits
        assert body_of(store) == b"one" and tier.hits == hits + 1
    finally:
        store.close()


def test_a_full_tier_holds_no_more_memory_than_its_bound(tmp_path: Path) -> None:
    """What a full tier really takes stays within --memory-size, for small and large bodies and
    for "nothing stored" copies: its Python objects (tracemalloc: the memory freed when they all
    go, and its index's table) plus the pages of its arena present in memory (the kernel's
    page table).
    (Counting the key and data lengths plus 200, small copies took 1.25x the bound.)"""
    for body in (None, 0, 100, 1_000, 10_000):
        store, tier = tiered(tmp_path / f"b{body}", size=1 << 20)
        tracemalloc.start()
        try:
            for i in range(3_000):
                url = f"http://127.0.0.1:8080/some/path/{i}"
                if body is not None:
                    store.put(make_entry(url, body=bytes(body)), 60)
                store.lookup(url, [])
                store.lookup(url, [])  # kept from the second read on
            copies = len(tier._copies)
            gc.collect()
            held = tracemalloc.get_traced_memory()[0]
            pages = mapped_resident(tier._copies._map)
            table = sys.getsizeof(tier._copies._index)  # a dict keeps its table when emptied
            tier.forget(tier._copies.keys())
            tier._copies.clear()
            gc.collect()
            freed = held - tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert copies > 50 and mapped_resident(tier._copies._map) == 0
        held_what = "nothing stored" if body is None else f"{body}-byte bodies"
        assert freed + table + pages <= 1 << 20, (
            f"{copies} copies ({held_what}) took {freed + table:,} bytes and {pages:,} of pages")


def test_a_process_making_copies_grows_by_no_more_than_the_tier(tmp_path: Path) -> None:
    """The process, not just the tier's count: 100,000 copies of 1 KB responses, keys drawn
    from 40,000, through a 16 MiB tier, with short-lived allocations in between as requests
    make. Kept as one bytes object each, the heap's holes grew the process by about 1.5x the
    tier (README); the arena's segments leave none."""
    script = f"""
import gc, os, random, sys
sys.path[:0] = [{str(ROOT / "tests")!r}]
from caching_proxy.store import DiskStore
from caching_proxy.store.memory.tier import MemoryTier
from support.load import rss_kib
from support.entries import make_entry
class Still:
    def read(self, url): return (0, 0)
tier = MemoryTier(DiskStore({str(tmp_path)!r}).backend, Still(), 16 << 20)
entry = make_entry("http://127.0.0.1:8080/f", body=os.urandom(1024))
rng = random.Random(1)
passing = [None] * 200
gc.collect()
before = rss_kib(os.getpid()) * 1024
for i in range(100_000):
    tier._remember(f"http://127.0.0.1:8080/f{{rng.randrange(40_000)}}", (0, 0), entry, 600.0)
    passing[i % 200] = [bytes(rng.randrange(100, 4000)), str(i) * rng.randrange(1, 50)]
passing.clear()
gc.collect()
print(rss_kib(os.getpid()) * 1024 - before, tier.bytes)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, env={"PYTHONPATH": str(ROOT / "addons")})
    grown, counted = (int(part) for part in done.stdout.split())
    assert counted > 14 << 20  # full
    assert grown <= (16 << 20) + (1 << 20), f"grew {grown / 2**20:.1f} MiB for a 16 MiB tier"
