"""The variant layout's guarantees, on both backends (a diskcache folder, a real redis-server;
and a test's own, tests/store/test_toy_backend.py):
writes that stay flat in the number of variants, an index that reports and lives as long as the
live variants only, owner-token locks, unreadable records dropped, purges that take every
variant."""

from __future__ import annotations

import pickle
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
import redis

from caching_proxy.store import DiskStore, Store, VaryIndex
from caching_proxy.store.redis.store import RedisStore
from support.entries import expires_at, make_entry
from support.redis_server import RedisServer
from support.store_checks import Calls, Recorder, raw_size, write_raw

URL = "http://o:80/ua"
HAVE_REDIS = shutil.which("redis-server") is not None


def ua(i: int) -> list[tuple[str, str]]:
    return [("User-Agent", f"agent/{i}")]


def test_a_put_writes_the_same_amount_after_3000_variants(store: Store) -> None:
    recorder = Recorder(store.backend)
    layout = Store(recorder)  # type: ignore[arg-type]
    layout.put(make_entry(URL, vary="User-Agent", value="agent/0"), 60)
    first_index = raw_size(store, URL)
    for i in range(1, 3000):
        layout.put(make_entry(URL, vary="User-Agent", value=f"agent/{i}"), 60)
    assert raw_size(store, URL) == first_index < 200
    recorder.sets.clear()
    layout.put(make_entry(URL, vary="User-Agent", value="agent/1000"), 60)  # stored before
    one = list(recorder.sets)
    recorder.sets.clear()
    layout.put(make_entry(URL, vary="User-Agent", value="agent/3000"), 60)  # a new one
    # The variant and the index, the index no larger than for the first variant.
    assert [size for _, size in recorder.sets] == [size for _, size in one]
    assert len(recorder.sets) == 2 and recorder.sets[1][0] == URL
    assert len(store.variant_keys(URL)) == 3001
    assert store.lookup(URL, ua(1234)) is not None


def test_a_hit_is_one_read_without_vary_and_two_with(store: Store) -> None:
    recorder = Recorder(store.backend)
    layout = Store(recorder)  # type: ignore[arg-type]
    layout.put(make_entry("http://o:80/plain"), 60)
    layout.put(make_entry(URL, vary="User-Agent", value="agent/1"), 60)
    recorder.gets.clear()
    assert layout.lookup("http://o:80/plain", []) is not None
    assert len(recorder.gets) == 1
    assert layout.lookup(URL, ua(1)) is not None
    assert len(recorder.gets) == 3


def test_a_disk_hit_is_one_sqlite_statement(tmp_path: Path) -> None:
    store = DiskStore(str(tmp_path))
    store.put(make_entry("http://o:80/plain"), 60)
    statements: list[str] = []
    store.backend.cache._con.set_trace_callback(statements.append)
    try:
        assert store.lookup("http://o:80/plain", []) is not None
    finally:
        store.backend.cache._con.set_trace_callback(None)
    assert len(statements) == 1 and statements[0].startswith("SELECT"), statements
    store.close()


def coded(coding: str) -> list[tuple[str, str]]:
    return [("Accept-Encoding", coding)]


def test_lookup_first_reads_the_url_once(store: Store) -> None:
    calls = Calls(store.backend)
    layout = Store(calls)  # type: ignore[arg-type]
    wanted = [coded("br"), coded("gzip"), coded("zstd")]
    assert layout.lookup_first(URL, wanted) is None
    assert calls.names == ["get"]  # nothing stored: one read, not one per set
    store.put(make_entry(URL, body=b"gz", vary="Accept-Encoding", value="gzip"), 60)
    store.put(make_entry(URL, body=b"zs", vary="Accept-Encoding", value="zstd"), 60)
    calls.names.clear()
    found = layout.lookup_first(URL, wanted)
    assert found is not None and found[0] == 1 and found[1].body == b"gz"
    assert calls.names == ["get", "get", "get"]  # the index, br's variant, gzip's
    later = layout.lookup_first(URL, wanted[2:])
    assert later is not None and later[1].body == b"zs"
    store.put(make_entry(URL, body=b"plain"), 60)
    calls.names.clear()
    plain = layout.lookup_first(URL, wanted)
    assert plain is not None and plain[0] == 0 and plain[1].body == b"plain"
    assert calls.names == ["get"]


