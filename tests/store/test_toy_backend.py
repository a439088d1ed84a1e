"""A backend written in this file alone (a dict and a lock), registered under `toy:` through the
store's registry, passes the store contract tests: every test of the layout, tags, use counts
and the sync/async check that takes a `store` (or `any_store`), run here against it.

What it takes to add a backend: implement store/backend.py's Backend (the data calls of
`Values`, `Locks`, `UseCounts`, `Counters`, `Schedules`, `Contents`, `Handle`), declare its `Traits`, and
`register(scheme, opener)`. No other module of the package changes.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import pickle
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import test_store_async
import test_store_layout
import test_store_schedules
import test_store_tags
import test_store_use_counts

from caching_proxy.policy.origin_budget import reserve
from caching_proxy.store import Store, Traits, Usage, open_store, register, unregister
from caching_proxy.store.backend import SEP, Backend, EntryTooLarge, Unreadable
from caching_proxy.store.entry import Entry
from support.entries import make_entry
from support.store_checks import check_same_as_sync

SCHEME = "toy"
VALUE, LOCK, USES, COUNT = "value", "lock", "uses", "count"
SCHEDULE, PAUSE, SLOTS = "schedule", "pause", "slots"
INF = float("inf")


@dataclass(slots=True)
class Record:
    data: Any  # a value's pickle (bytes), a lock's token, a count
    deadline: float  # time.monotonic() it expires at
    entry: bool = False  # a stored response (counted by `usage`)


# What every handle on one location sees, as every process sees one folder: name -> the dict of
# (kind, key) -> Record, and the lock every call holds throughout (so each call is atomic).
_spaces: dict[str, tuple[dict[tuple[str, str], Record], threading.Lock]] = {}


class ToyBackend:
    """The Backend interfaces over one dict and one lock: local, not shared beyond the process,
    synchronous (the drivers make its calls directly). Values are kept pickled, so a read gives
    a copy, as a real medium does."""

    traits = Traits()

    def __init__(self, location: str) -> None:
        self.location = location
        self._data, self._lock = _spaces.setdefault(location, ({}, threading.Lock()))

    def _live(self, kind: str, key: str) -> Record | None:
        found = self._data.get((kind, key))
        if found is not None and found.deadline <= time.monotonic():
            del self._data[kind, key]
            return None
        return found

    def _put(self, key: str, value: object, expire: float, keep_later: bool = False) -> None:
        deadline = time.monotonic() + expire
        current = self._live(VALUE, key)
        if keep_later and current is not None:
            deadline = max(deadline, current.deadline)
        self._data[VALUE, key] = Record(pickle.dumps(value), deadline, isinstance(value, Entry))

    # -- Values --------------------------------------------------------------------------------

    def get(self, key: str, max_inline: int | None = None) -> object | None:
        with self._lock:
            found = self._live(VALUE, key)
        if found is None:
            return None
        if max_inline is not None and len(found.data) > max_inline:
            raise EntryTooLarge(key)
        try:
            return pickle.loads(found.data)
        except Exception as e:
            raise Unreadable(key) from e

    def get_many(self, keys: Iterable[str]) -> Iterator[object | None]:
        for key in keys:
            try:
                yield self.get(key)
            except Unreadable:
                yield None

    def has(self, key: str) -> bool:
        with self._lock:
            return self._live(VALUE, key) is not None

    def set(self, key: str, value: object, expire: float, group: str | None = None,
            keep_later: bool = False) -> bool:
        if group is not None and not key.startswith(group + SEP):
            raise ValueError(f"{key!r} is not named as a member of group {group!r}")
        with self._lock:
            self._put(key, value, expire, keep_later)
        return True

    def replace(self, key: str, value: object, expire: float,
                lock: tuple[str, str] | None = None) -> bool:
        if SEP in key:
            raise ValueError(f"{key!r} is a group member: it has no group of its own")
        with self._lock:
            self._put(key, value, expire)
            for member in self._members(key):
                del self._data[VALUE, member]
            if lock is not None:
                self._release(*lock)
        return True

    def delete(self, keys: Iterable[str]) -> int:
        with self._lock:
            live = [key for key in keys if self._live(VALUE, key) is not None]
            for key in live:
                del self._data[VALUE, key]
        return len(live)

    def expiry(self, key: str) -> float | None:
        with self._lock:
            found = self._live(VALUE, key)
        return None if found is None else found.deadline - time.monotonic()

    def members(self, group: str) -> list[str]:
        with self._lock:
            return self._members(group)

    def _members(self, group: str) -> list[str]:
        named = [key for kind, key in self._data if kind == VALUE and key.startswith(group + SEP)]
        return [key for key in named if self._live(VALUE, key) is not None]

    def scan(self, members: bool = False) -> Iterator[str]:
        with self._lock:
            keys = [key for kind, key in list(self._data) if kind == VALUE
                    and self._live(VALUE, key) is not None and (members or SEP not in key)]
        return iter(keys)

    # -- Locks, UseCounts, Counters ------------------------------------------------------------

    def add(self, key: str, token: str, ttl: float) -> bool:
        with self._lock:
            if self._live(LOCK, key) is not None:
                return False
            self._data[LOCK, key] = Record(token, time.monotonic() + ttl)
        return True

    def delete_if(self, key: str, token: str) -> bool:
        with self._lock:
            return self._release(key, token)

    def _release(self, key: str, token: str) -> bool:
        found = self._live(LOCK, key)
        if found is None or found.data != token:
            return False
        del self._data[LOCK, key]
        return True

    def count_use(self, key: str, window: float) -> int:
        with self._lock:
            found = self._live(USES, key)
            count = (0 if found is None else int(found.data)) + 1
            self._data[USES, key] = Record(count, time.monotonic() + window)
        return count

    def reserve(self, key: str, rate: float, burst: int, max_wait: float) -> float | None:
        with self._lock:
            found = self._live(SCHEDULE, key)
            now = time.time()
            place = reserve(0.0 if found is None else float(found.data), now, rate, burst,
                            max_wait)
            if place.wait is not None:
                self._data[SCHEDULE, key] = Record(place.tat, time.monotonic() + 3600)
        return place.wait

    def hold_off(self, key: str, seconds: float) -> float:
        with self._lock:
            found = self._live(PAUSE, key)
            now = time.time()
            until = max(0.0 if found is None else float(found.data), now + seconds)
            self._data[PAUSE, key] = Record(until, time.monotonic() + until - now)
        return until - now

    def held_off(self, key: str) -> float:
        with self._lock:
            found = self._live(PAUSE, key)
        return 0.0 if found is None else max(0.0, float(found.data) - time.time())

    def take_slot(self, key: str, token: str, limit: int, lease: float) -> bool:
        with self._lock:
            found = self._live(SLOTS, key)
            now = time.monotonic()
            holders = {t: d for t, d in (found.data if found else {}).items() if d > now}
            taken = len(holders) < limit
            if taken:
                holders[token] = now + lease
            self._data[SLOTS, key] = Record(holders, now + lease + 60)
        return taken

    def give_slot(self, key: str, token: str) -> None:
        with self._lock:
            found = self._live(SLOTS, key)
            if found is not None:
                found.data.pop(token, None)

    def add_counts(self, counts: dict[str, int]) -> None:
        with self._lock:
            for name, delta in counts.items():
                if delta:
                    found = self._data.get((COUNT, name))
                    self._data[COUNT, name] = Record((found.data if found else 0) + delta, INF)

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {key: int(record.data) for (kind, key), record in self._data.items()
                    if kind == COUNT}

    # -- Contents, Handle ----------------------------------------------------------------------

    def usage(self) -> Usage:
        with self._lock:
            live = [self._live(VALUE, key) for kind, key in list(self._data) if kind == VALUE]
        entries = [record for record in live if record is not None and record.entry]
        return Usage(len(entries), sum(len(record.data) for record in entries))

    def clear(self) -> Usage:
        before = self.usage()
        with self._lock:
            for kind, key in [name for name in self._data
                              if name[0] not in (COUNT, SCHEDULE, PAUSE, SLOTS)]:
                del self._data[kind, key]
        return before

    def flush(self) -> None:
        """Nothing deferred."""

    def close(self) -> None:
        """Nothing held: the dict stays for the location's other handles, as a folder does."""

    # -- for the contract tests' raw records (tests/support/store_checks.py) -------------------

    def raw(self, key: str) -> bytes:
        found = self._data[VALUE, key]
        assert isinstance(found.data, bytes)
        return found.data

    def write_raw(self, key: str, data: bytes, expire: float = 60) -> None:
        with self._lock:
            self._data[VALUE, key] = Record(data, time.monotonic() + expire)


