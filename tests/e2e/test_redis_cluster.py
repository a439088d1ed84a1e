"""The Redis store on a real Redis Cluster (three masters, each with a replica) and on a real
Sentinel setup: two proxy processes share hits and purges (by URL with its Vary variants, by tag,
soft, clear), seen by each other's memory tier; a purge on any master reaches another memory
tier within milliseconds (measured); --stats and --list cover every master; a master that hangs
(SIGSTOP) costs each request the store timeout at most; a manual CLUSTER FAILOVER serves no wrong
bytes and purges after it reach both proxies; then a master is
killed (SIGKILL): answers stay the right bytes, hits resume once its replica is promoted, and the
change subscriptions move to it. A counting origin proves each HIT (its count does not move)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from caching_proxy.policy.keys import primary_key
from caching_proxy.store import Store, open_store
from caching_proxy.store.generations import slot_of
from caching_proxy.store.memory.tier import MemoryTier
from caching_proxy.store.redis.keys import COUNTERS, redis_key
from caching_proxy.store.redis.store import OUTAGE_BACKOFF, StoreUnavailable
from support.client import Response, fetch
from support.entries import make_entry
from support.origin import Origin
from support.polling import wait_until
from support.proxy import Proxy, cli
from support.redis_cluster import (
    LocalCluster,
    LocalSentinel,
    admin,
    info,
    info_cluster,
    require_redis_tools,
    wait_subscribed,
)
from support.store_checks import check_same_as_sync

FRESH = ("Cache-Control", "max-age=600")
FAILOVER_BOUND = 15.0  # seconds for hits to resume after a master is killed
# A change reaches another proxy's memory tier once its message arrives from the master that
# ran it (about a millisecond here, see the purge window test); room for HTTP round trips.
TOLD_WITHIN = 1.0
VARIANTS = ({"Accept": "a/b"}, {"Accept": "c/d"})
S = TypeVar("S", LocalCluster, LocalSentinel)


@pytest.fixture(scope="module")
def shared_origin() -> Iterator[Origin]:
    server = Origin()
    yield server
    server.stop()


def running(setup: S) -> Iterator[S]:
    require_redis_tools()
    setup.start()
    yield setup
    setup.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from running(LocalCluster(tmp_path_factory.mktemp("cluster")))


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSentinel]:
    yield from running(LocalSentinel(tmp_path_factory.mktemp("sentinel")))


def proxy_pair(origin: Origin, store: str, folder: Path, ports: list[int]) -> Iterator[list[Proxy]]:
    """Two proxies on `store`, once both listen for changes on each server at `ports`."""
    proxies = [Proxy(origin.url, folder / name, "--store", store, "--quiet") for name in "ab"]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(Proxy.start, proxies))
    for port in ports:
        wait_subscribed([port], 2)
    yield proxies
    for p in proxies:
        p.stop()


@pytest.fixture(scope="module")
def on_cluster(cluster: LocalCluster, shared_origin: Origin,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Proxy]]:
    yield from proxy_pair(shared_origin, cluster.url, tmp_path_factory.mktemp("on-cluster"),
                          primaries(cluster))


@pytest.fixture(scope="module")
def on_sentinel(sentinel: LocalSentinel, shared_origin: Origin,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Proxy]]:
    yield from proxy_pair(shared_origin, sentinel.url, tmp_path_factory.mktemp("on-sentinel"),
                          [sentinel.master.port])


def primaries(cluster: LocalCluster) -> list[int]:
    return sorted(set(cluster.slots().values()))


def key_of(origin: Origin, path: str) -> str:
    return primary_key("http", "127.0.0.1", origin.port, path)


def paths_by_master(cluster: LocalCluster, origin: Origin, prefix: str,
                    per_master: int) -> dict[int, list[str]]:
    """`per_master` new paths whose keys each master holds."""
    slots = cluster.slots()
    found: dict[int, list[str]] = {port: [] for port in set(slots.values())}
    for i in range(10_000):
        path = f"/{prefix}{i}"
        mine = found[cluster.master_of(redis_key(key_of(origin, path)), slots)]
        if len(mine) < per_master:
            mine.append(path)
        if all(len(paths) == per_master for paths in found.values()):
            return found
    raise AssertionError("no spread of paths found")


def logs(*proxies: Proxy) -> str:
    """The last lines each proxy logged, for a failure's message."""
    return "".join(f"\n{p.url} logged:\n" + "\n".join(p.lines[-40:]) for p in proxies)


