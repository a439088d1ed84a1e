"""Stored responses in Redis, shared by proxy instances on several machines.

The Backend (store/backend.py) on one Redis database: every key below one prefix, so `clear`
removes this cache's keys only (never FLUSHDB). Expiry is Redis' own (PX, the addon passes
freshness plus the stale windows); size is bounded by Redis' `maxmemory` with an LRU
`maxmemory-policy` (allkeys-lru recommended, see README). Responses larger than
`max_value_size` are not stored: one large value would hold the single-threaded server up.

A group is a sorted set per group, `group:` + name, its members scored by their expiry time (in
Redis' own clock, so machines with skewed clocks agree); a member's write adds it, drops the
expired ones and extends the set's own expiry to its longest-lived member, in one Lua script.
Under memory pressure Redis may evict a group's set before its members, or members before the
set (those stay listed until their expiry time; deleting them is a no-op): the layout never
relies on the set to keep a purged variant unreachable (see VaryIndex.generation). For Redis
Cluster, a group and its members would need one hash tag (`{url}`), as the scripts touch both.

Data written by the previous layout: its Vary indexes no longer decode (dropped when met), its
variants are in no group and keyed without a generation (never reached; they expire by PX).

A hit is one GET (two under Vary). Values are pickled and read back with an unpickler that only
builds this package's entry classes, so whoever can write to the Redis cannot make the proxy run
code. Every Redis failure surfaces as `StoreUnavailable` (an OSError), which the addon turns into
pass-through; after a failure the store answers "unavailable" at once for a second instead of
making every request wait for a dead server.
"""

from __future__ import annotations

import io
import pickle
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from caching_proxy.entry import Entry
from caching_proxy.store.backend import SEP, EntryTooLarge, Unreadable
from caching_proxy.store.base import Usage, VaryIndex
from caching_proxy.store.generations import SubscribedGenerations
from caching_proxy.store.layout import Store

PREFIX = "caching-proxy:"
GROUP, LOCK, COUNTERS, USES = "group:", "lock:", "counters", "uses:"
# The channel every write announces its URL on, for the memory tiers (store/generations.py).
CHANGES = PREFIX + "changes"
DEFAULT_MAX_VALUE_SIZE = 8 << 20
OUTAGE_BACKOFF = 1.0  # seconds of immediate pass-through after a failure
BATCH = 500  # keys per MGET, UNLINK or pipeline
ENTRY_MARK, INDEX_MARK, TAG_MARK = b"E", b"I", b"T"
_NOW_MS = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "
# KEYS: member, group; ARGV: value, ttl in ms, changes channel, URL.
_SET_MEMBER = _NOW_MS + """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[2], last[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
"""
# KEYS: group.
_MEMBERS = _NOW_MS + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
# KEYS: key; ARGV: value, ttl in ms, changes channel, URL. A later expiry (or none) already
# there is kept.
_SET_KEEP_LATER = """
local current = redis.call('PTTL', KEYS[1])
redis.call('PUBLISH', ARGV[3], ARGV[4])
if current == -1 then return redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL') end
return redis.call('SET', KEYS[1], ARGV[1], 'PX', math.max(current, tonumber(ARGV[2])))
"""
_DELETE_IF = ("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1])"
              " end return 0")
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