def test_lookup_first_passes_over_what_is_too_large_to_read_inline(tmp_path: Path) -> None:
    store = DiskStore(str(tmp_path))
    store.put(make_entry(URL, body=b"b" * 50_000, vary="Accept-Encoding", value="br"), 60)
    store.put(make_entry(URL, body=b"g", vary="Accept-Encoding", value="gzip"), 60)
    found = store.lookup_first(URL, [coded("br"), coded("gzip")], max_inline=10_000)
    assert found is not None and found[0] == 1 and found[1].body == b"g"
    assert store.lookup_first(URL, [coded("br")], max_inline=10_000) is None
    store.close()


def test_only_live_variants_are_reported(store: Store) -> None:
    for i in range(5):
        store.put(make_entry(URL, vary="User-Agent", value=f"agent/{i}"), 0.3 if i < 3 else 60)
    assert len(store.variant_keys(URL)) == 5
    time.sleep(0.5)
    live = store.variant_keys(URL)
    assert len(live) == 2 and all(key.endswith(("('agent/3',)", "('agent/4',)")) for key in live)
    assert sorted(e.vary_values for e in store.entries()) == [("agent/3",), ("agent/4",)]
    assert store.usage_estimate().entries == 2
    assert store.lookup(URL, ua(0)) is None and store.lookup(URL, ua(4)) is not None


def test_the_index_lives_as_long_as_its_longest_lived_variant(store: Store) -> None:
    store.put(make_entry(URL, vary="User-Agent", value="agent/long"), 60)
    store.put(make_entry(URL, vary="User-Agent", value="agent/short"), 5)  # must not shorten it
    longest = max(expires_at(store, key) for key in store.variant_keys(URL))
    assert expires_at(store, URL) >= longest - 0.01  # Redis' PTTL is in whole milliseconds
    assert expires_at(store, URL) < time.time() + 61  # ... and it does expire


def test_the_index_expires_with_its_last_variant(store: Store) -> None:
    store.put(make_entry(URL, vary="User-Agent", value="agent/1"), 0.2)
    store.put(make_entry(URL, vary="User-Agent", value="agent/2"), 0.4)
    assert store.has_url(URL)
    time.sleep(0.3)
    assert store.has_url(URL) and store.variant_keys(URL)
    time.sleep(0.3)
    assert not store.has_url(URL) and store.variant_keys(URL) == []


def test_release_never_removes_the_next_holders_lock(store: Store) -> None:
    first = store.acquire("k", 0.2)
    assert first is not None
    assert store.acquire("k", 5) is None
    time.sleep(0.3)  # first's lock expired by itself
    second = store.acquire("k", 5)
    assert second is not None and second != first
    assert not store.release("k", first)
    assert store.acquire("k", 5) is None  # still second's
    assert store.release("k", second)
    assert store.acquire("k", 5) is not None


def test_a_put_without_vary_is_one_call_that_drops_variants_and_releases_the_lock(
    store: Store,
) -> None:
    for i in range(3):
        store.put(make_entry(URL, vary="User-Agent", value=f"agent/{i}"), 60)
    token = store.acquire(URL, 30)
    assert token is not None
    calls = Calls(store.backend)
    Store(calls).put(make_entry(URL, body=b"plain"), 60, lock=(URL, token))  # type: ignore[arg-type]
    assert calls.names == ["replace"]
    assert store.variant_keys(URL) == []
    found = store.lookup(URL, ua(1))
    assert found is not None and found.body == b"plain"
    assert store.acquire(URL, 30) is not None  # released with the write


def test_a_put_never_releases_another_holders_lock(store: Store) -> None:
    holder = store.acquire(URL, 30)
    assert holder is not None
    store.put(make_entry(URL), 60, lock=(URL, "an-expired-holder"))
    store.put(make_entry(URL, vary="User-Agent", value="agent/1"), 60,
              lock=(URL, "an-expired-holder"))
    assert store.acquire(URL, 30) is None
    assert store.release(URL, holder)


def test_a_put_with_vary_releases_the_lock_after_its_writes(store: Store) -> None:
    token = store.acquire(URL, 30)
    assert token is not None
    calls = Calls(store.backend)
    layout = Store(calls)  # type: ignore[arg-type]
    layout.put(make_entry(URL, vary="User-Agent", value="agent/1"), 60, lock=(URL, token))
    assert calls.names[-1] == "delete_if" and calls.names.count("delete_if") == 1
    assert store.lookup(URL, ua(1)) is not None
    assert store.acquire(URL, 30) is not None


