"""The stored response: what the origin sent, plus what the policy worked out once at store time."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from caching_proxy.policy import StoredMeta, serve_headers

RawHeaders = tuple[tuple[bytes, bytes], ...]

# Fields the cache writes itself on every response it serves; a stored copy would be stale (Age)
# or would repeat another cache's verdict (X-Cache).
_PER_RESPONSE_FIELDS = frozenset({"age", "x-cache"})


def encode_headers(headers: list[tuple[str, str]]) -> RawHeaders:
    return tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers)


def decode_headers(headers: RawHeaders | list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]


@dataclass(slots=True)
class Entry:
    url: str
    status: int
    reason: bytes
    headers: RawHeaders  # as the origin sent them, less hop-by-hop and private="..." fields
    body: bytes  # or a read-only memoryview of a mapped file (large bodies on disk)
    meta: StoredMeta
    vary_values: tuple[str, ...] = ()
    # The header list of a hit, built once at store time instead of on every request.
    hit_headers: RawHeaders = field(default=())
    # Cache tags from the origin's tag fields (policy/tags.py); the store indexes them. New
    # fields go last, with a default: records written before them still load (__setstate__).
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.hit_headers:
            self.hit_headers = self.served_headers(revalidated=False)

    def __getstate__(self) -> list[Any]:
        return [getattr(self, name) for name in _FIELD_NAMES]

    def __setstate__(self, state: list[Any]) -> None:
        # A record of an older version has fewer fields: the missing ones take their defaults.
        for name, value in zip(_FIELD_NAMES, state, strict=False):
            object.__setattr__(self, name, value)
        for name in _FIELD_NAMES[len(state):]:
            object.__setattr__(self, name, _DEFAULTS[name])

    def text_headers(self) -> list[tuple[str, str]]:
        return decode_headers(self.headers)

    def served_headers(self, revalidated: bool) -> RawHeaders:
        kept = serve_headers(self.text_headers(), self.meta, revalidated=revalidated)
        return encode_headers([(k, v) for k, v in kept if k.lower() not in _PER_RESPONSE_FIELDS])

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(k) + len(v) for k, v in self.headers)


# Looked up once: `dataclasses.fields` on every pickling cost more than the rest of it.
_FIELD_NAMES = tuple(f.name for f in fields(Entry))
_DEFAULTS = {f.name: f.default for f in fields(Entry)}
