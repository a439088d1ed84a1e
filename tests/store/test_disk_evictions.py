"""Evictions counted on diskcache (ops counters `evicted_lru`, `evicted_expiry`): diskcache counts
none, so the adapter counts the rows its cull deletes, and `flush` adds them to the counters."""

from __future__ import annotations

from pathlib import Path

from caching_proxy.store import DiskStore
from support.entries import make_entry


def test_entries_evicted_past_the_size_bound_are_counted(tmp_path: Path) -> None:
    store = DiskStore(str(tmp_path), size_limit=200_000)
    for n in range(40):
        store.put(make_entry(f"http://o:80/e{n}", body=b"e" * 20_000), 600)
    kept = store.usage_estimate().entries
    assert kept < 40  # the bound was enforced, so something was evicted
    assert store.counters().get("evicted_lru", 0) == 0  # counted only once flushed
    store.flush()
    counted = store.counters()
    assert counted["evicted_lru"] >= 40 - kept  # markers beside the responses may go too
    assert counted.get("evicted_expiry", 0) == 0
    store.flush()
    assert store.counters()["evicted_lru"] == counted["evicted_lru"]  # handed over once
    store.close()


def test_a_store_that_evicts_nothing_counts_nothing(tmp_path: Path) -> None:
    store = DiskStore(str(tmp_path))
    for n in range(5):
        store.put(make_entry(f"http://o:80/k{n}"), 600)
    store.flush()
    assert "evicted_lru" not in store.counters() and "evicted_expiry" not in store.counters()
    store.close()