def stored_and_hit(origin: Origin, a: Proxy, b: Proxy, path: str, *fields: tuple[str, str],
                   variants: tuple[dict[str, str], ...] = ({},)) -> None:
    """Each of `variants` (request fields) of `path` fetched by `a`, then a HIT on `b` three
    times (the memory tier keeps a copy from its second read on)."""
    origin.route(path, 200, [FRESH, *fields], f"body of {path}".encode())
    before = origin.count(path)
    for headers in variants:
        assert fetch(a.url + path, headers=headers).x_cache == "MISS"
    for headers in variants:
        for _ in range(3):
            hit = fetch(b.url + path, headers=headers)
            assert (hit.x_cache, hit.body) == ("HIT", f"body of {path}".encode()), (
                f"B answered with {hit.headers}" + logs(a, b))
    assert origin.count(path) == before + len(variants)


def refetched(origin: Origin, proxy: Proxy, path: str,
              headers: dict[str, str] | None = None) -> Response:
    """`proxy`'s answer for `path` once it goes to the origin again, as it must within
    TOLD_WITHIN of a purge elsewhere (until then its memory tier may still answer)."""
    before = origin.count(path)
    deadline = time.monotonic() + TOLD_WITHIN
    while True:
        answer = fetch(proxy.url + path, headers=headers)
        if origin.count(path) > before:
            return answer
        assert time.monotonic() < deadline, f"{path} still answered from the store"
        time.sleep(0.01)


def json_of(*args: str) -> Any:
    done = cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# -- Redis Cluster ----------------------------------------------------------------------------


def test_hits_shared_and_listed_on_every_master(
        cluster: LocalCluster, shared_origin: Origin, on_cluster: list[Proxy]) -> None:
    a, b = on_cluster
    spread = paths_by_master(cluster, shared_origin, "spread", per_master=2)
    paths = [path for paths in spread.values() for path in paths]
    for path in paths:
        stored_and_hit(shared_origin, a, b, path)
    rows = json_of("--store", cluster.url, "--list")["entries"]
    listed = {row["url"] for row in rows}
    assert {key_of(shared_origin, path) for path in paths} <= listed
    assert json_of("--store", cluster.url, "--stats")["stats"]["entries"] == len(rows)


def settled_hits(cluster: LocalCluster) -> int:
    """The cluster's hit count once the module's other proxies have written theirs (each writes
    its counts about once a second): two reads over a second apart that agree."""
    last = None
    deadline = time.monotonic() + 15
    while True:
        hits: int = json_of("--store", cluster.url, "--stats")["stats"]["hits"]
        if hits == last or time.monotonic() > deadline:
            return hits
        last = hits
        time.sleep(1.2)


def test_a_proxy_on_a_cluster_shuts_down_cleanly_with_its_counts_written(
        cluster: LocalCluster, shared_origin: Origin, tmp_path: Path) -> None:
    # Its asyncio cluster client is closed on the loop at shutdown (left to the collector, it
    # logged "Unclosed RedisCluster client" and "Unclosed ClusterNode object" errors), after
    # the counters went to the store.
    path = "/clean-exit"
    shared_origin.route(path, 200, [FRESH], b"clean")
    before = settled_hits(cluster)
    with Proxy(shared_origin.url, tmp_path / "cache", "--store", cluster.url) as proxy:
        assert [fetch(proxy.url + path).x_cache for _ in range(3)] == ["MISS", "HIT", "HIT"]
    assert proxy.proc is not None and proxy.proc.returncode == 0, proxy.output
    assert "Unclosed" not in proxy.output and "Traceback" not in proxy.output, proxy.output
    assert json_of("--store", cluster.url, "--stats")["stats"]["hits"] == before + 2


def test_url_purge_takes_every_variant_on_both_proxies(
        shared_origin: Origin, on_cluster: list[Proxy]) -> None:
    a, b = on_cluster
    stored_and_hit(shared_origin, a, b, "/vary", ("Vary", "Accept"), variants=VARIANTS)
    assert fetch(a.url + "/vary", method="PURGE").status == 200
    for accept in ("a/b", "c/d"):  # B's memory copies went with the store's
        again = refetched(shared_origin, b, "/vary", {"Accept": accept})
        assert again.x_cache == "MISS"
    assert shared_origin.count("/vary") == 4


