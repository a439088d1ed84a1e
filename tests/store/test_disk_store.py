"""The diskcache store's own guarantees, on a real folder: variants, locks, counters, matching."""

from __future__ import annotations

import time
from pathlib import Path

from caching_proxy.store import DiskStore
from caching_proxy.store.disk.store import RECENCY_BUDGET
from support.entries import make_entry


def test_variants_entries_and_delete_matching(tmp_path: Path) -> None:
    store = DiskStore(str(tmp_path))
    store.put(make_entry("http://o:80/a", vary="Accept", value="x"), 60)
    store.put(make_entry("http://o:80/a", vary="Accept", value="y"), 60)
    store.put(make_entry("http://o:80/b"), 60)
    store.put(make_entry("http://o:80/api/c"), 60)
    assert sorted((e.url, e.vary_values) for e in store.entries()) == [
        ("http://o:80/a", ("x",)), ("http://o:80/a", ("y",)), ("http://o:80/api/c", ()),
        ("http://o:80/b", ()),
    ]
    assert store.lookup("http://o:80/a", [("Accept", "y")]) is not None
    assert store.delete_matching(lambda url: url.endswith("/a")) == 2
    assert store.lookup("http://o:80/a", [("Accept", "y")]) is None
    assert len(list(store.entries())) == 2
    store.close()


def test_lock_is_exclusive_and_expires(tmp_path: Path) -> None:
    one, two = DiskStore(str(tmp_path)), DiskStore(str(tmp_path))
    token = one.acquire("k", 0.3)
    assert token
    assert not two.acquire("k", 0.3)
    one.release("k", token)
    assert two.acquire("k", 0.3)
    time.sleep(0.4)  # the holder never released: the lock expired by itself
    assert one.acquire("k", 0.3)
    one.close()
    two.close()


def test_counters_are_shared_not_entries_and_survive_clear(tmp_path: Path) -> None:
    one, two = DiskStore(str(tmp_path)), DiskStore(str(tmp_path))
    one.add_counts({"hits": 3, "misses": 1})
    two.add_counts({"hits": 2, "stale": 0})
    assert one.counters() == {"hits": 5, "misses": 1}
    assert list(one.entries()) == [] and one.usage_estimate().entries == 0
    one.put(make_entry("http://o:80/a"), 60)
    assert one.clear().entries == 1
    assert two.counters() == {"hits": 5, "misses": 1}
    one.close()
    two.close()


def test_usage_estimate_counts_responses_without_reading_them(tmp_path: Path) -> None:
    store = DiskStore(str(tmp_path))
    store.put(make_entry("http://o:80/a", body=b"x" * 5000, vary="Accept", value="x"), 60)
    store.put(make_entry("http://o:80/b", body=b"y" * 100_000), 60)  # in a file of its own
    store.add_counts({"hits": 1})
    entries, estimate = list(store.entries()), store.usage_estimate()
    exact = sum(entry.size for entry in entries)  # headers and bodies, read back
    assert estimate.entries == len(entries) == 2
    assert exact <= estimate.bytes < exact + 4096  # pickling adds a little
    store.delete_url("http://o:80/b")
    assert exact - 100_000 <= store.usage_estimate().bytes < exact - 100_000 + 2048
    store.close()


def test_large_entries_raw_body_files_and_max_inline(tmp_path: Path) -> None:
    import diskcache
    import pytest

    from caching_proxy.store.disk.store import EntryTooLarge

    store = DiskStore(str(tmp_path))
    body = bytes(range(256)) * 4096  # 1 MiB, in a file of its own
    store.put(make_entry("http://o:80/big", body), 60)
    store.put(make_entry("http://o:80/small", b"s"), 60)
    with pytest.raises(EntryTooLarge):
        store.lookup("http://o:80/big", [], max_inline=64 * 1024)
    assert store.lookup("http://o:80/small", [], max_inline=64 * 1024) is not None
    found = store.lookup("http://o:80/big", [])
    assert found is not None and found.body == body and found.status == 200
    assert found.hit_headers == make_entry("http://o:80/big", body).hit_headers
    # The body follows a small head in the value file, as raw bytes (not pickled).
    (value_file,) = [p for p in tmp_path.rglob("*.val") if p.stat().st_size > len(body)]
    assert value_file.read_bytes().endswith(body)
    # A record written by plain diskcache (a whole pickle) is still read.
    store.close()
    with diskcache.Cache(str(tmp_path)) as plain:
        plain.set("http://o:80/old", make_entry("http://o:80/old", body))
    store = DiskStore(str(tmp_path))
    old = store.lookup("http://o:80/old", [])
    assert old is not None and old.body == body
    store.close()


def access_times(store: DiskStore) -> dict[str, float]:
    return dict(store.backend.cache._sql("SELECT key, access_time FROM Cache").fetchall())


def test_reads_mark_recency_in_one_deferred_write(tmp_path: Path) -> None:
    store = DiskStore(str(tmp_path), lru_interval=0)
    store.put(make_entry("http://o:80/a"), 60)
    store.put(make_entry("http://o:80/b"), 60)
    before = access_times(store)
    time.sleep(0.05)
    assert store.lookup("http://o:80/a", []) is not None
    assert access_times(store) == before  # the read itself writes nothing
    store.flush()
    after = access_times(store)
    assert after["http://o:80/a"] > before["http://o:80/a"]
    assert after["http://o:80/b"] == before["http://o:80/b"]
    store.close()


def test_recency_writes_are_budgeted_and_the_rest_noted_at_a_later_read(tmp_path: Path) -> None:
    store = DiskStore(str(tmp_path), lru_interval=0)
    urls = [f"http://o:80/{i}" for i in range(RECENCY_BUDGET + 50)]
    for url in urls:
        store.put(make_entry(url), 60)
    before = access_times(store)
    time.sleep(0.05)
    for url in urls:
        assert store.lookup(url, []) is not None
    store.flush()
    after = access_times(store)
    moved = [url for url in urls if after[url] > before[url]]
    assert moved == urls[:RECENCY_BUDGET]
    for url in urls[RECENCY_BUDGET:]:  # still old, so read again they are noted this time
        assert store.lookup(url, []) is not None
    store.flush()
    again = access_times(store)
    assert all(again[url] > before[url] for url in urls)
    store.close()


def test_a_large_body_is_read_back_as_a_view_of_its_mapped_file(tmp_path: Path) -> None:
    from caching_proxy.store.disk.adapter import MAP_BODY_BYTES

    store = DiskStore(str(tmp_path))
    body = bytes(range(256)) * (MAP_BODY_BYTES // 256 + 3)
    store.put(make_entry("http://o:80/big", body=body), 60)
    found = store.lookup("http://o:80/big", [])
    assert found is not None and isinstance(found.body, memoryview)
    assert len(found.body) == len(body) and bytes(found.body[1000:2000]) == body[1000:2000]
    # Stored again (a 304 freshens it; a soft purge rewrites it) from the view itself.
    store.put(found, 60)
    again = store.lookup("http://o:80/big", [])
    assert again is not None and bytes(again.body) == body
    small = make_entry("http://o:80/small", body=b"s" * 1000)
    store.put(small, 60)
    assert type(store.lookup("http://o:80/small", []).body) is bytes  # type: ignore[union-attr]
    store.close()
