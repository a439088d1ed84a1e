"""The variant layout (RFC 9111 4.1), written once over the Backend interface (store/backend.py).

- A response without Vary is stored under its URL (the primary key): a hit is one read.
- A URL whose responses vary holds a `VaryIndex` (the field names and a generation, never a
  list of variants) and each variant is a member of the URL's group, keyed by
  `variant_key(url, values, generation)`: a hit is two reads. A put writes the variant and the
  index, the same few bytes whatever the number of variants; the index is written with
  `keep_later`, so it expires with its longest-lived variant and not before.
- A response with a different Vary than the stored ones (or none) replaces all of them: a new
  generation, and the old one's members are deleted.
- A tagged response (Entry.tags) has, per tag, a marker in the group `tag:TAG`, named after
  the key the response is stored under and expiring with it: purging a tag lists its group (a
  range query, a sorted set), never the store. A marker can outlive its response (evicted, or
  purged by URL) until that response's expiry, and the key may by then hold another response:
  a tag purge removes only responses that still carry the tag.
- A soft purge rewrites each response it names as already stale (freshness lifetime 0), with
  its validators, body and expiry: the next request revalidates it (a 304 makes it fresh again
  without the body crossing the network), and it can still answer stale where
  stale-while-revalidate, stale-if-error or --use-stale allow, as after Fastly's soft purge.

Concurrency: each backend call is atomic per key (Redis: a call over many keys, such as the
deletes of a purge, goes key by key, node by node on a Cluster), calls are not atomic together.
Whatever order two processes' calls (and the keys within them) interleave in, a lookup reaches
only a variant of the index's own generation, so it never serves a variant selected by other
fields or one a purge removed; the worst a race leaves is an unreachable variant that expires by
itself (or a miss, refilled).

A record that cannot be decoded (another version's, garbage) is treated as absent and deleted
when met; it never makes a lookup, put or delete fail.

A lookup, a put, a lock and a use count are written once, as the backend calls they make
(store/calls.py, store/steps.py), and run either synchronously (`lookup`, `put`, `acquire`,
`release`, `count_use`) or on the event loop through the backend's asynchronous side (their
`*_async` forms: Redis, no thread): the same calls in the same order.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from caching_proxy.policy import Headers, vary_key
from caching_proxy.store.backend import SEP, Backend, EntryTooLarge, Traits, Unreadable
from caching_proxy.store.base import Usage, VaryIndex, variant_key, variant_prefix
from caching_proxy.store.calls import (
    Add,
    Call,
    CountUse,
    Delete,
    Get,
    Members,
    Release,
    Replace,
    Set,
)
from caching_proxy.store.entry import Entry
from caching_proxy.store.steps import Steps, close_async, perform_async, run, run_async

T = TypeVar("T")

# A Vary index is a few dozen bytes; reading no more than this under a URL tells an index from
# a response without reading the response (where the backend can tell sizes first).
_INDEX_READ_LIMIT = 4096
TAG_GROUP = "tag:"


def tag_group(tag: str) -> str:
    """The group of a tag's markers; ValueError for a tag that cannot be one."""
    if not tag or SEP in tag or any(c.isspace() or c == "," for c in tag):
        raise ValueError(f"invalid tag {tag!r}: tags contain no spaces, commas or NUL")
    return TAG_GROUP + tag


def group_of(key: str) -> str | None:
    """The group a stored key is a member of (a variant's URL), None for a URL's own key."""
    return key.split(SEP, 1)[0] if SEP in key else None


