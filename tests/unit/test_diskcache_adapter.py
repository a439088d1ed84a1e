"""The diskcache internals store/diskcache_adapter.py relies on, each checked on its own so that a
diskcache upgrade that changes one fails here by name rather than as a wrong answer elsewhere."""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path

import diskcache
import pytest

from caching_proxy.store.backend import EntryTooLarge, Unreadable
from caching_proxy.store.disk.adapter import EntryDisk, RecencyCache

# Every column of diskcache's Cache table a query of the adapter names.
COLUMNS_USED = {"key", "raw", "expire_time", "access_time", "tag", "size", "mode", "filename",
                "value"}


@pytest.fixture
def cache(tmp_path: Path) -> RecencyCache:
    made = RecencyCache(str(tmp_path), disk=EntryDisk, eviction_policy="least-recently-used")
    made.lru_interval = 0
    return made


def test_private_attributes_exist(cache: RecencyCache) -> None:
    for name in ("_sql", "_con", "_disk", "_txn_id"):
        assert hasattr(cache, name), f"diskcache.Cache.{name} is gone"
    assert isinstance(cache._disk, EntryDisk)
    for name in ("_write", "filename", "_directory", "min_file_size", "pickle_protocol"):
        assert hasattr(cache._disk, name), f"diskcache.Disk.{name} is gone"
    assert isinstance(diskcache.core.MODE_PICKLE, int)
    assert diskcache.core.UNKNOWN is not None


def test_the_cache_table_has_the_columns_queried(cache: RecencyCache) -> None:
    columns = {row[1] for row in cache._sql("PRAGMA table_info(Cache)").fetchall()}
    assert columns >= COLUMNS_USED, COLUMNS_USED - columns
    indexes = {row[1] for row in cache._sql("PRAGMA index_list(Cache)").fetchall()}
    assert "Cache_key_raw" in indexes  # what the range query on keys scans


def test_str_keys_are_stored_as_themselves_with_raw_set(cache: RecencyCache) -> None:
    assert cache._disk.put("http://o:80/a\x00g\x00('x',)") == ("http://o:80/a\x00g\x00('x',)", True)
    cache.set("http://o:80/a\x00g\x00('x',)", 1)
    rows = cache._sql("SELECT key, raw FROM Cache").fetchall()
    assert rows == [("http://o:80/a\x00g\x00('x',)", 1)]


def test_sql_runs_on_this_threads_connection_and_con_writes(cache: RecencyCache) -> None:
    cache.set("k", 1)
    assert cache._sql("SELECT COUNT(*) FROM Cache").fetchall() == [(1,)]
    with cache.transact():
        cache._con.executemany("UPDATE Cache SET access_time = ? WHERE key = ?", [(1.0, "k")])
    assert cache._sql("SELECT access_time FROM Cache").fetchall() == [(1.0,)]


def test_transactions_nest_within_a_thread(cache: RecencyCache) -> None:
    # DiskBackend.set and .delete run diskcache calls (each a transaction) inside one.
    with cache.transact():
        cache.set("a", 1)
        with cache.transact():
            cache.set("b", 2)
        assert cache._txn_id == threading.get_ident()
    assert cache._txn_id is None and cache.get("b") == 2


def test_disk_filename_and_write(tmp_path: Path, cache: RecencyCache) -> None:
    disk = cache._disk
    assert disk._directory == str(tmp_path)
    relative, full = disk.filename("k", b"v")
    assert full == os.path.join(str(tmp_path), relative)
    assert disk._write(full, iter((b"ab", b"cd")), "xb") == 4
    assert Path(full).read_bytes() == b"abcd"


def test_peek_reads_without_writing_and_raises_what_it_cannot_decode(
    cache: RecencyCache,
) -> None:
    cache.set("small", b"s" * 10)
    cache.set("big", b"b" * 100_000)  # in a file of its own: its size is in the index
    before = cache._sql("SELECT key, access_time FROM Cache").fetchall()
    assert cache.peek("small") == b"s" * 10
    assert cache._sql("SELECT key, access_time FROM Cache").fetchall() == before
    with pytest.raises(EntryTooLarge):
        cache.peek("big", max_inline=1000)
    cache._sql("UPDATE Cache SET mode = ?, value = ? WHERE key = ?",
               (diskcache.core.MODE_PICKLE, b"\x80\x05junk", "small"))
    with pytest.raises(Unreadable):
        cache.peek("small")
    cache.set("gone", 1, expire=0.01)
    time.sleep(0.02)
    assert cache.peek("gone") is None


def test_live_keys_between_and_expire_time(cache: RecencyCache) -> None:
    cache.set("u\x00g\x001", 1, expire=60)
    cache.set("u\x00g\x002", 2, expire=0.01)
    cache.set("u\x00", 3)
    cache.set("u", 4)
    cache.set("uv\x00g", 5)
    cache.set(b"u\x00bytes", 6)
    time.sleep(0.02)
    assert sorted(cache.live_keys_between("u\x00", "u\x01")) == ["u\x00", "u\x00g\x001"]
    assert time.time() + 59 < (cache.expire_time("u\x00g\x001") or 0) <= time.time() + 60
    assert cache.expire_time("u") == math.inf
    assert cache.expire_time("u\x00g\x002") is None and cache.expire_time("none") is None


def test_tagged_usage_counts_inline_and_file_values(cache: RecencyCache) -> None:
    cache.set("a", b"x" * 100, tag="entry")
    cache.set("b", b"y" * 100_000, tag="entry")
    cache.set("c", b"z" * 100)
    count, size = cache.tagged_usage("entry")
    assert count == 2 and 100_100 <= size < 100_200


def test_add_treats_an_expired_row_as_absent(cache: RecencyCache) -> None:
    assert cache.add("lock", "a", expire=0.01)
    assert not cache.add("lock", "b", expire=5)
    time.sleep(0.02)
    assert cache.add("lock", "b", expire=5)


def test_cull_deletes_what_take_culled_counts_by_reason(tmp_path: Path) -> None:
    # diskcache's _cull, called on every set: expired rows first (its DELETE names
    # expire_time), then least recently used ones past size_limit.
    import inspect

    source = inspect.getsource(diskcache.Cache._cull)
    assert "expire_time IS NOT NULL" in source and "DELETE FROM Cache" in source
    made = RecencyCache(str(tmp_path), disk=EntryDisk, eviction_policy="least-recently-used",
                        size_limit=50_000)
    made.set("short", b"s", expire=0.001)
    expired_at = time.time() + 0.001
    while time.time() <= expired_at:  # past its expiry, without a sleep
        pass
    for n in range(20):
        made.set(f"k{n}", b"v" * 10_000)
    culled = made.take_culled()
    assert culled["expiry"] == 1 and culled["lru"] >= 1
    assert "short" not in made and made.take_culled() == {}
    made.close()
