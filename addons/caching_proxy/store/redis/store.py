"""Stored responses in Redis, shared by proxy instances on several machines: one server, a
Sentinel-managed master, or a Redis Cluster (store/redis/clients.py reads the URL).

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
tag with its markers), which store/redis/keys.py names into one slot: a member's write with its
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
builds this package's entry classes (store/redis/codec.py), so whoever can write to the Redis
cannot make the proxy run code. Every Redis failure surfaces as `StoreUnavailable` (an OSError),
which the addon turns into pass-through; after a failure the store answers "unavailable" at once
for a second instead of making every request wait for a dead server.

Every call a lookup, a response write, a lock or a use count makes is written once (`_ops`: the
requests of store/redis/requests.py it sends) and sent either on redis-py's sync client (the
Backend's methods) or on its asyncio client (`call_async`, the Asynchronous side: one client per
event loop, store/redis/clients.py): the same commands and scripts (store/redis/scripts.py), so
the same atomicity, on the event loop with no thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from operator import methodcaller
from typing import Any, TypeVar, cast

from caching_proxy.store import calls
from caching_proxy.store.backend import SEP, EntryTooLarge, Traits
from caching_proxy.store.base import Usage
from caching_proxy.store.calls import Call
from caching_proxy.store.generations import SubscribedGenerations
from caching_proxy.store.layout import Store
from caching_proxy.store.redis import scripts as lua
from caching_proxy.store.redis.codec import ENTRY_MARK, decode, decoded, encode, with_expiry
from caching_proxy.store.redis.keys import (
    CHANGES,
    COUNTERS,
    GROUP,
    LOCK,
    PATTERN,
    PAUSE,
    SCHEDULE,
    SLOTS,
    USES,
    VALUE,
    announcement,
    owner_of,
    redis_key,
    split_key,
)
from caching_proxy.store.redis.requests import Command, Ops, Pipeline, Script
from caching_proxy.store.redis.scripts import LuaScript
from caching_proxy.store.redis.sender import OUTAGE_BACKOFF, Sender, StoreUnavailable

__all__ = ["DEFAULT_MAX_VALUE_SIZE", "OUTAGE_BACKOFF", "RedisBackend", "RedisStore",
           "StoreUnavailable", "decode", "encode"]

DEFAULT_MAX_VALUE_SIZE = 8 << 20
BATCH = 500  # keys per pipeline or UNLINK
T = TypeVar("T")


class RedisBackend(Sender):
    """The Backend (store/backend.py) on Redis, with ReadsWithExpiry, ChangeFeed and
    Asynchronous: sync redis-py for the methods, its asyncio client for `call_async`."""

    traits = Traits(remote=True, shared=True, async_capable=True)

    def __init__(self, url: str, max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
                 timeout: float = 1.0) -> None:
        super().__init__(url, timeout)
        self.max_value_size = max_value_size
        self._changes: SubscribedGenerations | None = None
        self._set_member, self._set, self._set_keep_later = (
            LuaScript(lua.SET_MEMBER), LuaScript(lua.SET), LuaScript(lua.SET_KEEP_LATER))
        self._replace = LuaScript(lua.REPLACE)
        self._members, self._get_with_ttl = LuaScript(lua.MEMBERS), LuaScript(lua.GET_WITH_TTL)
        self._count_use, self._delete_if = LuaScript(lua.COUNT_USE), LuaScript(lua.DELETE_IF)
        self._publish, self._add_counts = LuaScript(lua.PUBLISH), LuaScript(lua.ADD_COUNTS)
        self._reserve, self._hold_off = LuaScript(lua.RESERVE), LuaScript(lua.HOLD_OFF)
        self._held_off = LuaScript(lua.HELD_OFF)
        self._take_slot, self._give_slot = LuaScript(lua.TAKE_SLOT), LuaScript(lua.GIVE_SLOT)

    # -- the calls with an asynchronous side, each written once --------------------------------

    async def call_async(self, call: Call[T]) -> T:
        return cast(T, await self._send_async(self._ops(call)))

    def _ops(self, call: Call[Any]) -> Ops[Any]:
        """The requests that make `call` (store/calls.py), for either client."""
        match call:
            case calls.Get(key, max_inline):
                return self._get_ops(key, max_inline)
            case calls.GetWithExpiry(key, max_inline):
                return self._get_with_expiry_ops(key, max_inline)
            case calls.Expiry(key):
                return self._expiry_ops(key)
            case calls.Set(key, value, expire, group, keep_later):
                return self._set_ops(key, value, expire, group, keep_later)
            case calls.Replace(key, value, expire, lock):
                return self._replace_ops(key, value, expire, lock)
            case calls.Delete(keys):
                return self._delete_ops(keys)
            case calls.Members(group):
                return self._members_ops(group)
            case calls.Add(name, token, ttl):
                return self._add_ops(name, token, ttl)
            case calls.Release(name, token):
                return self._delete_if_ops(name, token)
            case calls.CountUse(key, window):
                return self._count_use_ops(key, window)
            case calls.Reserve(key, rate, burst, max_wait):
                return self._reserve_ops(key, rate, burst, max_wait)
            case calls.HoldOff(key, seconds):
                return self._hold_off_ops(key, seconds)
            case calls.HeldOff(key):
                return self._held_off_ops(key)
            case calls.TakeSlot(key, token, limit, lease):
                return self._take_slot_ops(key, token, limit, lease)
            case calls.GiveSlot(key, token):
                return self._give_slot_ops(key, token)
        raise TypeError(f"not a backend call: {call!r}")

    def get(self, key: str, max_inline: int | None = None) -> object | None:
        return self._send(self._get_ops(key, max_inline))

    def _get_ops(self, key: str, max_inline: int | None) -> Ops[object | None]:
        # `max_inline` is not checked (knowing the size first would cost a second round trip
        # on every hit, and values are bounded by max_value_size anyway), except for a read that
        # must not go to the network at all.
        if max_inline is not None and max_inline < 0:
            raise EntryTooLarge(key)
        return decode((yield Command("get", (redis_key(key),))))

    def get_with_expiry(self, key: str, max_inline: int | None = None,
                        ) -> tuple[object | None, float | None]:
        """`get`, and the seconds it has left (None when absent), in one round trip."""
        return self._send(self._get_with_expiry_ops(key, max_inline))

    def _get_with_expiry_ops(self, key: str, max_inline: int | None,
                             ) -> Ops[tuple[object | None, float | None]]:
        if max_inline is not None and max_inline < 0:
            raise EntryTooLarge(key)
        return with_expiry(*(yield Script(self._get_with_ttl, [redis_key(key)])))

    def expiry(self, key: str) -> float | None:
        return self._send(self._expiry_ops(key))

    def _expiry_ops(self, key: str) -> Ops[float | None]:
        left = yield Command("pttl", (redis_key(key),))
        if left == -2:
            return None
        return float("inf") if left == -1 else left / 1000

    def set(self, key: str, value: object, expire: float, group: str | None = None,
            keep_later: bool = False) -> bool:
        return self._send(self._set_ops(key, value, expire, group, keep_later))

    def _set_ops(self, key: str, value: object, expire: float, group: str | None,
                 keep_later: bool) -> Ops[bool]:
        """The script that stores `value` (a member's also adds it to its group, in one step);
        nothing for a value over max_value_size, which is not stored."""
        if group is not None and not key.startswith(group + SEP):
            raise ValueError(f"{key!r} is not named as a member of group {group!r}")
        args = self._write_args(key, value, expire)
        if args is None:
            return False
        if group is not None:
            yield Script(self._set_member, [redis_key(key), redis_key(group, GROUP)], args)
        else:
            yield Script(self._set_keep_later if keep_later else self._set, [redis_key(key)], args)
        return True

    def replace(self, key: str, value: object, expire: float,
                lock: tuple[str, str] | None = None) -> bool:
        return self._send(self._replace_ops(key, value, expire, lock))

    def _replace_ops(self, key: str, value: object, expire: float,
                     lock: tuple[str, str] | None) -> Ops[bool]:
        """The REPLACE script; nothing for a value over max_value_size."""
        if SEP in key:
            raise ValueError(f"{key!r} is a group member: it has no group of its own")
        args = self._write_args(key, value, expire)
        if args is None:
            return False
        keys = [redis_key(key), redis_key(key, GROUP)]
        if lock is not None:
            keys.append(redis_key(lock[0], LOCK))
            args.append(lock[1])
        yield Script(self._replace, keys, args)
        return True

    def _write_args(self, key: str, value: object, expire: float) -> list[Any] | None:
        """ARGV every storing script starts with (value, ttl in ms, changes channel, the owner's
        announcement); None for a value over max_value_size, which is not stored."""
        data = encode(value)
        if len(data) > self.max_value_size:
            return None
        return [data, max(1, int(expire * 1000)), CHANGES, announcement(owner_of(key))]

    def delete(self, keys: Iterable[str]) -> int:
        return self._send(self._delete_ops(keys))

    def _delete_ops(self, keys: Iterable[str]) -> Ops[int]:
        removed = 0
        for batch in lua.delete_batches(keys, BATCH):
            removed += sum((yield Pipeline(batch)))
        return removed

    def members(self, group: str) -> list[str]:
        return self._send(self._members_ops(group))

    def _members_ops(self, group: str) -> Ops[list[str]]:
        found = yield Script(self._members, [redis_key(group, GROUP)])
        return [split_key(key)[1] for key in found]

    # -- locks and use counts, likewise --------------------------------------------------------

    def add(self, key: str, token: str, ttl: float) -> bool:
        return self._send(self._add_ops(key, token, ttl))

    def _add_ops(self, key: str, token: str, ttl: float) -> Ops[bool]:
        taken = yield Command("set", (redis_key(key, LOCK), token),
                              {"nx": True, "px": max(1, int(ttl * 1000))})
        return bool(taken)

    def delete_if(self, key: str, token: str) -> bool:
        return self._send(self._delete_if_ops(key, token))

    def _delete_if_ops(self, key: str, token: str) -> Ops[bool]:
        return bool((yield Script(self._delete_if, [redis_key(key, LOCK)], [token])))

    def count_use(self, key: str, window: float) -> int:
        return self._send(self._count_use_ops(key, window))

    def _count_use_ops(self, key: str, window: float) -> Ops[int]:
        # One script: no other client's command runs between INCR and PEXPIRE.
        window_ms = max(1, int(window * 1000))
        return int((yield Script(self._count_use, [redis_key(key, USES)], [window_ms])))

    def reserve(self, key: str, rate: float, burst: int, max_wait: float) -> float | None:
        return self._send(self._reserve_ops(key, rate, burst, max_wait))

    def _reserve_ops(self, key: str, rate: float, burst: int, max_wait: float,
                     ) -> Ops[float | None]:
        interval = 1.0 / rate
        wait = float((yield Script(self._reserve, [redis_key(key, SCHEDULE)],
                                   [repr(interval), repr((max(1, burst) - 1) * interval),
                                    repr(max_wait)])))
        return None if wait < 0 else wait

    def hold_off(self, key: str, seconds: float) -> float:
        return self._send(self._hold_off_ops(key, seconds))

    def _hold_off_ops(self, key: str, seconds: float) -> Ops[float]:
        return float((yield Script(self._hold_off, [redis_key(key, PAUSE)],
                                   [repr(seconds)])))

    def held_off(self, key: str) -> float:
        return self._send(self._held_off_ops(key))

    def _held_off_ops(self, key: str) -> Ops[float]:
        return float((yield Script(self._held_off, [redis_key(key, PAUSE)], [])))

    def take_slot(self, key: str, token: str, limit: int, lease: float) -> bool:
        return self._send(self._take_slot_ops(key, token, limit, lease))

    def _take_slot_ops(self, key: str, token: str, limit: int, lease: float) -> Ops[bool]:
        return bool((yield Script(self._take_slot, [redis_key(key, SLOTS)],
                                  [token, limit, repr(lease)])))

    def give_slot(self, key: str, token: str) -> None:
        self._send(self._give_slot_ops(key, token))

    def _give_slot_ops(self, key: str, token: str) -> Ops[None]:
        yield Script(self._give_slot, [redis_key(key, SLOTS)], [token])

    # -- synchronous only: listings, contents, counters ----------------------------------------

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

    def changes(self) -> SubscribedGenerations:
        """Change counters fed by every proxy's writes (ChangeFeed, for a memory tier): one
        subscription, made on the first call and closed with the backend."""
        if self._changes is None:
            self._changes = SubscribedGenerations(self._clients.change_nodes,
                                                  self._clients.pubsub, CHANGES)
        return self._changes

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
        if self._changes is not None:
            self._changes.close()
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