class Store:
    """A response store shared by every proxy process that opens the same location: the API the
    addon and the CLI use. Failures of the medium surface as OSError (Redis: StoreUnavailable)
    or sqlite3.Error, which the addon turns into pass-through."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @property
    def location(self) -> str:
        return self.backend.location

    @property
    def traits(self) -> Traits:
        """What kind of medium the store is (remote, shared...), as its backend declares it."""
        return self.backend.traits

    # -- responses -----------------------------------------------------------------------------

    def lookup(self, url: str, request_headers: Headers,
               max_inline: int | None = None) -> Entry | None:
        """The stored response for `url` whose Vary-selected fields match the request, or None.
        With `max_inline`, raises EntryTooLarge instead of reading a value larger than that
        where the backend can tell (diskcache), so that the caller can read it in a thread."""
        return run(self.backend, self._lookup(url, request_headers, max_inline))

    async def lookup_async(self, url: str, request_headers: Headers) -> Entry | None:
        """`lookup` through the backend's asynchronous calls, on the event loop (a network
        store). Unbounded here: the caller bounds it (GuardedStore, the store timeout)."""
        return await run_async(self.backend, self._lookup(url, request_headers, None))

    def _lookup(self, url: str, request_headers: Headers,
                max_inline: int | None) -> Steps[Entry | None]:
        found = yield from self._read(url, max_inline)
        if isinstance(found, VaryIndex):
            values = vary_key(found.vary, request_headers)
            found = yield from self._read(variant_key(url, values, found.generation), max_inline)
        return found if isinstance(found, Entry) else None

    def lookup_first(self, url: str, header_sets: Sequence[Headers],
                     max_inline: int | None = None) -> tuple[int, Entry] | None:
        """The first of `header_sets`, in order, that `lookup` would find a response for, with
        that response; None when none would. The URL's record is read once however many sets
        find nothing (a response without Vary answers the first). With `max_inline`, a
        response larger than that is passed over, as if not stored."""
        return run(self.backend, _first_stored(self._read, url, header_sets, max_inline))

    def has_url(self, url: str) -> bool:
        """Whether anything (a response or a Vary index) is stored under `url`."""
        return self.backend.has(url)

    def holds_url(self, url: str) -> bool:
        """Whether anything is stored for `url`: its record, or members of its group alone
        (store/slices.py's; variants whose index expired first)."""
        return self.backend.has(url) or bool(self.backend.members(url))

    def variant_keys(self, url: str) -> list[str]:
        """The keys of the live variants stored for `url` (expired and evicted ones drop out)."""
        return self.backend.members(url)

    def put(self, entry: Entry, expire: float, lock: tuple[str, str] | None = None) -> None:
        """Store `entry` for `expire` seconds, replacing the responses it supersedes: the one
        stored under the URL, or every variant when its Vary differs from theirs. With `lock`
        (name, token, as `acquire` gave it), the lock is released once the response can be
        read: in the same backend call for a response without Vary (one round trip less on
        Redis), else as the last call. A put that returns has released it; one that raised
        may not have."""
        run(self.backend, self._put(entry, expire, lock))

    async def put_async(self, entry: Entry, expire: float,
                        lock: tuple[str, str] | None = None) -> None:
        """`put` through the backend's asynchronous calls, as `lookup_async` is `lookup`. A put
        cancelled midway leaves what a process that died there would: at worst a variant no
        index reaches, or an index whose variant is missing (a miss), both expiring, and the
        lock until its ttl."""
        await run_async(self.backend, self._put(entry, expire, lock))

    def _put(self, entry: Entry, expire: float, lock: tuple[str, str] | None) -> Steps[None]:
        url = entry.url
        released = False
        if not entry.meta.vary:
            # The response stored, its URL's variants deleted and the URL's own lock (in its
            # Cluster slot) released: one call.
            joined = lock is not None and lock[0] == url
            if (yield Replace(url, entry, expire, lock if joined else None)):
                released = joined
                yield from self._mark_tags(url, entry, expire)
        else:
            yield from self._put_variant(url, entry, expire)
        if lock is not None and not released:
            yield Release(*lock)

    def _put_variant(self, url: str, entry: Entry, expire: float) -> Steps[None]:
        vary = entry.meta.vary
        index = yield from self._index(url)
        same = index is not None and index.vary == vary
        if index is None or not same:
            index = VaryIndex(vary, _new_generation())
        key = variant_key(url, entry.vary_values, index.generation)
        if not (yield Set(key, entry, expire, group=url)):
            return
        yield Set(url, index, expire, keep_later=same)
        if not same:
            yield from self._drop_variants(url, keep=index.generation)
        yield from self._mark_tags(key, entry, expire)

    def _mark_tags(self, key: str, entry: Entry, expire: float) -> Steps[None]:
        for tag in entry.tags:
            group = tag_group(tag)
            yield Set(group + SEP + key, entry.url, expire, group=group)

    def delete_url(self, url: str, soft: bool = False) -> int:
        """Remove every stored response for `url` (all variants); how many there were. `soft`
        marks them stale instead (see the module's docstring)."""
        if soft:
            return self._soften([url, *self.backend.members(url)])
        index = run(self.backend, self._index(url))
        # The index goes first: from then on no variant is reachable, whatever deleting them
        # (one call per batch) meets.
        primary = self.backend.delete([url])
        removed = run(self.backend, self._drop_variants(url))
        return removed + (primary if index is None else 0)

    def delete_matching(self, predicate: Callable[[str], bool], soft: bool = False) -> int:
        """Remove (`soft`: mark stale) every stored response whose URL satisfies `predicate`;
        how many there were."""
        # The URLs of every record, members too: a URL may have slices and no record of its own.
        urls = {group_of(key) or key for key in self.response_keys()}
        return sum(self.delete_url(url, soft) for url in sorted(urls) if predicate(url))

    def purge_tag(self, tag: str, soft: bool = False) -> int:
        """Remove (`soft`: mark stale) every stored response tagged `tag`, all variants of any
        URL it tags; how many. Reads only the tag's group and the responses it names."""
        group = tag_group(tag)
        markers = self.backend.members(group)
        keys = [marker.split(SEP, 1)[1] for marker in markers]
        tagged = [key for key, value in zip(keys, self.backend.get_many(keys), strict=True)
                  if isinstance(value, Entry) and tag in value.tags]
        if soft:
            return self._soften(tagged)
        removed = self.backend.delete(tagged) if tagged else 0
        if markers:
            self.backend.delete(markers)
        return removed

    def tagged_keys(self, tag: str) -> list[str]:
        """The keys of the responses whose marker says they carry `tag` (a marker may be
        stale: read the response to be sure)."""
        return [marker.split(SEP, 1)[1] for marker in self.backend.members(tag_group(tag))]

    def response_keys(self) -> Iterator[str]:
        """The keys responses (and Vary indexes) are stored under: no tag markers."""
        return (key for key in self.backend.scan(members=True) if not key.startswith(TAG_GROUP))

    def read_many(self, keys: Iterable[str]) -> Iterator[tuple[str, Entry]]:
        """The stored responses among `keys`, with their keys (others are skipped)."""
        keys = list(keys)
        for key, value in zip(keys, self.backend.get_many(keys), strict=True):
            if isinstance(value, Entry):
                yield key, value

    def soft_clear(self) -> int:
        """Mark every stored response stale (a soft `clear`); how many."""
        return self._soften(list(self.response_keys()))

    def _soften(self, keys: list[str]) -> int:
        """Rewrite the responses under `keys` as already stale, each with the expiry it had;
        how many. A response stored meanwhile by another process may be overwritten by its
        stale predecessor: that one revalidates with its own validators, so the origin decides
        what is served next."""
        softened = 0
        for key, entry in self.read_many(keys):
            left = self.backend.expiry(key)
            if left is None or left <= 0:
                continue
            stale = dataclasses.replace(
                entry, meta=dataclasses.replace(entry.meta, freshness_lifetime=0.0))
            if self.backend.set(key, stale, left, group=group_of(key)):
                softened += 1
        return softened

    def entries(self) -> Iterator[Entry]:
        """Every stored response (all variants), in no particular order."""
        for value in self.backend.get_many(self.backend.scan(members=True)):
            if isinstance(value, Entry):
                yield value

    def clear(self) -> Usage:
        """Remove everything but the counters; what was removed (counted without reading)."""
        return self.backend.clear()

    def usage_estimate(self) -> Usage:
        """Responses stored and their size as stored, without reading every response."""
        return self.backend.usage()

    # -- coordination and counters -------------------------------------------------------------

    def acquire(self, key: str, ttl: float) -> str | None:
        """Take the lock on `key` unless another holder (any process) has it: the owner token
        to release it with, or None. The lock expires by itself after `ttl` seconds, so a
        holder that died never stalls others."""
        return run(self.backend, _acquire(key, ttl))

    async def acquire_async(self, key: str, ttl: float) -> str | None:
        """`acquire` on the event loop, through the backend's asynchronous side (a network
        store). Unbounded here: the caller bounds it (GuardedStore)."""
        return await run_async(self.backend, _acquire(key, ttl))

    def release(self, key: str, token: str) -> bool:
        """Give the lock on `key` back if it is still the one `token` took (after it expired
        another holder may have it, and keeps it); whether it was."""
        return Release(key, token).run(self.backend)

    async def release_async(self, key: str, token: str) -> bool:
        """`release`, as `acquire_async` is `acquire`."""
        return await perform_async(self.backend, Release(key, token))

    def count_use(self, url: str, window: float) -> int:
        """Count one more request for `url`; how many there were, each within `window` seconds
        of the one before (the count expires `window` seconds after the latest, as nginx's
        `inactive`). Atomic: every process on the store (--workers, instances on one Redis)
        adds to the same count, and none is lost."""
        return CountUse(url, window).run(self.backend)

    async def count_use_async(self, url: str, window: float) -> int:
        """`count_use` through the backend's asynchronous side, on the event loop (a network
        store), with the same atomicity. Unbounded here: the caller bounds it (GuardedStore).
        Abandoned (cancelled), the count was either added to or not, as a process that died."""
        return await perform_async(self.backend, CountUse(url, window))

    def schedule(self, call: Call[T]) -> T:
        """A Schedules call (calls.Reserve, HoldOff, HeldOff: the origin budget's shared
        state), made at once; atomic as the method it names."""
        return call.run(self.backend)

    async def schedule_async(self, call: Call[T]) -> T:
        """`schedule` through the backend's asynchronous side, on the event loop (a network
        store); unbounded here (GuardedStore bounds it)."""
        return await perform_async(self.backend, call)

    def add_counts(self, counts: dict[str, int]) -> None:
        """Add to the persisted counters (hits, misses, ...), shared by every process."""
        self.backend.add_counts(counts)

    def counters(self) -> dict[str, int]:
        """The persisted counters since the store was created (`clear` keeps them)."""
        return self.backend.counters()

    def flush(self) -> None:
        """Write what the store deferred to keep reads fast; called about once a second, off
        the event loop."""
        self.backend.flush()

    def close(self) -> None:
        self.backend.close()

    async def close_async(self) -> None:
        """`close`, with the asyncio client's connections closed on the running loop first."""
        await close_async(self.backend)

    # ------------------------------------------------------------------------------------------

    # The steps lookups, puts and URL deletes share (store/steps.py).

    def _read(self, key: str, max_inline: int | None = None) -> Steps[object | None]:
        """The value under `key`; a record that does not decode, or decodes to something this
        layout never stores, is deleted and counts as absent."""
        value: object | None
        try:
            value = yield Get(key, max_inline)
        except Unreadable:
            value = _UNREADABLE
        if value is None or isinstance(value, Entry) or _valid_index(value):
            return value
        yield Delete([key])
        return None

    def _index(self, url: str) -> Steps[VaryIndex | None]:
        """The Vary index under `url`, if that is what is stored there."""
        try:
            found = yield from self._read(url, _INDEX_READ_LIMIT)
        except EntryTooLarge:  # a response, too large to be an index
            return None
        return found if isinstance(found, VaryIndex) else None

    def _drop_variants(self, url: str, keep: str | None = None) -> Steps[int]:
        """Delete `url`'s variants (but those of generation `keep`); how many were live."""
        members: list[str] = yield Members(url)
        if keep is not None:
            mine = variant_prefix(url, keep)
            members = [key for key in members if not key.startswith(mine)]
        if not members:
            return 0
        removed: int = yield Delete(members)
        return removed


def _acquire(key: str, ttl: float) -> Steps[str | None]:
    """Store.acquire's steps: a new owner token, if the lock was taken with it."""
    token = secrets.token_hex(8)
    taken: bool = yield Add(key, token, ttl)
    return token if taken else None


def _first_stored(read: Callable[[str, int | None], Steps[object | None]], url: str,
                  header_sets: Sequence[Headers],
                  max_inline: int | None) -> Steps[tuple[int, Entry] | None]:
    """Store.lookup_first's steps, `read` being the store's own (Store._read)."""
    if not header_sets:
        return None
    try:
        found = yield from read(url, max_inline)
    except EntryTooLarge:
        return None
    if isinstance(found, Entry):
        return 0, found
    if not isinstance(found, VaryIndex):
        return None
    read_before: set[str] = set()
    for at, headers in enumerate(header_sets):
        key = variant_key(url, vary_key(found.vary, headers), found.generation)
        if key in read_before:
            continue
        read_before.add(key)
        try:
            variant = yield from read(key, max_inline)
        except EntryTooLarge:
            continue
        if isinstance(variant, Entry):
            return at, variant
    return None


_UNREADABLE = object()


def _valid_index(value: object) -> bool:
    # An index of an older layout unpickles into this class with its fields mistyped.
    return (isinstance(value, VaryIndex) and isinstance(value.vary, tuple)
            and isinstance(value.generation, str) and bool(value.generation))


def _new_generation() -> str:
    return secrets.token_hex(6)
