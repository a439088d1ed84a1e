"""Use counts (a rule's `min_uses`) on both backends (and tests/store/test_toy_backend.py's): one
count per key, shared by every handle on the store, none lost under concurrency, restarting
after its window, never listed as a value and removed by `clear`."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from caching_proxy.store import Store, open_store
from support.entries import make_entry

URL = "http://o:80/popular"


def other_handle(store: Store) -> Store:
    """What another proxy process opens on the same store: its location, opened again."""
    return open_store(store.location)


def test_counts_per_key_across_handles(store: Store) -> None:
    other = other_handle(store)
    try:
        assert [store.count_use(URL, 60), other.count_use(URL, 60), store.count_use(URL, 60)] == [
            1, 2, 3]
        assert other.count_use(URL + "?b", 60) == 1
    finally:
        other.close()


def test_no_count_is_lost_under_concurrency(store: Store) -> None:
    handles = [store, other_handle(store)]
    try:
        with ThreadPoolExecutor(8) as pool:
            counts = list(pool.map(lambda i: handles[i % 2].count_use(URL, 60), range(80)))
        assert sorted(counts) == list(range(1, 81))  # each increment saw a distinct count
    finally:
        handles[1].close()


def test_a_count_restarts_after_its_window_and_each_use_extends_it(store: Store) -> None:
    # The backends expire on the real clock, so this one waits (fractions of a second).
    assert store.count_use(URL, 0.4) == 1
    time.sleep(0.25)
    assert store.count_use(URL, 0.4) == 2  # within the window: counted, window renewed
    time.sleep(0.25)
    assert store.count_use(URL, 0.4) == 3  # 0.5 s after the first, 0.25 s after the last
    time.sleep(0.6)
    assert store.count_use(URL, 0.4) == 1


def test_counts_are_not_values_and_clear_removes_them(store: Store) -> None:
    store.count_use(URL, 60)
    store.put(make_entry("http://o:80/stored"), 60)
    assert list(store.response_keys()) == ["http://o:80/stored"]
    assert store.lookup(URL, []) is None and not store.has_url(URL)
    assert store.usage_estimate().entries == 1
    store.clear()
    assert store.count_use(URL, 60) == 1


def test_the_asynchronous_count_adds_to_the_same_count(store: Store) -> None:
    # count_use_async (the addon's way on a network store) and count_use share one count,
    # across handles, and restart after the window alike.
    other = other_handle(store)

    async def counts() -> list[int]:
        return [await store.count_use_async(URL, 60), other.count_use(URL, 60),
                await other.count_use_async(URL, 60), await store.count_use_async(URL + "?c", 60)]

    try:
        assert asyncio.run(counts()) == [1, 2, 3, 1]
        assert asyncio.run(store.count_use_async(URL + "?w", 0.2)) == 1
        time.sleep(0.4)
        assert asyncio.run(store.count_use_async(URL + "?w", 0.2)) == 1
    finally:
        other.close()
