"""The primitive interface a store backend offers the layout (store/layout.py), and its errors.

A backend holds opaque values under string keys, each with an expiry, and knows four more
things: groups, locks, counters and use counts.

- A *group* is a set of keys the backend can list without anyone keeping a list: a key stored
  with `group=G` is named `G + SEP + name` (a group's name never contains SEP, so a key's group
  is what precedes its first SEP), so diskcache finds the members with a range query on
  its key index, and Redis keeps a sorted set per group scored by each member's expiry time.
  `members(G)` lists the live ones only; a member that expired or was evicted drops out by
  itself, and writing a member never rewrites the others.
- A *lock* (`add` / `delete_if`) is an atomic insert-if-absent carrying an owner token, kept
  apart from the values (`scan` never lists it).
- *Counters* are integers shared by every process, kept apart from the values and by `clear`.
- A *use count* (`count_use`) is an integer per key with an expiry, incremented and given a new
  expiry in one atomic step (diskcache: `incr` and `touch` in one transaction; Redis: INCR and
  PEXPIRE in one Lua script), so every process on the store counts into the same number: a rule's
  `min_uses` admits a response on the N-th request for its key whichever instance gets it.
  Kept apart from the values (`scan` never lists one); `clear` removes them.

Tags use the same primitives (store/layout.py): a tag is another kind of group, of marker
records named `"tag:" + tag + SEP + key` (a str value: the URL), each stored with the expiry of
the key it marks, so the tag lists its live keys like a URL lists its variants, with no list to
keep up to date.

A later kind of data fits them too:
- Partial objects (ranges stored as they arrive): the chunks of one response are a group under
  its variant key (`variant + SEP + offset`), each chunk a value of its own; a chunk map in the
  response's record, like the VaryIndex, names what is needed to serve a range.

Guarantees every backend gives: each call is atomic on its own for each key it names (diskcache:
one SQLite transaction for the whole call; Redis: one command or Lua script per key, with its
group's set, in the key's Cluster slot: a call over many keys is not atomic across them), and
every process (diskcache: on this machine; Redis: on any machine) sees the same data. Calls are
not atomic with each other: the layout is written so that any interleaving of two processes'
calls (or of the keys of one Redis call) leaves a state it serves correctly. Failures of the
medium surface as OSError (Redis: StoreUnavailable) or sqlite3.Error, which the addon turns into
pass-through.

Asynchronous twins (`get_async`, `set_async`, `replace_async`, `delete_async`, `members_async`,
`delete_if_async`: what the layout's lookup and put need, store/steps.py; `add_async`,
`delete_if_async`: the locks; `count_use_async`: a rule's `min_uses`) make the same call with
the same guarantees, awaited on the event loop: Redis through redis-py's asyncio client, each
socket operation bounded by the client's timeout; a local backend (diskcache) runs the
synchronous call itself, a short local step (the addon never sends it a large value this way). A
twin abandoned mid-call (cancelled) has either made its call or not, per key, as a process that
died there.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from caching_proxy.store.base import Usage

# Between a group's name and a member's own name. URLs never contain NUL.
SEP = "\x00"


class Unreadable(Exception):
    """A record exists under the key but cannot be decoded: written by another version of the
    proxy (or of Python), truncated, or not written by this proxy at all. The layout drops it."""


class EntryTooLarge(Exception):
    """The stored value is larger than the caller wants read inline (on the event loop)."""


class Backend(Protocol):
    location: str

    def get(self, key: str, max_inline: int | None = None) -> object | None:
        """The live value under `key`, or None (absent or expired). Raises Unreadable for a
        record it cannot decode (left in place), and EntryTooLarge instead of reading a value
        over `max_inline` bytes where the backend can tell the size first (diskcache can;
        Redis ignores `max_inline`)."""

    async def get_async(self, key: str, max_inline: int | None = None) -> object | None:
        """`get`, never holding up the event loop longer than the backend's own timeout (see
        "Asynchronous twins" in the module's docstring)."""

    def get_many(self, keys: Iterable[str]) -> Iterator[object | None]:
        """The value of each key in turn, None for an absent or unreadable one (for listings,
        which skip what they cannot read; lookups use `get`, which says why)."""

    def has(self, key: str) -> bool:
        """Whether a live value is stored under `key`, without reading it."""

    def set(self, key: str, value: object, expire: float, group: str | None = None,
            keep_later: bool = False) -> bool:
        """Store `value` (an Entry, a VaryIndex or a tag marker's str) for `expire` seconds;
        whether it was stored (Redis refuses values over its max_value_size). With `group`,
        `key` must be `group + SEP + name` and becomes a member of that group until it expires.
        With `keep_later`, a current expiry later than `expire` is kept (read and written
        atomically), so a Vary index lives as long as its longest-lived variant whatever order
        the variants are written in."""

    async def set_async(self, key: str, value: object, expire: float, group: str | None = None,
                        keep_later: bool = False) -> bool:
        """`set`, as `get_async` is `get`."""

    def replace(self, key: str, value: object, expire: float,
                lock: tuple[str, str] | None = None) -> bool:
        """`set` of a key that is no member (a URL's own record), with the live members of the
        group named `key` (its variants) deleted and, with `lock` (name, token), that lock
        released as `delete_if` would, all in one call: one transaction (diskcache), one script
        (Redis: the group and the lock share the key's Cluster slot). Whether it was stored;
        when not (a value over Redis's max_value_size), nothing was done, the lock neither."""

    async def replace_async(self, key: str, value: object, expire: float,
                            lock: tuple[str, str] | None = None) -> bool:
        """`replace`, as `get_async` is `get`."""

    def delete(self, keys: Iterable[str]) -> int:
        """Remove the values under `keys`; how many were live."""

    async def delete_async(self, keys: Iterable[str]) -> int:
        """`delete`, as `get_async` is `get`."""

    def expiry(self, key: str) -> float | None:
        """Seconds until the live value under `key` expires (inf: never), None if absent."""

    def members(self, group: str) -> list[str]:
        """The keys of the group's live members, in no particular order."""

    async def members_async(self, group: str) -> list[str]:
        """`members`, as `get_async` is `get`."""

    def scan(self, members: bool = False) -> Iterator[str]:
        """The keys values are stored under, without group members unless `members`; never
        lock keys or counters. A snapshot as of about the call: concurrent writes may or may
        not show."""

    def add(self, key: str, token: str, ttl: float) -> bool:
        """Take lock `key` for `ttl` seconds, marked with `token`, unless a live lock is there
        (atomic insert-if-absent; an expired lock counts as absent)."""

    async def add_async(self, key: str, token: str, ttl: float) -> bool:
        """`add`, never holding up the event loop longer than the backend's own timeout (for a
        local backend: `add` itself, a short local write)."""

    async def delete_if_async(self, key: str, token: str) -> bool:
        """`delete_if`, as `add_async` is `add`."""

    def count_use(self, key: str, window: float) -> int:
        """Add one to the use count of `key` and make it expire `window` seconds from now, as one
        atomic step; the new count (1 when there was none or it had expired)."""

    async def count_use_async(self, key: str, window: float) -> int:
        """`count_use`, as `add_async` is `add` (the same single atomic step)."""

    def delete_if(self, key: str, token: str) -> bool:
        """Remove lock `key` only if it still carries `token` (atomic compare-and-delete), so a
        holder whose lock expired never removes the next holder's; whether it did."""

    def usage(self) -> Usage:
        """Responses stored and their size as stored, without reading every value."""

    def clear(self) -> Usage:
        """Remove every value and group (counters stay); what `usage` said before."""

    def add_counts(self, counts: dict[str, int]) -> None:
        """Add to the shared counters (atomic per counter)."""

    def counters(self) -> dict[str, int]: ...

    def flush(self) -> None:
        """Write what the backend deferred to keep reads fast; called about once a second."""

    def close(self) -> None: ...

    async def close_async(self) -> None:
        """`close`, on the event loop the asyncio client was made on: its connections closed
        there first (redis-py's cluster client left unclosed logs an error when collected)."""