def test_a_lock_of_another_name_is_released_in_a_call_of_its_own(store: Store) -> None:
    token = store.acquire("other", 30)
    assert token is not None
    calls = Calls(store.backend)
    Store(calls).put(make_entry(URL), 60, lock=("other", token))  # type: ignore[arg-type]
    assert calls.names == ["replace", "delete_if"]
    assert store.acquire("other", 30) is not None


@pytest.mark.parametrize("data", [
    b"\x80\x05garbage that is no pickle",
    b"E\x80\x05garbage behind the mark of a response",
    # A Vary index of the previous layout (field names and the set of variant keys), as the
    # Redis store marked it and as diskcache pickled it.
    b"I" + pickle.dumps(VaryIndex(("user-agent",), {"http://o:80/ua\x00('x',)"})),  # type: ignore[arg-type]
    pickle.dumps(VaryIndex(("user-agent",), {"http://o:80/ua\x00('x',)"})),  # type: ignore[arg-type]
], ids=["garbage", "marked-garbage", "old-redis-index", "old-disk-index"])
def test_an_unreadable_record_counts_as_absent_and_is_dropped(store: Store, data: bytes) -> None:
    write_raw(store, URL, data)
    assert store.has_url(URL)
    assert store.lookup(URL, ua(1)) is None
    assert not store.has_url(URL)  # dropped
    write_raw(store, URL, data)
    store.put(make_entry(URL, vary="User-Agent", value="agent/1"), 60)
    assert store.lookup(URL, ua(1)) is not None
    write_raw(store, URL, data)
    store.put(make_entry(URL), 60)
    assert store.lookup(URL, []) is not None
    write_raw(store, URL, data)
    assert store.delete_url(URL) == 0 and not store.has_url(URL)
    write_raw(store, URL, data)
    store.put(make_entry("http://o:80/other"), 60)
    assert [e.url for e in store.entries()] == ["http://o:80/other"]


def test_an_unreadable_variant_is_a_miss_and_replaced(store: Store) -> None:
    store.put(make_entry(URL, vary="User-Agent", value="agent/1"), 60)
    (key,) = store.variant_keys(URL)
    write_raw(store, key, b"\x80\x05garbage")
    assert store.lookup(URL, ua(1)) is None
    assert store.variant_keys(URL) == []
    store.put(make_entry(URL, vary="User-Agent", value="agent/1"), 60)
    assert store.lookup(URL, ua(1)) is not None


def test_delete_and_purge_remove_every_variant(store: Store) -> None:
    for url in (URL, "http://o:80/other"):
        for i in range(5):
            store.put(make_entry(url, vary="User-Agent", value=f"agent/{i}"), 60)
    store.put(make_entry("http://o:80/plain"), 60)
    assert store.delete_url(URL) == 5
    assert store.variant_keys(URL) == [] and not store.has_url(URL)
    assert all(store.lookup(URL, ua(i)) is None for i in range(5))
    assert store.delete_matching(lambda url: url.endswith("/other")) == 5
    assert [e.url for e in store.entries()] == ["http://o:80/plain"]
    assert store.delete_url("http://o:80/plain") == 1 and list(store.entries()) == []


def test_a_new_vary_replaces_every_variant(store: Store) -> None:
    for i in range(3):
        store.put(make_entry(URL, vary="User-Agent", value=f"agent/{i}"), 60)
    store.put(make_entry(URL, vary="Accept-Language", value="agent/1"), 60)
    assert len(store.variant_keys(URL)) == 1
    assert store.lookup(URL, ua(1)) is None  # same value, other field: not this variant
    assert store.lookup(URL, [("Accept-Language", "agent/1")]) is not None
    store.put(make_entry(URL), 60)  # no Vary any more
    assert store.variant_keys(URL) == [] and store.lookup(URL, []) is not None


def test_a_purged_variant_is_never_reached_again(store: Store) -> None:
    """Even when deleting it failed (on Redis the group's set can be evicted before its
    members): variants are reached through the generation of the index that stored them."""
    store.put(make_entry(URL, vary="User-Agent", value="agent/1", body=b"old"), 60)
    store.backend.delete([URL])  # the index goes, its variant is left behind
    store.put(make_entry(URL, vary="User-Agent", value="agent/2"), 60)
    assert store.lookup(URL, ua(1)) is None
    assert store.lookup(URL, ua(2)) is not None


