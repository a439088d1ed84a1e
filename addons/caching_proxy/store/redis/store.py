"""Stored responses in Redis, shared by proxy instances on several machines: one server, a
Sentinel-managed master, or a Redis Cluster (store/redis_clients.py reads the URL).

The Backend (store/backend.py) on Redis: every key below one prefix, so `clear` removes this
cache's keys only (never FLUSHDB). Expiry is Redis' own (PX, the addon passes freshness plus the
stale windows); size is bounded by Redis' `maxmemory` with an LRU `maxmemory-policy`
(allkeys-lru recommended, see README). Responses larger than `max_value_size` are not stored:
one large value would hold the single-threaded server up.

A group is a sorted set per group, `group:` + name, its members scored by their expiry time (in
Redis' own clock, so machines with skewed clocks agree); a member's write adds it, drops the
expired ones and extends the set's own expiry to its longest-lived member, in one Lua script.
Under memory pressure Redis may evict a group's set before its members, or members before the
set (those stay listed until their expiry time; deleting them is a no-op): the layout never
relies on the set to keep a purged variant unreachable (see VaryIndex.generation).

What is atomic: every step on one owner (a URL with its variants, group, locks and use count; a
tag with its markers), which store/redis_keys.py names into one slot: a member's write with its
group, a key's delete with its removal from its group, a use count's INCR with its PEXPIRE, a
lock's compare-and-delete, each one Lua script. What is not: anything across owners. `delete`,
`get_many`, `usage` and `clear` over many keys are pipelines split by node (or slot), each key's
step atomic on its own; store/layout.py is written for exactly that (a lookup never reaches a
variant an interleaving left behind). `scan`, `usage` and `clear` walk every primary of a
cluster (redis-py's scan_iter). During a cluster or Sentinel failover the calls on the failed
master's keys fail (StoreUnavailable) until a replica is promoted; Redis replicates
asynchronously, so the writes the old master had not yet passed on (a purge among them) are
lost with it.

A hit is one GET (two under Vary). Values are pickled and read back with an unpickler that only
builds this package's entry classes (store/redis_codec.py), so whoever can write to the Redis
cannot make the proxy run code. Every Redis failure surfaces as `StoreUnavailable` (an OSError),
which the addon turns into pass-through; after a failure the store answers "unavailable" at once
for a second instead of making every request wait for a dead server.

The calls a lookup, a response write and a lock make have asynchronous twins (`*_async`,
store/backend.py) on redis-py's asyncio client (one per event loop, store/redis_clients.py):
the same commands and scripts (store/redis_scripts.py), so the same atomicity, on the event
loop with no thread. Each sync and async pair builds its command once and differs only in the
client it is sent on.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from operator import methodcaller
from typing import Any, TypeVar, cast

from caching_proxy.store.backend import SEP, EntryTooLarge
from caching_proxy.store.base import Usage
from caching_proxy.store.generations import SubscribedGenerations
from caching_proxy.store.layout import Store
from caching_proxy.store.redis import scripts as lua
from caching_proxy.store.redis.clients import Clients
from caching_proxy.store.redis.codec import ENTRY_MARK, decode, decoded, encode, with_expiry
from caching_proxy.store.redis.keys import (
    CHANGES,
    COUNTERS,
    GROUP,
    LOCK,
    PATTERN,
    USES,
    VALUE,
    announcement,
    owner_of,
    redis_key,
    split_key,
)
from caching_proxy.store.redis.scripts import LuaScript
from caching_proxy.store.redis.urls import parse_store_url, redact_store_url

__all__ = ["DEFAULT_MAX_VALUE_SIZE", "RedisBackend", "RedisStore", "StoreUnavailable", "decode",
           "encode"]

DEFAULT_MAX_VALUE_SIZE = 8 << 20
OUTAGE_BACKOFF = 1.0  # seconds of immediate pass-through after a failure
BATCH = 500  # keys per pipeline or UNLINK
T = TypeVar("T")
# A `set`: the script, its KEYS and ARGV.
_SetCall = tuple[LuaScript, list[str], list[Any]]


class StoreUnavailable(OSError):
    """The Redis server cannot be reached or failed."""


class RedisBackend:
    """The Backend (store/backend.py) on Redis: sync redis-py, and its asyncio client for the
    asynchronous twins."""

    def __init__(self, url: str, max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
                 timeout: float = 1.0) -> None:
        self.location = redact_store_url(url)  # as shown: in StoreUnavailable, so warnings
        self.max_value_size = max_value_size
        self._clients = Clients(parse_store_url(url), timeout)
        self._down_until = 0.0
        self._set_member, self._set, self._set_keep_later = (
            LuaScript(lua.SET_MEMBER), LuaScript(lua.SET), LuaScript(lua.SET_KEEP_LATER))
        self._replace = LuaScript(lua.REPLACE)
        self._members, self._get_with_ttl = LuaScript(lua.MEMBERS), LuaScript(lua.GET_WITH_TTL)
        self._count_use, self._delete_if = LuaScript(lua.COUNT_USE), LuaScript(lua.DELETE_IF)
        self._publish, self._add_counts = LuaScript(lua.PUBLISH), LuaScript(lua.ADD_COUNTS)

    def _call(self, fn: Callable[[Any], T], background: bool = False) -> T:
        """`fn(client)`, every Redis failure turned into StoreUnavailable."""
        with self._outage(self._clients.failed, background):
            return fn(self._clients.client())

    async def _call_async(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """`_call` with the asyncio client: on the event loop, each socket operation bounded by
        the client's timeout. A cancellation (the caller's timeout) is no Redis failure: redis-py
        drops the connection it was on, and the outage state is left as it was."""
        with self._outage(self._clients.async_failed):
            return await fn(self._clients.async_client())

    @contextlib.contextmanager
    def _outage(self, failed: Callable[[Exception], None],
                background: bool = False) -> Iterator[None]:
        """Around one call: at once "unavailable" for OUTAGE_BACKOFF after a failure, except a
        `background` one's (the counters' key may be on the one cluster master that hangs); a
        Redis error becomes StoreUnavailable (`failed(error)` lets the client be made anew)."""
        if self._down_until and time.monotonic() < self._down_until:
            raise StoreUnavailable(f"Redis at {self.location} is unavailable")
        try:
            yield
        except self._clients.errors as e:
            failed(e)
            if not background:
                self._down_until = time.monotonic() + OUTAGE_BACKOFF
            raise StoreUnavailable(f"Redis at {self.location}: {e}") from e
        self._down_until = 0.0

    def _pipelined(self, commands: Iterable[tuple[Any, ...]]) -> list[Any]:
        """The answers of `commands` sent in one non-transactional pipeline (split by node on
        a cluster, where a MULTI cannot span slots). Only for commands that may run twice: a
        cluster pipeline sends each command that failed (MOVED, a timeout) again on its own,
        so a node that stalls mid-batch costs a socket timeout per command of it."""
        def run(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            return cast(list[Any], pipe.execute())

        return self._call(run)

    async def _pipelined_async(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """`_pipelined` on the asyncio client (its pipeline, or its cluster pipeline)."""
        async def run(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            return cast(list[Any], await pipe.execute())

        return await self._call_async(run)

    # -- values and groups ---------------------------------------------------------------------

    def get(self, key: str, max_inline: int | None = None) -> object | None:
        # `max_inline` is not checked (knowing the size first would cost a second round trip
        # on every hit, and values are bounded by max_value_size anyway), except for a read that
        # must not go to the network at all.
        if max_inline is not None and max_inline < 0:
            raise EntryTooLarge(key)
        return decode(self._call(lambda r: r.get(redis_key(key))))

    async def get_async(self, key: str, max_inline: int | None = None) -> object | None:
        if max_inline is not None and max_inline < 0:
            raise EntryTooLarge(key)
        return decode(await self._call_async(lambda r: r.get(redis_key(key))))

    def get_with_expiry(self, key: str, max_inline: int | None = None,
                        ) -> tuple[object | None, float | None]:
        """`get`, and the seconds it has left (None when absent), in one round trip."""
        if max_inline is not None and max_inline < 0:
            raise EntryTooLarge(key)
        keys = [redis_key(key)]
        return with_expiry(*self._call(lambda r: self._get_with_ttl(r, keys)))

    async def get_with_expiry_async(self, key: str, max_inline: int | None = None,
                                    ) -> tuple[object | None, float | None]:
        if max_inline is not None and max_inline < 0:
            raise EntryTooLarge(key)
        keys = [redis_key(key)]
        return with_expiry(*await self._call_async(
            lambda r: self._get_with_ttl.call_async(r, keys)))

    def get_many(self, keys: Iterable[str]) -> Iterator[object | None]:
        batch: list[str] = []
        for key in keys:
            batch.append(key)
            if len(batch) == BATCH:
                yield from map(decoded, self._pipelined(("GET", redis_key(k)) for k in batch))
                batch = []
        if batch:
            yield from map(decoded, self._pipelined(("GET", redis_key(k)) for k in batch))

    def has(self, key: str) -> bool:
        # The command itself: a cluster client's exists() splits its keys by slot in a pipeline.
        return bool(self._call(lambda r: r.execute_command("EXISTS", redis_key(key))))

    def set(self, key: str, value: object, expire: float, group: str | None = None,
            keep_later: bool = False) -> bool:
        step = self._set_call(key, value, expire, group, keep_later)
        if step is None:
            return False
        script, keys, args = step
        self._call(lambda r: script(r, keys, args))
        return True

    async def set_async(self, key: str, value: object, expire: float, group: str | None = None,
                        keep_later: bool = False) -> bool:
        step = self._set_call(key, value, expire, group, keep_later)
        if step is None:
            return False
        script, keys, args = step
        await self._call_async(lambda r: script.call_async(r, keys, args))
        return True

    def replace(self, key: str, value: object, expire: float,
                lock: tuple[str, str] | None = None) -> bool:
        step = self._replace_call(key, value, expire, lock)
        if step is None:
            return False
        keys, args = step
        self._call(lambda r: self._replace(r, keys, args))
        return True

    async def replace_async(self, key: str, value: object, expire: float,
                            lock: tuple[str, str] | None = None) -> bool:
        step = self._replace_call(key, value, expire, lock)
        if step is None:
            return False
        keys, args = step
        await self._call_async(lambda r: self._replace.call_async(r, keys, args))
        return True

    def _replace_call(self, key: str, value: object, expire: float,
                      lock: tuple[str, str] | None) -> tuple[list[str], list[Any]] | None:
        """KEYS and ARGV of the REPLACE script, None for a value over max_value_size."""
        if SEP in key:
            raise ValueError(f"{key!r} is a group member: it has no group of its own")
        args = self._write_args(key, value, expire)
        if args is None:
            return None
        keys = [redis_key(key), redis_key(key, GROUP)]
        if lock is not None:
            keys.append(redis_key(lock[0], LOCK))
            args.append(lock[1])
        return keys, args

    def _write_args(self, key: str, value: object, expire: float) -> list[Any] | None:
        """ARGV every storing script starts with (value, ttl in ms, changes channel, the owner's
        announcement); None for a value over max_value_size, which is not stored."""
        data = encode(value)
        if len(data) > self.max_value_size:
            return None
        return [data, max(1, int(expire * 1000)), CHANGES, announcement(owner_of(key))]

    def _set_call(self, key: str, value: object, expire: float, group: str | None,
                  keep_later: bool) -> _SetCall | None:
        """The script that stores `value` (a member's also adds it to its group, in one step),
        None for a value over max_value_size."""
        args = self._write_args(key, value, expire)
        if args is None:
            return None
        if group is not None:
            if not key.startswith(group + SEP):
                raise ValueError(f"{key!r} is not named as a member of group {group!r}")
            return self._set_member, [redis_key(key), redis_key(group, GROUP)], args
        return self._set_keep_later if keep_later else self._set, [redis_key(key)], args

    def delete(self, keys: Iterable[str]) -> int:
        return sum(sum(self._pipelined(batch)) for batch in lua.delete_batches(keys, BATCH))

    async def delete_async(self, keys: Iterable[str]) -> int:
        removed = 0
        for batch in lua.delete_batches(keys, BATCH):
            removed += sum(await self._pipelined_async(batch))
        return removed

    def expiry(self, key: str) -> float | None:
        left = self._call(lambda r: r.pttl(redis_key(key)))
        if left == -2:
            return None
        return float("inf") if left == -1 else left / 1000

    def members(self, group: str) -> list[str]:
        keys = [redis_key(group, GROUP)]
        return [split_key(key)[1] for key in self._call(lambda r: self._members(r, keys))]

    async def members_async(self, group: str) -> list[str]:
        keys = [redis_key(group, GROUP)]
        found = await self._call_async(lambda r: self._members.call_async(r, keys))
        return [split_key(key)[1] for key in found]

    def scan(self, members: bool = False) -> Iterator[str]:
        for _, name in self._keys((VALUE,)):
            if members or SEP not in name:
                yield name

    def _keys(self, kinds: tuple[str, ...]) -> list[tuple[bytes, str]]:
        """(Redis key, name) of this store's keys of `kinds`, on every primary of a cluster."""
        found = self._call(lambda r: list(r.scan_iter(match=PATTERN, count=1000)))
        keys = []
        for key in found:
            kind, name = split_key(key)
            if kind in kinds:
                keys.append((key, name))
        return keys

    def usage(self) -> Usage:
        """Counted from each value's first byte and length, without unpickling."""
        keys = [key for key, _ in self._keys((VALUE,))]
        entries = size = 0
        for start in range(0, len(keys), BATCH):
            answers = self._pipelined(command for key in keys[start:start + BATCH]
                                      for command in (("GETRANGE", key, 0, 0), ("STRLEN", key)))
            for mark, length in zip(answers[::2], answers[1::2], strict=True):
                if mark == ENTRY_MARK:
                    entries += 1
                    size += int(length)
        return Usage(entries, size)

    def clear(self) -> Usage:
        # The figures --stats and the metrics show, counted without reading every value.
        before = self.usage()
        keys = [key for key, _ in self._keys((VALUE, GROUP, USES))]
        for start in range(0, len(keys), BATCH):
            # A cluster client splits UNLINK by slot.
            self._call(methodcaller("unlink", *keys[start:start + BATCH]))
        self._call(lambda r: self._publish(r, [], [CHANGES, announcement("*")]))
        return before

    def subscribe_changes(self) -> SubscribedGenerations:
        """Change counters fed by every proxy's writes (for a memory tier)."""
        return SubscribedGenerations(self._clients.change_nodes, self._clients.pubsub, CHANGES)

    # -- locks and counters --------------------------------------------------------------------

    def add(self, key: str, token: str, ttl: float) -> bool:
        return bool(self._call(lambda r: r.set(
            redis_key(key, LOCK), token, nx=True, px=max(1, int(ttl * 1000)))))

    async def add_async(self, key: str, token: str, ttl: float) -> bool:
        return bool(await self._call_async(lambda r: r.set(
            redis_key(key, LOCK), token, nx=True, px=max(1, int(ttl * 1000)))))

    async def delete_if_async(self, key: str, token: str) -> bool:
        keys = [redis_key(key, LOCK)]
        return bool(await self._call_async(
            lambda r: self._delete_if.call_async(r, keys, [token])))

    def count_use(self, key: str, window: float) -> int:
        # One script: no other client's command runs between INCR and PEXPIRE.
        window_ms = max(1, int(window * 1000))
        return int(self._call(lambda r: self._count_use(r, [redis_key(key, USES)], [window_ms])))

    async def count_use_async(self, key: str, window: float) -> int:
        window_ms = max(1, int(window * 1000))
        return int(await self._call_async(
            lambda r: self._count_use.call_async(r, [redis_key(key, USES)], [window_ms])))

    def delete_if(self, key: str, token: str) -> bool:
        return bool(self._call(lambda r: self._delete_if(r, [redis_key(key, LOCK)], [token])))

    def add_counts(self, counts: dict[str, int]) -> None:
        args = [part for name, delta in counts.items() if delta for part in (name, delta)]
        if args:
            self._call(lambda r: self._add_counts(r, [COUNTERS], args), background=True)

    def counters(self) -> dict[str, int]:
        found = self._call(lambda r: r.hgetall(COUNTERS))
        return {k.decode(): int(v) for k, v in found.items()}

    def flush(self) -> None:
        """Nothing deferred: Redis tracks recency itself."""

    def close(self) -> None:
        self._clients.close()

    async def close_async(self) -> None:
        await self._clients.close_async()
        self.close()


class RedisStore(Store):
    """The variant layout on Redis."""

    backend: RedisBackend

    def __init__(self, url: str, max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
                 timeout: float = 1.0) -> None:
        super().__init__(RedisBackend(url, max_value_size, timeout))
