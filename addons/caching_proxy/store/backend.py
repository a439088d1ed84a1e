"""What a store backend offers the layout (store/layout.py): small interfaces, each named for
what it holds, and the errors they raise.

Every backend implements `Backend`, the sum of these:

- `Values`, the data interface: opaque values under string keys, each with an expiry, and
  *groups*. A group is a set of keys the backend can list without anyone keeping a list: a key
  stored with `group=G` is named `G + SEP + name` (a group's name never contains SEP, so a
  key's group is what precedes its first SEP), so diskcache finds the members with a range
  query on its key index, and Redis keeps a sorted set per group scored by each member's expiry
  time. `members(G)` lists the live ones only; a member that expired or was evicted drops out
  by itself, and writing a member never rewrites the others.
- `Locks`: atomic insert-if-absent entries carrying an owner token, kept apart from the values
  (`scan` never lists one).
- `UseCounts`: an integer per key with an expiry, incremented and given a new expiry in one
  atomic step (diskcache: `incr` and `touch` in one transaction; Redis: INCR and PEXPIRE in one
  Lua script), so every process on the store counts into the same number: a rule's `min_uses`
  admits a response on the N-th request for its key whichever instance gets it. Kept apart from
  the values (`scan` never lists one); `Contents.clear` removes them.
- `Counters`: integers shared by every process (hits, misses...), kept apart from the values
  and by `clear`.
- `Schedules`: the origin budget's shared state (origin/budget.py): a rate schedule, a pause and
  a set of leased slots (the concurrency bound) per name, each read and moved in one atomic
  step on the store's own clock (diskcache: one transaction, this machine's time; Redis: one
  Lua script, the server's TIME), so every process and instance on the store keeps one
  schedule. Kept apart from the values and by `clear`.
- `Contents`: the values as a whole: their count and size, and removing them all.
- `Handle`: the open store: where it is, what kind of medium (`Traits`), upkeep and closing.

Optional, implemented by the backends that have them (checked once, where they are needed:
the memory tier's construction, open_store, store/registry.py's open for `Asynchronous`):

- `ReadsWithExpiry`: a value and its expiry from one read (the memory tier's, else it makes
  `get` then `expiry`).
- `ChangeFeed`: change counters telling an in-process copy whether the store changed under it
  (diskcache: a shared file; Redis: published by every writer). A memory tier needs it.
- `Asynchronous`: every call of store/calls.py made on the event loop (a network backend's
  asyncio client). A backend without it is run synchronously by the asynchronous driver.

Tags use the same primitives (store/layout.py): a tag is another kind of group, of marker
records named `"tag:" + tag + SEP + key` (a str value: the URL), each stored with the expiry of
the key it marks, so the tag lists its live keys like a URL lists its variants. A later kind of
data fits them too: the chunks of a partial response as a group under its variant key.

Guarantees every backend gives, on every interface: each call is atomic on its own for each key
it names (diskcache: one SQLite transaction for the whole call; Redis: one command or Lua script
per key, with its group's set, in the key's Cluster slot: a call over many keys is not atomic
across them), and every process (diskcache: on this machine; Redis: on any machine) sees the
same data. Calls are not atomic with each other: the layout is written so that any interleaving
of two processes' calls (or of the keys of one Redis call) leaves a state it serves correctly.
Failures of the medium surface as OSError (Redis: StoreUnavailable) or one of diskcache's errors
(store/registry.py's STORE_ERRORS), which the addon turns into pass-through.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar, cast, runtime_checkable

from caching_proxy.store.base import Usage

if TYPE_CHECKING:
    from caching_proxy.store.calls import Call

T = TypeVar("T")

# Between a group's name and a member's own name. URLs never contain NUL.
SEP = "\x00"


class Unreadable(Exception):
    """A record exists under the key but cannot be decoded: written by another version of the
    proxy (or of Python), truncated, or not written by this proxy at all. The layout drops it."""


class EntryTooLarge(Exception):
    """The stored value is larger than the caller wants read inline (on the event loop)."""


@dataclass(frozen=True, slots=True)
class Traits:
    """What kind of medium a backend is, as the hooks need to know it (store/guarded.py, the
    addon), declared by the backend itself.

    - `remote`: a network store: never read synchronously from a hook (only through its memory
      tier), but through `Asynchronous` on the event loop, bounded by the store timeout. A
      remote backend is `async_capable`.
    - `shared`: other proxies may use the store at any time (instances on other machines): fills
      and refreshes take its locks even for a single process.
    - `async_capable`: it implements `Asynchronous`.
    """

    remote: bool = False
    shared: bool = False
    async_capable: bool = False


class Values(Protocol):
    """The data interface: values under keys, each with an expiry, and groups of keys."""

    def get(self, key: str, max_inline: int | None = None) -> object | None:
        """The live value under `key`, or None (absent or expired). Raises Unreadable for a
        record it cannot decode (left in place), and EntryTooLarge instead of reading a value
        over `max_inline` bytes where the backend can tell the size first (diskcache can;
        Redis ignores `max_inline`, but for a negative one: "not from the network")."""

    def get_many(self, keys: Iterable[str]) -> Iterator[object | None]:
        """The value of each key in turn, None for an absent or unreadable one (for listings,
        which skip what they cannot read; lookups use `get`, which says why)."""

    def has(self, key: str) -> bool:
        """Whether a live value is stored under `key`, without reading it."""

    def set(self, key: str, value: object, expire: float, group: str | None = None,
            keep_later: bool = False) -> bool:
        """Store `value` (an Entry, a VaryIndex or a tag marker's str) for `expire` seconds
        (inf: no expiry); whether it was stored (Redis refuses values over its max_value_size).
        With `group`, `key` must be `group + SEP + name` (else ValueError, nothing written) and
        becomes a member of that group until it expires. With `keep_later`, a current expiry
        later than `expire` is kept (read and written atomically), so a Vary index lives as long
        as its longest-lived variant whatever order the variants are written in."""

    def replace(self, key: str, value: object, expire: float,
                lock: tuple[str, str] | None = None) -> bool:
        """`set` of a key that is no member (a URL's own record; ValueError for a member), with
        the live members of the group named `key` (its variants) deleted and, with `lock`
        (name, token), that lock released as `Locks.delete_if` would, all in one atomic call:
        one transaction (diskcache), one script (Redis: the group and the lock share the key's
        Cluster slot). Whether it was stored; when not (a value over Redis's max_value_size),
        nothing was done, the lock neither."""

    def delete(self, keys: Iterable[str]) -> int:
        """Remove the values under `keys` (each from its group); how many were live."""

    def expiry(self, key: str) -> float | None:
        """Seconds until the live value under `key` expires (inf: never), None if absent."""

    def members(self, group: str) -> list[str]:
        """The keys of the group's live members, in no particular order."""

    def scan(self, members: bool = False) -> Iterator[str]:
        """The keys values are stored under, without group members unless `members`; never
        lock keys, use counts or counters. A snapshot as of about the call: concurrent writes
        may or may not show."""


class Locks(Protocol):
    """Locks with an owner token and a time to live, shared by every process on the store."""

    def add(self, key: str, token: str, ttl: float) -> bool:
        """Take lock `key` for `ttl` seconds, marked with `token`, unless a live lock is there
        (atomic insert-if-absent; an expired lock counts as absent); whether it was taken."""

    def delete_if(self, key: str, token: str) -> bool:
        """Remove lock `key` only if it still carries `token` (atomic compare-and-delete), so a
        holder whose lock expired never removes the next holder's; whether it did."""


class UseCounts(Protocol):
    """A count of uses per key, each with a window (see the module's docstring)."""

    def count_use(self, key: str, window: float) -> int:
        """Add one to the use count of `key` and make it expire `window` seconds from now, as one
        atomic step; the new count (1 when there was none or it had expired). No count is lost
        between processes."""


class Counters(Protocol):
    """Named integers shared by every process, kept by `Contents.clear`."""

    def add_counts(self, counts: dict[str, int]) -> None:
        """Add to the shared counters (atomic per counter; a zero delta writes nothing)."""

    def counters(self) -> dict[str, int]:
        """Every counter's value (since the store was created)."""


class Schedules(Protocol):
    """The origin budget's schedules, shared by every process on the store."""

    def reserve(self, key: str, rate: float, burst: int, max_wait: float) -> float | None:
        """A place in the GCRA schedule `key` (policy/origin_budget.py's `reserve`): the
        seconds to wait before sending, or None when that would exceed `max_wait` (nothing
        reserved). Atomic: no two processes get the same place."""

    def hold_off(self, key: str, seconds: float) -> float:
        """Pause `key` for at least `seconds` from now (a later pause in place is kept); the
        seconds the pause now in place has left."""

    def held_off(self, key: str) -> float:
        """The seconds the pause of `key` has left (0: none)."""

    def take_slot(self, key: str, token: str, limit: int, lease: float) -> bool:
        """Hold one of the `limit` slots of `key` under `token` for `lease` seconds (a holder
        that dies frees it then), if fewer than `limit` live holders have one; whether it did.
        Atomic: never more than `limit` live holders, whichever processes ask."""

    def give_slot(self, key: str, token: str) -> None:
        """Free the slot `token` holds (nothing if it lapsed)."""


class Contents(Protocol):
    """The stored values as a whole."""

    def usage(self) -> Usage:
        """Responses stored and their size as stored, without reading every value."""

    def clear(self) -> Usage:
        """Remove every value, group, lock and use count (counters stay); what `usage` said
        before."""


class Handle(Protocol):
    """The open store itself."""

    location: str  # as it may be shown (no password)
    traits: Traits

    def flush(self) -> None:
        """Write what the backend deferred to keep reads fast; called about once a second."""

    def close(self) -> None:
        """Release the backend's connections and files; no call is made after."""


class Backend(Values, Locks, UseCounts, Counters, Schedules, Contents, Handle, Protocol):
    """Everything a store backend implements (store/registry.py opens one by scheme)."""


@runtime_checkable
class ReadsWithExpiry(Protocol):
    """Optional: `get` and `expiry` from one read."""

    def get_with_expiry(self, key: str, max_inline: int | None = None,
                        ) -> tuple[object | None, float | None]:
        """`Values.get` and the seconds the value has left (None when absent), as one read:
        the same answers, atomically."""


class ChangeCounters(Protocol):
    def read(self, url: str) -> object:
        """A token of `url`'s change counters: equal tokens mean no change in between. Read
        before a value, a token equal to a later one proves the value still stored: every
        write to the URL (by any process on the store) changes it once the write is made."""


@runtime_checkable
class ChangeFeed(Protocol):
    """Optional: the change counters a memory tier (store/memory/tier.py) checks its copies
    against."""

    def changes(self) -> ChangeCounters:
        """The store's change counters (store/generations.py), the same object each call, owned
        (and closed) by the backend."""


@runtime_checkable
class Asynchronous(Protocol):
    """Optional (`Traits.async_capable`): the backend's calls made on the event loop.

    `call_async` makes any call of store/calls.py with the same guarantees as the synchronous
    method it names, awaited: Redis through redis-py's asyncio client, each socket operation
    bounded by the client's timeout, the same commands and scripts as the synchronous call
    (both come from one source: store/redis/store.py). A call abandoned mid-way (cancelled) has
    either been made or not, per key, as in a process that died there."""

    async def call_async(self, call: Call[T]) -> T:
        """What `call.run(self)` answers (or raises), on the event loop."""

    async def close_async(self) -> None:
        """`close`, on the event loop the asyncio client was made on: its connections closed
        there first (redis-py's cluster client left unclosed logs an error when collected)."""


def asynchronous(backend: Handle) -> Asynchronous | None:
    """The backend's asynchronous side, None for one that has none (run it synchronously)."""
    # The declared trait, not an isinstance check per call: store/registry.py checks it on open.
    return cast(Asynchronous, backend) if backend.traits.async_capable else None