def open_toy(location: str, options: object) -> Store:
    return Store(ToyBackend(location))


_names = itertools.count()


@pytest.fixture(scope="module", autouse=True)
def toy_scheme() -> Iterator[None]:
    register(SCHEME, open_toy)
    yield
    unregister(SCHEME)


@pytest.fixture
def store() -> Iterator[Store]:
    """The contract tests' store (tests/conftest.py's, overridden here): a fresh toy location."""
    location = f"{SCHEME}:space{next(_names)}"
    made = open_store(location)
    yield made
    made.close()
    _spaces.pop(location, None)


@pytest.fixture
def any_store(store: Store) -> Store:
    """tests/store/test_store_async.py's store, likewise."""
    return store


# Every contract test of these modules that runs on a `store` or `any_store`, collected here
# too, so with the fixtures above: the same function objects, the same parameters.
CONTRACT = [test for module in (test_store_layout, test_store_tags, test_store_use_counts,
                                test_store_async, test_store_schedules)
            for name, test in sorted(vars(module).items())
            if name.startswith("test_") and callable(test)
            and {"store", "any_store"} & set(inspect.signature(test).parameters)]
globals().update({test.__name__: test for test in CONTRACT})


def test_the_contract_tests_are_collected_here() -> None:
    assert len(CONTRACT) >= 30, [test.__name__ for test in CONTRACT]


def test_a_registered_scheme_opens_the_toy_with_its_traits(store: Store) -> None:
    assert isinstance(store.backend, ToyBackend)
    assert store.traits == Traits(remote=False, shared=False, async_capable=False)
    backend: Backend = store.backend  # it implements every Backend interface (statically too)
    assert backend.location == store.location


def test_the_asynchronous_driver_makes_the_toys_calls_synchronously(store: Store) -> None:
    asyncio.run(check_same_as_sync(store, "http://o:80/toy"))
    entry = make_entry("http://o:80/counted")
    asyncio.run(store.put_async(entry, 60))
    assert store.lookup(entry.url, []) == entry
    assert asyncio.run(store.acquire_async("lock", 5)) is not None
    assert asyncio.run(store.acquire_async("lock", 5)) is None


def test_a_memory_tier_needs_a_change_feed_the_toy_lacks() -> None:
    with pytest.raises(ValueError, match="reports its changes"):
        open_store(f"{SCHEME}:tiered", memory_size=1 << 20)