class RedisBackend:
    """The Backend (store/backend.py) on a Redis database, with sync redis-py."""

    def __init__(self, url: str, max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
                 timeout: float = 1.0) -> None:
        self.location = url
        self.max_value_size = max_value_size
        # Short timeouts and no retries: during an outage a request passes through at once.
        # Any: redis-py's annotations mix its sync and async return types.
        self._redis: Any = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0), health_check_interval=30)
        self._down_until = 0.0
        self._set_member = self._redis.register_script(_SET_MEMBER)
        self._members = self._redis.register_script(_MEMBERS)
        self._set_keep_later = self._redis.register_script(_SET_KEEP_LATER)
        self._delete_if = self._redis.register_script(_DELETE_IF)

    def _call(self, fn: Callable[[], T]) -> T:
        if self._down_until and time.monotonic() < self._down_until:
            raise StoreUnavailable(f"Redis at {self.location} is unavailable")
        try:
            result = fn()
        except redis.RedisError as e:
            self._down_until = time.monotonic() + OUTAGE_BACKOFF
            raise StoreUnavailable(f"Redis at {self.location}: {e}") from e
        self._down_until = 0.0
        return result

    # -- values and groups ---------------------------------------------------------------------

    def get(self, key: str, max_inline: int | None = None) -> object | None:
        # `max_inline` is not checked (knowing the size first would cost a second round trip
        # on every hit, and values are bounded by max_value_size anyway), except for a read that
        # must not go to the network at all.
        if max_inline is not None and max_inline < 0:
            raise EntryTooLarge(key)
        return decode(self._call(lambda: self._redis.get(PREFIX + key)))

    def get_with_expiry(self, key: str, max_inline: int | None = None,
                        ) -> tuple[object | None, float | None]:
        """`get`, and the seconds it has left (None when absent), in one round trip."""
        if max_inline is not None and max_inline < 0:
            raise EntryTooLarge(key)
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(PREFIX + key)
        pipe.pttl(PREFIX + key)
        data, left = self._call(pipe.execute)
        value = decode(data)
        if value is None or left == -2:
            return None, None
        return value, (float("inf") if left == -1 else left / 1000)

    def get_many(self, keys: Iterable[str]) -> Iterator[object | None]:
        batch: list[str] = []
        for key in keys:
            batch.append(PREFIX + key)
            if len(batch) == BATCH:
                yield from self._mget(batch)
                batch = []
        if batch:
            yield from self._mget(batch)

    def _mget(self, keys: list[str]) -> Iterator[object | None]:
        values: list[bytes | None] = self._call(partial(self._redis.mget, keys))
        for data in values:
            try:
                yield decode(data)
            except Unreadable:
                yield None

    def has(self, key: str) -> bool:
        return bool(self._call(lambda: self._redis.exists(PREFIX + key)))

    def set(self, key: str, value: object, expire: float, group: str | None = None,
            keep_later: bool = False) -> bool:
        data = encode(value)
        if len(data) > self.max_value_size:
            return False
        px = max(1, int(expire * 1000))
        url = _url_of(key)
        if group is not None:
            if not key.startswith(group + SEP):
                raise ValueError(f"{key!r} is not named as a member of group {group!r}")
            keys = [PREFIX + key, PREFIX + GROUP + group]
            self._call(lambda: self._set_member(keys=keys, args=[data, px, CHANGES, url]))
        elif keep_later:
            self._call(lambda: self._set_keep_later(
                keys=[PREFIX + key], args=[data, px, CHANGES, url]))
        else:
            pipe = self._redis.pipeline(transaction=False)
            pipe.set(PREFIX + key, data, px=px)
            pipe.publish(CHANGES, url)
            self._call(pipe.execute)
        return True

    def delete(self, keys: Iterable[str]) -> int:
        names = list(keys)
        removed = 0
        for start in range(0, len(names), BATCH):
            # A member leaves its group's set in the same MULTI, so `members` never lists it.
            pipe = self._redis.pipeline(transaction=True)
            deletes = []  # which answers are DEL's
            for key in names[start:start + BATCH]:
                deletes.append(len(pipe))
                pipe.delete(PREFIX + key)
                if SEP in key:
                    pipe.zrem(PREFIX + GROUP + key.split(SEP, 1)[0], PREFIX + key)
            for url in {_url_of(key) for key in names[start:start + BATCH]}:
                pipe.publish(CHANGES, url)
            answers = self._call(pipe.execute)
            removed += sum(answers[i] for i in deletes)
        return removed

    def expiry(self, key: str) -> float | None:
        left = self._call(lambda: self._redis.pttl(PREFIX + key))
        if left == -2:
            return None
        return float("inf") if left == -1 else left / 1000

    def members(self, group: str) -> list[str]:
        found = self._call(lambda: self._members(keys=[PREFIX + GROUP + group]))
        return [_name(key) for key in found]

    def scan(self, members: bool = False) -> Iterator[str]:
        for key in self._value_keys():
            name = _name(key)
            if members or SEP not in name:
                yield name

    def _value_keys(self, groups: bool = False) -> list[bytes]:
        found = self._call(lambda: list(self._redis.scan_iter(PREFIX + "*", count=1000)))
        # `clear` (groups=True) removes groups and use counts too; listings skip both.
        skipped = (LOCK, COUNTERS) if groups else (LOCK, COUNTERS, GROUP, USES)
        return [key for key in found
                if not key[len(PREFIX):].startswith(tuple(s.encode() for s in skipped))]

    def usage(self) -> Usage:
        """Counted from each value's first byte and length, without unpickling."""
        keys = self._value_keys()
        entries = size = 0
        for start in range(0, len(keys), BATCH):
            pipe = self._redis.pipeline(transaction=False)
            for key in keys[start:start + BATCH]:
                pipe.getrange(key, 0, 0)
                pipe.strlen(key)
            answers = self._call(pipe.execute)
            for mark, length in zip(answers[::2], answers[1::2], strict=True):
                if mark == ENTRY_MARK:
                    entries += 1
                    size += int(length)
        return Usage(entries, size)

    def clear(self) -> Usage:
        # The figures --stats and the metrics show, counted without reading every value.
        before = self.usage()
        keys = self._value_keys(groups=True)
        for start in range(0, len(keys), BATCH):
            self._call(partial(self._redis.unlink, *keys[start:start + BATCH]))
        self._call(lambda: self._redis.publish(CHANGES, "*"))
        return before

    def subscribe_changes(self) -> SubscribedGenerations:
        """Change counters fed by every proxy's writes (for a memory tier)."""
        return SubscribedGenerations(self._redis, CHANGES)

    # -- locks and counters --------------------------------------------------------------------

    def add(self, key: str, token: str, ttl: float) -> bool:
        return bool(self._call(lambda: self._redis.set(
            PREFIX + LOCK + key, token, nx=True, px=max(1, int(ttl * 1000)))))

    def count_use(self, key: str, window: float) -> int:
        # INCR and PEXPIRE in one MULTI: no other client's command runs between them.
        pipe = self._redis.pipeline(transaction=True)
        pipe.incr(PREFIX + USES + key)
        pipe.pexpire(PREFIX + USES + key, max(1, int(window * 1000)))
        count, _ = self._call(pipe.execute)
        return int(count)

    def delete_if(self, key: str, token: str) -> bool:
        return bool(self._call(lambda: self._delete_if(keys=[PREFIX + LOCK + key], args=[token])))

    def add_counts(self, counts: dict[str, int]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for name, delta in counts.items():
            if delta:
                pipe.hincrby(PREFIX + COUNTERS, name, delta)
        self._call(pipe.execute)

    def counters(self) -> dict[str, int]:
        found = self._call(lambda: self._redis.hgetall(PREFIX + COUNTERS))
        return {k.decode(): int(v) for k, v in found.items()}

    def flush(self) -> None:
        """Nothing deferred: Redis tracks recency itself."""

    def close(self) -> None:
        self._redis.close()


def _url_of(key: str) -> str:
    return key.split(SEP, 1)[0] if SEP in key else key


def _name(key: bytes) -> str:
    return key[len(PREFIX):].decode("utf-8", "surrogateescape")


class RedisStore(Store):
    """The variant layout on a Redis database."""

    backend: RedisBackend

    def __init__(self, url: str, max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
                 timeout: float = 1.0) -> None:
        super().__init__(RedisBackend(url, max_value_size, timeout))