def test_redis_stores_no_index_for_a_variant_too_large_to_store(
    store_redis: RedisServer,
) -> None:
    redis.Redis.from_url(store_redis.url).flushdb()
    small = RedisStore(store_redis.url, max_value_size=10_000)
    small.put(make_entry(URL, body=b"x" * 20_000, vary="User-Agent", value="agent/1"), 60)
    assert not small.has_url(URL) and small.variant_keys(URL) == []
    small.close()


@pytest.mark.parametrize("vary", ["", "User-Agent"])
def test_a_put_too_large_for_redis_still_releases_the_lock(
    store_redis: RedisServer, vary: str,
) -> None:
    redis.Redis.from_url(store_redis.url).flushdb()
    small = RedisStore(store_redis.url, max_value_size=10_000)
    token = small.acquire(URL, 30)
    assert token is not None
    small.put(make_entry(URL, body=b"x" * 20_000, vary=vary, value="agent/1"), 60,
              lock=(URL, token))
    assert not small.has_url(URL)
    assert small.acquire(URL, 30) is not None
    small.close()


def test_a_script_the_server_lacks_is_sent_whole_to_that_server(
    store_redis: RedisServer,
) -> None:
    """As on a replica just promoted (Redis 7 replicates no script cache): EVAL of the text on
    the node that answered NOSCRIPT, never SCRIPT LOAD on every primary, each client kind."""
    import asyncio
    import hashlib

    from caching_proxy.store.redis import scripts as redis_scripts

    client = redis.Redis.from_url(store_redis.url)
    client.flushdb()
    store = RedisStore(store_redis.url)
    sha = hashlib.sha1(redis_scripts.REPLACE.encode()).hexdigest()
    for put in (store.put, lambda e, t: asyncio.run(store.put_async(e, t))):
        client.script_flush()
        client.config_resetstat()
        put(make_entry(URL, body=b"after a flush"), 60)
        stats = client.info("commandstats")
        assert stats["cmdstat_evalsha"]["calls"] == 1 and stats["cmdstat_eval"]["calls"] == 1
        assert not any(name.startswith("cmdstat_script") for name in stats)
        assert client.script_exists(sha) == [True]  # cached there by the EVAL
        found = store.lookup(URL, [])
        assert found is not None and found.body == b"after a flush"
    store.close()


def test_redis_replaces_a_url_in_one_script(store_redis: RedisServer) -> None:
    """A response without Vary: SET, its variants' DELs and the lock's release are one EVALSHA
    from the client, none of them a round trip of its own."""
    client = redis.Redis.from_url(store_redis.url)
    client.flushdb()
    store = RedisStore(store_redis.url)
    for i in range(2):
        store.put(make_entry(URL, vary="User-Agent", value=f"agent/{i}"), 60)
    token = store.acquire(URL, 30)
    assert token is not None
    client.config_resetstat()
    store.put(make_entry(URL), 60, lock=(URL, token))
    stats = client.info("commandstats")
    sent = {name: stats[name]["calls"] for name in stats
            if name not in ("cmdstat_config|resetstat", "cmdstat_info")}
    # Inside the script: SET, ZRANGE, a DEL per variant and one for the group, the lock's GET
    # and DEL, PUBLISH (commandstats counts what scripts run too).
    assert sent == {"cmdstat_evalsha": 1, "cmdstat_set": 1, "cmdstat_zrange": 1,
                    "cmdstat_del": 4, "cmdstat_get": 1, "cmdstat_publish": 1}, sent
    assert store.variant_keys(URL) == [] and store.acquire(URL, 30) is not None
    store.close()


def test_members_must_be_named_under_their_group(store: Store) -> None:
    with pytest.raises(ValueError):
        store.backend.set("http://o:80/elsewhere", make_entry(URL), 60, group=URL)


def _keys(found: Iterable[str]) -> list[str]:
    return sorted(found)


def test_scan_lists_primary_keys_and_members_never_locks(store: Store) -> None:
    store.put(make_entry(URL, vary="User-Agent", value="agent/1"), 60)
    store.put(make_entry("http://o:80/plain"), 60)
    assert store.acquire("http://o:80/plain", 5)
    store.add_counts({"hits": 1})
    assert _keys(store.backend.scan()) == ["http://o:80/plain", URL]
    assert _keys(store.backend.scan(members=True)) == _keys(
        ["http://o:80/plain", URL, *store.variant_keys(URL)])
