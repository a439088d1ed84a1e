"""The origin budget's shared state (Schedules) on both backends (and tests/store/
test_toy_backend.py's): one schedule and one pause per name for every handle on the store,
none of its places given twice under concurrency, kept apart from the values and by `clear`."""

from __future__ import annotations

import asyncio
import itertools
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from caching_proxy.store import Store, open_store
from caching_proxy.store.calls import GiveSlot, HeldOff, HoldOff, Reserve, TakeSlot
from support.entries import make_entry


def other_handle(store: Store) -> Store:
    return open_store(store.location)


def test_reservations_are_spaced_across_handles(store: Store) -> None:
    other = other_handle(store)
    try:
        waits = [h.schedule(Reserve("rate", 10, 1, 5.0)) for h in (store, other, store, other)]
        assert waits[0] == pytest.approx(0.0, abs=0.05)
        # Each next place is one interval (0.1 s) later, whichever handle asked.
        for before, after in itertools.pairwise(waits):
            assert before is not None and after is not None
            assert after - before == pytest.approx(0.1, abs=0.05)
    finally:
        other.close()


def test_no_place_is_given_twice_under_concurrency(store: Store) -> None:
    handles = [store, other_handle(store)]
    try:
        started = time.time()
        with ThreadPoolExecutor(8) as pool:
            waits = list(pool.map(
                lambda i: handles[i % 2].schedule(Reserve("crowd", 10, 1, 60.0)), range(40)))
        assert None not in waits
        # Forty places 0.1 s apart were taken, none twice: the next one is 4 s from the start.
        after = store.schedule(Reserve("crowd", 10, 1, 60.0))
        assert after is not None
        assert time.time() + after - started == pytest.approx(4.0, abs=0.15)
    finally:
        handles[1].close()


def test_a_place_too_far_is_refused_and_takes_nothing(store: Store) -> None:
    assert store.schedule(Reserve("slow", 1, 1, 0.5)) == pytest.approx(0.0, abs=0.05)
    assert store.schedule(Reserve("slow", 1, 1, 0.5)) is None  # 1 s away: past the queue
    wait = store.schedule(Reserve("slow", 1, 1, 5.0))
    assert wait is not None and wait == pytest.approx(1.0, abs=0.1)  # the refusal took no place


def test_a_pause_is_shared_and_only_grows(store: Store) -> None:
    other = other_handle(store)
    try:
        assert store.schedule(HeldOff("origin")) == 0.0
        assert store.schedule(HoldOff("origin", 3.0)) == pytest.approx(3.0, abs=0.1)
        assert other.schedule(HeldOff("origin")) == pytest.approx(3.0, abs=0.2)
        # A shorter pause does not cut the longer one in place.
        assert other.schedule(HoldOff("origin", 1.0)) == pytest.approx(3.0, abs=0.2)
        assert store.schedule(HoldOff("origin", 5.0)) == pytest.approx(5.0, abs=0.1)
        assert store.schedule(HeldOff("elsewhere")) == 0.0
    finally:
        other.close()


def test_a_pause_ends(store: Store) -> None:
    store.schedule(HoldOff("brief", 0.2))

    async def later() -> float:
        await asyncio.sleep(0.4)
        return await store.schedule_async(HeldOff("brief"))

    assert asyncio.run(later()) == 0.0


def test_schedules_are_no_values_and_clear_keeps_them(store: Store) -> None:
    store.schedule(Reserve("kept", 1, 1, 5.0))
    store.schedule(HoldOff("kept", 30.0))
    store.put(make_entry("http://o:80/stored"), 60)
    assert list(store.response_keys()) == ["http://o:80/stored"]
    assert store.counters() == {}
    store.clear()
    assert store.schedule(HeldOff("kept")) > 20
    wait = store.schedule(Reserve("kept", 1, 1, 5.0))
    assert wait is not None and wait > 0.5


def test_slots_are_bounded_across_handles_and_freed(store: Store) -> None:
    other = other_handle(store)
    try:
        taken = [h.schedule(TakeSlot("slots", f"t{i}", 2, 60.0))
                 for i, h in enumerate((store, other, store))]
        assert taken == [True, True, False]  # two holders at most, whichever handle asked
        other.schedule(GiveSlot("slots", "t0"))
        assert store.schedule(TakeSlot("slots", "t3", 2, 60.0))
        assert not other.schedule(TakeSlot("slots", "t4", 2, 60.0))
        store.schedule(GiveSlot("slots", "never-held"))  # nothing to free: nothing changes
        assert not store.schedule(TakeSlot("slots", "t5", 2, 60.0))
    finally:
        other.close()


def test_no_slot_is_given_twice_under_concurrency(store: Store) -> None:
    handles = [store, other_handle(store)]
    try:
        with ThreadPoolExecutor(8) as pool:
            taken = list(pool.map(
                lambda i: handles[i % 2].schedule(TakeSlot("crowd", f"t{i}", 5, 60.0)),
                range(40)))
        assert taken.count(True) == 5
    finally:
        handles[1].close()


def test_a_holder_that_died_frees_its_slot_when_its_lease_ends(store: Store) -> None:
    assert store.schedule(TakeSlot("leased", "gone", 1, 0.2))
    assert not store.schedule(TakeSlot("leased", "next", 1, 0.2))
    time.sleep(0.3)
    assert store.schedule(TakeSlot("leased", "next", 1, 60.0))