def test_tag_purge_on_one_proxy_reaches_the_other(
        cluster: LocalCluster, shared_origin: Origin, on_cluster: list[Proxy]) -> None:
    a, b = on_cluster
    tagged = [paths[0] for paths in paths_by_master(cluster, shared_origin, "tag", 1).values()]
    for path in tagged:
        stored_and_hit(shared_origin, a, b, path, ("Surrogate-Key", "group-x"))
    purged = fetch(a.url + "/", method="PURGE", headers={"Surrogate-Key": "group-x"})
    assert json.loads(purged.body) == {"purged": len(tagged), "tags": ["group-x"]}
    assert [refetched(shared_origin, b, path).x_cache for path in tagged] == ["MISS"] * len(
        tagged)


def test_soft_purge_makes_the_other_proxy_revalidate(
        shared_origin: Origin, on_cluster: list[Proxy]) -> None:
    a, b = on_cluster
    stored_and_hit(shared_origin, a, b, "/soft", ("ETag", '"v1"'))
    soft = fetch(a.url + "/soft", method="PURGE", headers={"Fastly-Soft-Purge": "1"})
    assert soft.status == 200
    again = refetched(shared_origin, b, "/soft")
    assert again.body == b"body of /soft" and shared_origin.count("/soft") == 2
    assert shared_origin.seen[-1].header("If-None-Match") == '"v1"'


def test_clear_empties_every_master(
        cluster: LocalCluster, shared_origin: Origin, on_cluster: list[Proxy]) -> None:
    a, b = on_cluster
    paths = [p[0] for p in paths_by_master(cluster, shared_origin, "clear", 1).values()]
    for path in paths:
        stored_and_hit(shared_origin, a, b, path)
    done = cli("--store", cluster.url, "--clear-cache")
    assert done.returncode == 0, done.stderr
    assert json_of("--store", cluster.url, "--stats")["stats"]["entries"] == 0
    assert [refetched(shared_origin, b, path).x_cache for path in paths] == ["MISS"] * len(
        paths)


# How long after a purge's call returned another handle's memory tier may still answer the
# purged copy: the subscriber's own latency on one machine, with room for a loaded test host.
# On 2 shared cores one purge in 51 now and then waits 11 to 15 ms for the reader's thread to be
# scheduled (seen at 5.5 to 15 ms max, median 0.6 to 1.1 ms); what the per-master subscriptions
# removed was the cluster bus's Nagle delay: 2 to 4 purges in 51 over 10 ms, up to 21 to 38 ms.
PURGE_ALLOWANCE = 0.010
PURGES_LATE = 1  # of 51 over PURGE_ALLOWANCE
PURGE_MEDIAN = 0.003
MANUAL_FAILOVER_RETRY = 6.0  # seconds: past Redis's own manual failover timeout (5 s)
PURGE_LIMIT = 0.050
PURGES = 51  # 17 per master, one master after another


def test_locks_through_the_asyncio_client_on_a_cluster_and_on_sentinel(
        cluster: LocalCluster, sentinel: LocalSentinel) -> None:
    # The fill lock is taken on the event loop with redis-py's asyncio client: one holder per
    # key across processes, given back only by its token, on every kind of store.
    async def locks(url: str) -> None:
        store = open_store(url, timeout=1.0)
        try:
            for i in range(12):  # keys on every master
                key = f"http://o/lock{i}"
                token = await store.acquire_async(key, 30)
                assert token, url
                assert await store.acquire_async(key, 30) is None
                assert store.acquire(key, 30) is None  # the sync client sees the same lock
                assert not await store.release_async(key, "not-the-token")
                assert await store.release_async(key, token)
                again = await store.acquire_async(key, 30)
                assert again and await store.release_async(key, again)
        finally:
            store.close()

    for url in (cluster.url, sentinel.url):
        asyncio.run(locks(url))


def test_a_plain_put_drops_variants_and_releases_its_lock_on_every_master(
        cluster: LocalCluster) -> None:
    # One script names the URL, its group of variants and its lock, and deletes the variants
    # it finds in the group: all in the URL's slot, on whichever master holds it.
    async def replaced(store: Store, url: str) -> None:
        for i in range(3):
            await store.put_async(make_entry(url, vary="User-Agent", value=f"agent/{i}"), 60)
        assert len(store.variant_keys(url)) == 3
        token = await store.acquire_async(url, 30)
        assert token
        await store.put_async(make_entry(url, body=b"plain"), 60, lock=(url, token))
        assert store.variant_keys(url) == []
        found = await store.lookup_async(url, [("User-Agent", "agent/1")])
        assert found is not None and found.body == b"plain"
        again = await store.acquire_async(url, 30)  # released by the put
        assert again and await store.release_async(url, again)

    async def every(urls: list[str]) -> None:
        store = open_store(cluster.url, timeout=1.0)
        try:
            for url in urls:
                await replaced(store, url)
        finally:
            store.close()

    urls = [f"http://o/replace{i}" for i in range(9)]
    slots = cluster.slots()
    assert len({cluster.master_of(redis_key(url), slots) for url in urls}) == 3
    asyncio.run(every(urls))


