"""How the Redis store names its keys, so that the keys a Lua script or a per-URL step touches
together always share one Redis Cluster slot.

Every key is `caching-proxy:{TAG}:KIND NAME`: NAME is the backend's key (store/backend.py), KIND
says what is kept under it (nothing for a value, `group:`, `lock:`, `uses:`), and TAG is a hash
tag of NAME's *owner*: what precedes its first SEP, i.e. the group of a group member (the URL of
a Vary variant, `tag:TAG` of a tag marker), else NAME itself. So a URL's primary key, its Vary
index, its variants, its group set (`group:URL`), its locks (the fill lock under the URL, the
refresh lock under `URL + SEP + "refresh"`) and its use count land in one slot, and so do a
tag's markers and the tag's group set: a script that writes a member and its group, or deletes
a key and removes it from its group, never spans two slots. Keys of different owners land
anywhere; nothing the store does is atomic across them.

TAG is 8 hex digits of CRC-32 of the owner, not the owner itself: a URL may contain `{` or `}`,
which would end a hash tag early, and a short tag keeps keys short. Owners whose CRCs collide,
or whose tags hash to one slot, merely share it.

One naming for every mode (one Redis, Sentinel, Cluster). Keys of the naming before this one
(`caching-proxy:URL`, without a tag) are never read again and expire by their own PX; the
shared counters keep their key, `caching-proxy:counters` (one hash, in a slot of its own).
"""

from __future__ import annotations

import itertools
import os
import zlib

from caching_proxy.store.backend import SEP

PREFIX = "caching-proxy:"
VALUE, GROUP, LOCK, USES = "", "group:", "lock:", "uses:"
SCHEDULE, PAUSE, SLOTS = "schedule:", "pause:", "slots:"  # the origin budget's (Schedules)
COUNTERS = PREFIX + "counters"
# The channel every write announces its owner on, for the memory tiers (store/generations.py).
CHANGES = PREFIX + "changes"
# An announcement is "#ID OWNER" (`announcement`); an owner never starts with "#".
_MARK = "#"
# SCAN MATCH for every tagged key (`{` is no glob character); the counters do not match.
PATTERN = PREFIX + "{*"
_TAG_DIGITS = 8
_HEAD = len(PREFIX) + _TAG_DIGITS + 3  # the prefix, "{", the tag, "}:"


def owner_of(name: str) -> str:
    """What `name` belongs to: its group (a member's), else itself. Also what a write of it
    announces on CHANGES: the memory tier keys its change counters the same way."""
    return name.split(SEP, 1)[0]


def hash_tag(owner: str) -> str:
    return format(zlib.crc32(owner.encode("utf-8", "surrogateescape")), "08x")


def redis_key(name: str, kind: str = VALUE) -> str:
    """The Redis key of backend key (or group, lock, use count) `name`."""
    return f"{PREFIX}{{{hash_tag(owner_of(name))}}}:{kind}{name}"


def split_key(key: bytes) -> tuple[str, str]:
    """(KIND, NAME) of a Redis key `redis_key` made."""
    rest = key[_HEAD:].decode("utf-8", "surrogateescape")
    for kind in (GROUP, LOCK, USES, SCHEDULE, PAUSE, SLOTS):
        if rest.startswith(kind):
            return kind, rest[len(kind):]
    return VALUE, rest


# An announcement's ID: this process's random prefix (new in a forked worker) and a sequence.
_sender = os.urandom(6).hex()
_sequence = itertools.count()


def _new_sender() -> None:
    global _sender
    _sender = os.urandom(6).hex()


os.register_at_fork(after_in_child=_new_sender)


def announcement(owner: str) -> str:
    """What a change of `owner` publishes on CHANGES: `owner` with an ID no other announcement
    has (in any process), so that a subscriber that hears it several times (every node of a
    cluster forwards each PUBLISH to the others, store/generations.py) counts it once."""
    return f"{_MARK}{_sender}{next(_sequence):x} {owner}"


def announced(text: str) -> tuple[str | None, str]:
    """(ID, owner) of an announcement; (None, text) for a bare owner."""
    if text.startswith(_MARK):
        ident, sep, owner = text.partition(" ")
        if sep:
            return ident, owner
    return None, text
