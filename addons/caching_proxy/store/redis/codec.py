"""How the Redis store (store/redis/store.py) writes values as bytes and reads them back.

A value is one mark byte and its data: a response or a Vary index pickled, a tag marker's URL
as UTF-8. Reading unpickles with an unpickler that builds only this package's entry classes, so
whoever can write to the Redis cannot make the proxy run code; anything else is Unreadable.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from caching_proxy.store import renamed  # noqa: F401 - the old module name, for old pickles
from caching_proxy.store.backend import Unreadable
from caching_proxy.store.base import VaryIndex
from caching_proxy.store.entry import Entry

ENTRY_MARK, INDEX_MARK, TAG_MARK = b"E", b"I", b"T"


class _EntryUnpickler(pickle.Unpickler):
    ALLOWED = frozenset({
        ("caching_proxy.store.entry", "Entry"),
        ("caching_proxy.entry", "Entry"),  # written before the subpackages (renamed.py)
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


def decoded(data: bytes | None) -> object | None:
    """`decode`, None for what cannot be read (listings skip it)."""
    try:
        return decode(data)
    except Unreadable:
        return None


def with_expiry(data: bytes | None, left: int) -> tuple[object | None, float | None]:
    """The value and seconds left from GET_WITH_TTL's answer (PTTL: -2 absent, -1 no expiry)."""
    value = decode(data)
    if value is None or left == -2:
        return None, None
    return value, (float("inf") if left == -1 else left / 1000)