def test_async_lookups_and_puts_match_the_sync_ones_on_a_cluster_and_on_sentinel(
        cluster: LocalCluster, sentinel: LocalSentinel) -> None:
    # Through the asyncio cluster client and Sentinel's asyncio master client (URLs on every
    # master of the cluster): the same responses, variants and tag markers as the sync path.
    async def same(url: str) -> None:
        store = open_store(url, timeout=1.0)
        try:
            for i in range(6):
                await check_same_as_sync(store, f"http://o/async{i}")
        finally:
            store.close()

    slots = cluster.slots()
    assert len({cluster.master_of(redis_key(f"http://o/async{i}/sync/ua"), slots)
                for i in range(6)}) > 1  # more than one master's keys
    for url in (cluster.url, sentinel.url):
        asyncio.run(same(url))


def test_a_purge_on_any_master_reaches_another_memory_tier_within_milliseconds(
        cluster: LocalCluster, shared_origin: Origin) -> None:
    """The window itself, store handles in this process: for each purge by one handle, the
    time from its call's return until the other handle's memory tier stops answering the purged
    copy (polled every 0.2 ms). With one subscription, on one master, the messages from the
    other two crossed the cluster bus: max 15 to 21 ms over 4 runs, ~1 purge in 10 over 10 ms."""
    writer, reader = open_store(cluster.url), open_store(cluster.url, memory_size=4 << 20)
    tier = reader.backend
    assert isinstance(tier, MemoryTier)
    spread = paths_by_master(cluster, shared_origin, "window", PURGES // 3)
    # A run of purges on each master in turn: messages close together on one cluster-bus link
    # are what Nagle's algorithm held back (README, "The memory tier").
    urls = [key_of(shared_origin, path) for paths in spread.values() for path in paths]
    try:
        masters = names(primaries(cluster))
        wait_for_failover(lambda: tier.changes.listening == masters, "subscribed on every master")
        for url in urls:
            writer.put(make_entry(url, body=b"purged"), 60)
        time.sleep(0.2)  # the puts' own announcements have arrived
        windows = []
        for url in urls:
            answered_from_memory(reader, tier, url)
            writer.delete_url(url)
            returned = time.monotonic()
            while body_of(reader, url) == b"purged":
                assert time.monotonic() - returned < 1.0, f"{url} still answered from memory"
                time.sleep(0.0002)  # lets the subscriber thread run
            windows.append(time.monotonic() - returned)
            time.sleep(0.005)  # well inside a delayed ACK (40 ms): what Nagle held back
        windows.sort()
        summary = (f"purge windows over {len(windows)}: median "
                   f"{windows[len(windows) // 2] * 1e3:.2f} ms, max {windows[-1] * 1e3:.2f} ms")
        print(summary)  # shown with -s
        late = [round(w * 1e3, 2) for w in windows if w > PURGE_ALLOWANCE]
        assert windows[len(windows) // 2] < PURGE_MEDIAN, summary
        assert windows[-1] < PURGE_LIMIT, summary
        assert len(late) <= PURGES_LATE, f"{summary}; over {PURGE_ALLOWANCE * 1e3:g} ms: {late}"
    finally:
        reader.close()
        writer.close()


def body_of(store: Store, url: str) -> bytes:
    found = store.lookup(url, [])
    return b"" if found is None else found.body


def answered_from_memory(store: Store, tier: MemoryTier, url: str) -> None:
    """Until `url` is answered from `tier` (its copy is kept from the second read on)."""
    for _ in range(100):
        hits = tier.hits
        assert body_of(store, url) == b"purged"
        if tier.hits > hits:
            return
        time.sleep(0.01)
    raise AssertionError(f"{url} never answered from memory")


def test_a_copy_read_right_after_a_write_outlives_the_copies_other_masters_forward(
        cluster: LocalCluster, shared_origin: Origin) -> None:
    """Each write's announcement reaches a subscriber once per master (the cluster forwards it
    over its bus, at times tens of ms late): counted once, by its ID, it leaves a copy read
    just after the write alone. Writes in runs on each master, as in the purge window test
    (where the bus copies came late), each read twice (a copy from the second read) as soon as
    its first announcement is counted; URLs of distinct counters, so that only a forwarded copy
    can drop one."""
    writer, reader = open_store(cluster.url), open_store(cluster.url, memory_size=4 << 20)
    tier = reader.backend
    assert isinstance(tier, MemoryTier)
    spread = paths_by_master(cluster, shared_origin, "forwarded", PURGES // 3)
    urls = list({slot_of(url): url for url in (
        key_of(shared_origin, path) for paths in spread.values() for path in paths)}.values())
    try:
        wait_for_failover(lambda: tier.changes.listening == names(primaries(cluster)),
                   "subscribed on every master")
        for url in urls:
            before = tier.changes.read(url)
            writer.put(make_entry(url, body=b"kept"), 60)
            announced = time.monotonic() + 1.0
            while tier.changes.read(url) == before:  # polled closely: before the copies come
                assert time.monotonic() < announced, f"{url}: no announcement within 1 s"
                time.sleep(0.0002)
            for _ in range(2):
                assert body_of(reader, url) == b"kept"
            time.sleep(0.005)
        time.sleep(0.2)  # every forwarded copy has arrived
        lost = []
        for url in urls:
            hits = tier.hits
            assert body_of(reader, url) == b"kept"
            if tier.hits == hits:
                lost.append(url)
        assert not lost, f"{len(lost)} of {len(urls)} copies dropped: {lost[:3]}"
    finally:
        reader.close()
        writer.close()


# A request while a master hangs: one store call waits the 0.25 s store timeout (then the
# proxy is silent for a second, RedisBackend's backoff likewise), so a request waits on the store
# about 0.25 s, 0.5 s at the very worst (a call answered, the next one timed out); the rest
# is the origin and two proxy processes, the cluster's six nodes and this test on 2 loaded cores.
HUNG_REQUEST_BOUND = 1.0
HANG = 3.0  # seconds: past the cluster's failure detection (node timeout 1 s)


def replica_of(master: int) -> int:
    """The port of the replica of the master at `master`."""
    replication = info(master, "replication")
    replica = replication.get("slave0")
    assert isinstance(replica, dict), f"no replica linked to {master}: {replication}"
    return int(replica["port"])


def until_shared_hits(cluster: LocalCluster, origin: Origin, a: Proxy, b: Proxy,
                      prefix: str) -> None:
    """Until a new URL on each master, stored by A, is a HIT on B and one stored by B a HIT on
    A (after a hang or a failover: the store answers both proxies again on every master)."""
    probes = {port: iter(paths) for port, paths in paths_by_master(
        cluster, origin, prefix, 100).items()}
    started = time.monotonic()
    for port, paths in probes.items():
        for one, other in ((a, b), (b, a)):
            while True:
                assert time.monotonic() - started < FAILOVER_BOUND, f"no hits on {port}"
                probe = next(paths)
                origin.route(probe, 200, [FRESH], b"probe")
                fetch(one.url + probe)
                if fetch(other.url + probe).x_cache == "HIT" and origin.count(probe) == 1:
                    break
                time.sleep(0.1)


def test_a_failed_counters_write_leaves_the_other_masters_answering(
        cluster: LocalCluster, shared_origin: Origin) -> None:
    """A proxy writes its counts once a second, in a thread, to the one master that holds the
    counters' key. When that master hangs, the write fails (logged at debug level) but starts
    no outage backoff: the store's calls on the other masters go on. (It did start one: in the
    hang test below, every request of a proxy passed through for a second, its memory tier's
    misses on healthy masters included.)"""
    cluster.wait_ready(FAILOVER_BOUND)
    holder = cluster.master_of(COUNTERS)
    path = next(p for port, paths in paths_by_master(cluster, shared_origin, "counted", 1).items()
                if port != holder for p in paths)
    url = key_of(shared_origin, path)
    store = open_store(cluster.url, timeout=0.25)
    node = cluster.node(holder)
    assert node.proc is not None
    try:
        store.put(make_entry(url, body=b"elsewhere"), 60)
        os.kill(node.proc.pid, signal.SIGSTOP)  # well within the node timeout: no failover
        try:
            with pytest.raises(StoreUnavailable):
                store.add_counts({"hits": 1})
            found = store.lookup(url, [])
        finally:
            os.kill(node.proc.pid, signal.SIGCONT)
        assert found is not None and found.body == b"elsewhere"
    finally:
        store.close()
    cluster.wait_ready(FAILOVER_BOUND)


def test_a_hung_master_costs_each_request_the_store_timeout_at_most(
        cluster: LocalCluster, shared_origin: Origin, on_cluster: list[Proxy]) -> None:
    """A master SIGSTOPped (hangs with its sockets open; its replica told not to take over, so
    it stays a hang): every request of both proxies is answered within HUNG_REQUEST_BOUND with
    the origin's bytes, memory-tier hits on the other masters' keys go on while the proxy does
    not ask the store at all (a request for a key on the hung master comes first: it waits the
    store timeout, and the store then stays silent for a second), and after SIGCONT the store
    serves hits again."""
    a, b = on_cluster
    cluster.wait_ready(FAILOVER_BOUND)  # every replica linked (one was not, in a run), so listed
    victim = primaries(cluster)[0]
    spread = paths_by_master(cluster, shared_origin, "hang", per_master=4)
    # B's memory copies, which only B asks for meanwhile: a response A stores again (its
    # lookup failed) would rightly end B's copy of it.
    held = [path for port, paths in spread.items() if port != victim for path in paths[:2]]
    elsewhere = [path for port, paths in spread.items() if port != victim for path in paths[2:]]
    for path in (*spread[victim], *held, *elsewhere):
        stored_and_hit(shared_origin, a, b, path)
    for path in held:  # a copy again, in case one was read before its own write's announcement
        assert fetch(b.url + path).x_cache == "HIT"
    fresh = paths_by_master(cluster, shared_origin, "hangmiss", 600)[victim]
    misses = iter(fresh)  # new URLs in the victim's slots
    node = cluster.node(victim)
    assert node.proc is not None
    standby = admin(replica_of(victim))
    standby.config_set("cluster-replica-no-failover", "yes")
    took: list[tuple[float, str, str | None]] = []

    def timed(proxy: Proxy, path: str) -> Response:
        began = time.monotonic()
        answer = fetch(proxy.url + path, timeout=10)
        took.append((time.monotonic() - began, path, answer.x_cache))
        return answer

    os.kill(node.proc.pid, signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        while time.monotonic() - stopped < HANG:
            miss = next(misses)  # B's lookup timed out, or B's store is silent since: not asked
            shared_origin.route(miss, 200, [FRESH], b"miss")
            assert timed(b, miss).body == b"miss"
            for path in held:  # so only B's memory tier can answer these
                assert timed(b, path).x_cache == "HIT", (
                    f"{path} {time.monotonic() - stopped:.2f} s into the hang" + logs(a, b))
            for path in (*spread[victim], *elsewhere):  # right bytes, stored or not
                answer = timed(a, path)
                assert (answer.status, answer.body) == (200, f"body of {path}".encode()), logs(a, b)
            miss = next(misses)  # a new URL in the hung master's slots
            shared_origin.route(miss, 200, [FRESH], b"miss")
            assert timed(a, miss).body == b"miss"
        # By now the other masters have marked it failed (the store then fails on them too,
        # CLUSTERDOWN: nobody took its slots over).
        state = info_cluster(next(port for port in spread if port != victim))["cluster_state"]
    finally:
        os.kill(node.proc.pid, signal.SIGCONT)
        try:
            # Failover allowed again only once every node, the replica too, has cleared the
            # master's FAIL flag (2 node timeouts after it was set): a replica that still sees
            # its master failed takes over when allowed, ~0.6 s later (seen in a run of this
            # file: the next test met that failover).
            cluster.wait_ready(FAILOVER_BOUND)
        finally:
            standby.config_set("cluster-replica-no-failover", "no")
    slowest = max(took)
    print(f"{len(took)} requests while a master hung: slowest {slowest[0] * 1e3:.0f} ms "
          f"({slowest[1]}, {slowest[2]}); cluster_state {state} at the end")
    assert slowest[0] < HUNG_REQUEST_BOUND, sorted(took)[-5:]
    assert primaries(cluster)[0] == victim, cluster.logs()  # a hang, not a failover
    until_shared_hits(cluster, shared_origin, a, b, "afterhang")  # the store answers again


def test_a_manual_failover_serves_no_wrong_bytes_and_purges_reach_both_proxies(
        cluster: LocalCluster, shared_origin: Origin, on_cluster: list[Proxy]) -> None:
    """CLUSTER FAILOVER sent to a master's replica (the old master stays up and becomes its
    replica): answers stay the right bytes throughout, hits resume on the promoted replica,
    and a purge sent once it is done reaches both proxies' memory tiers."""
    a, b = on_cluster
    cluster.wait_ready(FAILOVER_BOUND)  # the replica linked, so listed and up to date
    until_shared_hits(cluster, shared_origin, a, b, "beforemanual")  # whatever came before
    old = primaries(cluster)[0]
    spread = paths_by_master(cluster, shared_origin, "manual", per_master=2)
    paths = [path for paths in spread.values() for path in paths]
    for path in paths:
        stored_and_hit(shared_origin, a, b, path)
    target = spread[old][0]
    new = replica_of(old)
    assert admin(new).execute_command("CLUSTER FAILOVER") in (b"OK", "OK", True)
    started = time.monotonic()

    def switched() -> bool:
        try:
            holder = cluster.master_of(redis_key(key_of(shared_origin, target)))
        except LookupError:  # CLUSTER SLOTS read while the failover moves the slot
            return False
        return (info(new, "replication")["role"], info(old, "replication")["role"]) == (
            "master", "slave") and holder == new

    asked = started
    while not switched():
        assert time.monotonic() - started < FAILOVER_BOUND, (
            "the failover did not happen" + cluster.logs())
        if time.monotonic() - asked > MANUAL_FAILOVER_RETRY:
            # Redis drops a manual failover that did not complete within its own 5 s (the
            # master's offset never reached): asked again, as an operator would.
            admin(new).execute_command("CLUSTER FAILOVER")
            asked = time.monotonic()
        for proxy in (a, b):  # right bytes, from the store or passed through
            answers = [(path, fetch(proxy.url + path)) for path in paths]
            assert [(r.status, r.body) for _, r in answers] == [
                (200, f"body of {path}".encode()) for path, _ in answers]
    print(f"manual failover done in {time.monotonic() - started:.2f} s")
    cluster.wait_ready(FAILOVER_BOUND)
    for path in spread[old]:  # the old master's keys, now read from the new one
        for proxy in (a, b):
            answer = fetch(proxy.url + path)
            assert answer.body == f"body of {path}".encode()
    until_shared_hits(cluster, shared_origin, a, b, "aftermanual")  # the new master's too
    before = shared_origin.count(target)
    for proxy in (a, b):  # B's copy in memory, A's too
        assert fetch(proxy.url + target).body == f"body of {target}".encode()
        assert fetch(proxy.url + target).x_cache == "HIT"
    assert shared_origin.count(target) == before
    assert fetch(a.url + target, method="PURGE").status == 200
    # A new body from the origin from now on: whoever fetches it first stores it again, so
    # each proxy must answer the new one (A at once: its own purge; B once told).
    shared_origin.route(target, 200, [FRESH], b"after the purge")
    again = fetch(a.url + target)
    assert (again.x_cache, again.body) == ("MISS", b"after the purge")
    told = time.monotonic()
    while fetch(b.url + target).body != b"after the purge":
        assert time.monotonic() - told < TOLD_WITHIN, "B still answers the purged copy"
        time.sleep(0.01)


def test_a_killed_master_fails_over_without_wrong_bytes(
        cluster: LocalCluster, shared_origin: Origin, on_cluster: list[Proxy]) -> None:
    a, b = on_cluster
    # A memory tier's subscriber in this process, on every master: it must follow the failover.
    watcher = open_store(cluster.url, memory_size=1 << 20)
    changes = watcher.backend.changes
    before_failover = primaries(cluster)
    wait_for_failover(lambda: changes.listening == names(before_failover), "subscribed everywhere")
    victim = before_failover[0]
    slots = cluster.slots()
    spread = paths_by_master(cluster, shared_origin, "fo", per_master=2)
    paths = [path for paths in spread.values() for path in paths]
    for path in paths:
        stored_and_hit(shared_origin, a, b, path)
    # New URLs in the dead master's slots, more than the failover bound can use up.
    probes = iter(paths_by_master(cluster, shared_origin, "probe", 600)[victim])
    cluster.kill(victim)
    started = time.monotonic()
    while True:
        assert time.monotonic() - started < FAILOVER_BOUND, (
            "no hits after the failover" + logs(a, b) + cluster.logs())
        for proxy in (a, b):  # right bytes, from the store or passed through
            answers = [(path, fetch(proxy.url + path)) for path in paths]
            assert [(r.status, r.body) for _, r in answers] == [
                (200, f"body of {path}".encode()) for path, _ in answers]
        probe = next(probes, None)  # a new URL in the dead master's slots
        assert probe is not None, (
            f"no hits on new URLs {time.monotonic() - started:.1f} s after the failover"
            + logs(a, b) + cluster.logs())
        shared_origin.route(probe, 200, [FRESH], b"probe")
        fetch(a.url + probe)
        if fetch(b.url + probe).x_cache == "HIT" and shared_origin.count(probe) == 1:
            break
    assert cluster.master_of(redis_key(key_of(shared_origin, spread[victim][0]))) != victim
    assert slots != cluster.slots()
    for path in spread[victim]:  # hits again on the dead master's keys, now on its replica
        fetch(a.url + path)
        assert fetch(b.url + path).x_cache == "HIT"
    # The subscriptions moved to the live primaries, the promoted replica among them (this
    # process and both proxies listen there), and hear writes again.
    after = primaries(cluster)
    promoted = cluster.master_of(redis_key(key_of(shared_origin, spread[victim][0])))
    assert victim not in after and promoted in after
    wait_for_failover(lambda: changes.listening == names(after), "subscribed on the new primaries")
    wait_subscribed([promoted], 3)
    assert changes.read("y") == changes.read("y")
    before = changes.read(key_of(shared_origin, paths[0]))
    # A purge goes through the proxy's sync cluster client, unused since the kill: if its first
    # command meets the dead master (its slot map is the old one), redis-py reads the slot map
    # again and raises (redis/cluster.py, _execute_command: ConnectionError -> initialize(),
    # raise; the store allows no retries), so that one purge answers 503, and so does every
    # call for the second after it (RedisBackend's OUTAGE_BACKOFF); then one works.
    purged = fetch(a.url + paths[0], method="PURGE")
    if purged.status == 503:
        time.sleep(OUTAGE_BACKOFF + 0.2)
        purged = fetch(a.url + paths[0], method="PURGE")
    assert purged.status == 200, f"{purged.body!r}" + logs(a, b)
    wait_for_failover(lambda: changes.read(key_of(shared_origin, paths[0])) != before, "told")
    watcher.close()


def names(ports: list[int]) -> list[str]:
    return [f"127.0.0.1:{port}" for port in ports]


def wait_for_failover(check: Any, what: str, timeout: float = FAILOVER_BOUND) -> None:
    wait_until(check, timeout, what, interval=0.05)


# -- Sentinel ---------------------------------------------------------------------------------


def test_sentinel_shares_hits_and_purges(
        shared_origin: Origin, on_sentinel: list[Proxy]) -> None:
    a, b = on_sentinel
    stored_and_hit(shared_origin, a, b, "/s/vary", ("Vary", "Accept"), variants=VARIANTS)
    assert fetch(a.url + "/s/vary", method="PURGE").status == 200
    assert refetched(shared_origin, b, "/s/vary", {"Accept": "a/b"}).x_cache == "MISS"


def test_sentinel_master_killed_hits_resume_on_the_promoted_replica(
        sentinel: LocalSentinel, shared_origin: Origin, on_sentinel: list[Proxy]) -> None:
    a, b = on_sentinel
    paths = [f"/s/fo{i}" for i in range(4)]
    for path in paths:
        stored_and_hit(shared_origin, a, b, path)
    sentinel.master.kill()
    started = time.monotonic()
    for attempt in range(10_000):
        assert time.monotonic() - started < FAILOVER_BOUND, "no hits after the failover"
        for proxy in (a, b):
            assert [(r.status, r.body) for r in (fetch(proxy.url + p) for p in paths)] == [
                (200, f"body of {path}".encode()) for path in paths]
        probe = f"/s/probe{attempt}"
        shared_origin.route(probe, 200, [FRESH], b"probe")
        fetch(a.url + probe)
        if fetch(b.url + probe).x_cache == "HIT" and shared_origin.count(probe) == 1:
            break
    # The sentinel asked may hear of the promotion from the one that made it a moment later.
    wait_for_failover(lambda: sentinel.master_port() == sentinel.replica.port,
               "the promoted replica named by the sentinel")

