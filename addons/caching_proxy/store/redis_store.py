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
builds this package's entry classes, so whoever can write to the Redis cannot make the proxy run
code. Every Redis failure surfaces as `StoreUnavailable` (an OSError), which the addon turns into
pass-through; after a failure the store answers "unavailable" at once for a second instead of
making every request wait for a dead server.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from operator import methodcaller
from typing import Any, TypeVar, cast

from redis.commands.core import Script

from caching_proxy.entry import Entry
from caching_proxy.store.backend import SEP, EntryTooLarge, Unreadable
from caching_proxy.store.base import Usage, VaryIndex
from caching_proxy.store.generations import SubscribedGenerations
from caching_proxy.store.layout import Store
from caching_proxy.store.redis_clients import Clients, parse_store_url
from caching_proxy.store.redis_keys import (
    CHANGES,
    COUNTERS,
    GROUP,
    LOCK,
    PATTERN,
    USES,
    VALUE,
    owner_of,
    redis_key,
    split_key,
)

DEFAULT_MAX_VALUE_SIZE = 8 << 20
OUTAGE_BACKOFF = 1.0  # seconds of immediate pass-through after a failure
BATCH = 500  # keys per pipeline or UNLINK
ENTRY_MARK, INDEX_MARK, TAG_MARK = b"E", b"I", b"T"
_NOW_MS = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "
# Every script's KEYS share one slot (store/redis_keys.py); PUBLISH reaches every node.
# KEYS: member, group; ARGV: value, ttl in ms, changes channel, owner.
_SET_MEMBER = _NOW_MS + """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[2], last[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
"""
# KEYS: key; ARGV: value, ttl in ms, changes channel, owner.
_SET = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
"""
# KEYS: group.
_MEMBERS = _NOW_MS + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
# KEYS: key; ARGV: value, ttl in ms, changes channel, owner. A later expiry (or none) already
# there is kept.
_SET_KEEP_LATER = """
local current = redis.call('PTTL', KEYS[1])
redis.call('PUBLISH', ARGV[3], ARGV[4])
if current == -1 then return redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL') end
return redis.call('SET', KEYS[1], ARGV[1], 'PX', math.max(current, tonumber(ARGV[2])))
"""
# KEYS: key[, its group]; ARGV: changes channel, owner to announce ('': none). The member
# leaves its group in the same step, so `members` never lists a deleted key.
_DELETE = """
local removed = redis.call('DEL', KEYS[1])
if KEYS[2] then redis.call('ZREM', KEYS[2], KEYS[1]) end
if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return removed
"""
_GET_WITH_TTL = "return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}"
# KEYS: use count; ARGV: window in ms.
_COUNT_USE = ("local n = redis.call('INCR', KEYS[1]) redis.call('PEXPIRE', KEYS[1], ARGV[1])"
              " return n")
_DELETE_IF = ("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1])"
              " end return 0")
# KEYS: the counters' hash; ARGV: name, delta, name, delta, ... One command: a cluster
# pipeline would send a timed-out HINCRBY again on its own, counting it twice.
_ADD_COUNTS = ("for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])"
               " end")
# No keys: runs on any node (a cluster forwards the message to every node).
_PUBLISH = "return redis.call('PUBLISH', ARGV[1], ARGV[2])"
T = TypeVar("T")


class StoreUnavailable(OSError):
    """The Redis server cannot be reached or failed."""


class _EntryUnpickler(pickle.Unpickler):
    ALLOWED = frozenset({
        ("caching_proxy.entry", "Entry"),
        ("caching_proxy.policy.storing", "StoredMeta"),
        ("caching_proxy.store.base", "VaryIndex"),
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from Redis")
        return super().find_class(module, name)


def encode(value: object) -> bytes:
    if isinstance(value, str):  # a tag marker: the URL it marks, not pickled
        return TAG_MARK + value.encode("utf-8", "surrogateescape")
    if not isinstance(value, Entry | VaryIndex):
        raise TypeError(f"only responses, Vary indexes and tag markers are stored in Redis, "
                        f"not {value!r}")
    mark = ENTRY_MARK if isinstance(value, Entry) else INDEX_MARK
    return mark + pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def decode(data: bytes | None) -> Entry | VaryIndex | str | None:
    """The value in `data`; None for no data; Unreadable for anything this proxy did not write
    (or a version of it with other classes)."""
    if data is None:
        return None
    if data[:1] == TAG_MARK:
        return data[1:].decode("utf-8", "surrogateescape")
    if data[:1] not in (ENTRY_MARK, INDEX_MARK):
        raise Unreadable("no mark of a stored response")
    try:
        value = _EntryUnpickler(io.BytesIO(data[1:])).load()
    except Exception as e:  # whatever garbage makes pickle raise
        raise Unreadable(repr(e)) from e
    if not isinstance(value, Entry | VaryIndex):
        raise Unreadable(f"a {type(value).__name__}")
    return value


def _script(text: str) -> Script:
    # Bound to no client: each call names the current one (a cluster client may be made anew).
    return Script(cast(Any, None), text.encode())


def _decoded(data: bytes | None) -> object | None:
    try:
        return decode(data)
    except Unreadable:
        return None


class RedisBackend:
    """The Backend (store/backend.py) on Redis, with sync redis-py."""

    def __init__(self, url: str, max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
                 timeout: float = 1.0) -> None:
        self.location = url
        self.max_value_size = max_value_size
        self._clients = Clients(parse_store_url(url), timeout)
        self._down_until = 0.0
        self._set_member, self._set, self._set_keep_later = (
            _script(_SET_MEMBER), _script(_SET), _script(_SET_KEEP_LATER))
        self._members, self._get_with_ttl = _script(_MEMBERS), _script(_GET_WITH_TTL)
        self._count_use, self._delete_if = _script(_COUNT_USE), _script(_DELETE_IF)
        self._publish, self._add_counts = _script(_PUBLISH), _script(_ADD_COUNTS)

    def _call(self, fn: Callable[[Any], T]) -> T:
        """`fn(client)`, every Redis failure turned into StoreUnavailable."""
        with self._outage(self._clients.failed):
            return fn(self._clients.client())

    @contextlib.contextmanager
    def _outage(self, failed: Callable[[Exception], None]) -> Iterator[None]:
        """Around one call: at once "unavailable" for OUTAGE_BACKOFF after a failure; a Redis
        error becomes StoreUnavailable (and `failed(error)` lets the client be made anew)."""
        if self._down_until and time.monotonic() < self._down_until:
            raise StoreUnavailable(f"Redis at {self.location} is unavailable")
        try:
            yield
        except self._clients.errors as e:
            failed(e)
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

    # -- values and groups ---------------------------------------------------------------------

    def get(self, key: str, max_inline: int | None = None) -> object | None:
        # `max_inline` is not checked (knowing the size first would cost a second round trip
        # on every hit, and values are bounded by max_value_size anyway), except for a read that
        # must not go to the network at all.
        if max_inline is not None and max_inline < 0:
            raise EntryTooLarge(key)
        return decode(self._call(lambda r: r.get(redis_key(key))))

    def get_with_expiry(self, key: str, max_inline: int | None = None,
                        ) -> tuple[object | None, float | None]:
        """`get`, and the seconds it has left (None when absent), in one round trip."""
        if max_inline is not None and max_inline < 0:
            raise EntryTooLarge(key)
        data, left = self._call(lambda r: self._get_with_ttl([redis_key(key)], client=r))
        value = decode(data)
        if value is None or left == -2:
            return None, None
        return value, (float("inf") if left == -1 else left / 1000)

    def get_many(self, keys: Iterable[str]) -> Iterator[object | None]:
        batch: list[str] = []
        for key in keys:
            batch.append(key)
            if len(batch) == BATCH:
                yield from map(_decoded, self._pipelined(("GET", redis_key(k)) for k in batch))
                batch = []
        if batch:
            yield from map(_decoded, self._pipelined(("GET", redis_key(k)) for k in batch))

    def has(self, key: str) -> bool:
        # The command itself: a cluster client's exists() splits its keys by slot in a pipeline.
        return bool(self._call(lambda r: r.execute_command("EXISTS", redis_key(key))))

    def set(self, key: str, value: object, expire: float, group: str | None = None,
            keep_later: bool = False) -> bool:
        data = encode(value)
        if len(data) > self.max_value_size:
            return False
        args: list[bytes | int | str] = [data, max(1, int(expire * 1000)), CHANGES, owner_of(key)]
        if group is not None:
            if not key.startswith(group + SEP):
                raise ValueError(f"{key!r} is not named as a member of group {group!r}")
            keys = [redis_key(key), redis_key(group, GROUP)]
            self._call(lambda r: self._set_member(keys, args, client=r))
        else:
            script = self._set_keep_later if keep_later else self._set
            self._call(lambda r: script([redis_key(key)], args, client=r))
        return True

    def delete(self, keys: Iterable[str]) -> int:
        names = list(keys)
        removed = 0
        for start in range(0, len(names), BATCH):
            batch = names[start:start + BATCH]
            # Each owner is announced once, by its last key's step (after all of its keys).
            last = {owner_of(key): i for i, key in enumerate(batch)}
            commands = []
            for i, key in enumerate(batch):
                owner = owner_of(key)
                tagged = [redis_key(key)] + ([redis_key(owner, GROUP)] if SEP in key else [])
                commands.append(("EVAL", _DELETE, len(tagged), *tagged, CHANGES,
                                 owner if last[owner] == i else ""))
            removed += sum(self._pipelined(commands))
        return removed

    def expiry(self, key: str) -> float | None:
        left = self._call(lambda r: r.pttl(redis_key(key)))
        if left == -2:
            return None
        return float("inf") if left == -1 else left / 1000

    def members(self, group: str) -> list[str]:
        found = self._call(lambda r: self._members([redis_key(group, GROUP)], client=r))
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
        self._call(lambda r: self._publish([], [CHANGES, "*"], client=r))
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
        return bool(await self._call_async(lambda r: r.eval(
            _DELETE_IF, 1, redis_key(key, LOCK), token)))

    async def _call_async(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """`_call` with the asyncio client: on the event loop, each socket operation bounded by
        the client's timeout."""
        with self._outage(self._clients.async_failed):
            return await fn(self._clients.async_client())

    def count_use(self, key: str, window: float) -> int:
        # One script: no other client's command runs between INCR and PEXPIRE.
        window_ms = max(1, int(window * 1000))
        return int(self._call(lambda r: self._count_use([redis_key(key, USES)], [window_ms],
                                                        client=r)))

    def delete_if(self, key: str, token: str) -> bool:
        return bool(self._call(lambda r: self._delete_if([redis_key(key, LOCK)], [token],
                                                         client=r)))

    def add_counts(self, counts: dict[str, int]) -> None:
        args = [part for name, delta in counts.items() if delta for part in (name, delta)]
        if args:
            self._call(lambda r: self._add_counts([COUNTERS], args, client=r))

    def counters(self) -> dict[str, int]:
        found = self._call(lambda r: r.hgetall(COUNTERS))
        return {k.decode(): int(v) for k, v in found.items()}

    def flush(self) -> None:
        """Nothing deferred: Redis tracks recency itself."""

    def close(self) -> None:
        self._clients.close()


class RedisStore(Store):
    """The variant layout on Redis."""

    backend: RedisBackend

    def __init__(self, url: str, max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
                 timeout: float = 1.0) -> None:
        super().__init__(RedisBackend(url, max_value_size, timeout))
