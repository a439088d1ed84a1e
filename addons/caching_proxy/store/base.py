"""What every store offers the addon and the CLI, whatever holds the bytes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from caching_proxy.entry import Entry
from caching_proxy.policy import Headers


@dataclass(slots=True)
class VaryIndex:
    """Stored under a URL whose responses vary: the field names and the variant keys stored."""

    vary: tuple[str, ...]
    variants: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Usage:
    entries: int
    bytes: int


def variant_key(url: str, values: tuple[str, ...]) -> str:
    return f"{url}\x00{values!r}"


class Store(Protocol):
    """A response store shared by every proxy process that opens the same location.

    Each call is atomic on its own; `put` and `delete_url` keep a URL's variants consistent.
    Errors of the medium (disk, network) surface as OSError or the backend's own error, which the
    addon turns into pass-through.
    """

    location: str

    def lookup(self, url: str, request_headers: Headers) -> Entry | None:
        """The stored response for `url` whose Vary-selected fields match the request."""

    def has_url(self, url: str) -> bool:
        """Whether anything (a response or a Vary index) is stored under `url`."""

    def put(self, entry: Entry, expire: float) -> None:
        """Store `entry` for `expire` seconds, replacing the responses it supersedes."""

    def delete_url(self, url: str) -> int:
        """Remove every stored response for `url`; how many there were."""

    def clear(self) -> Usage:
        """Remove everything; what was removed."""

    def usage_estimate(self) -> Usage:
        """Responses stored and their size as stored, without reading every response."""

    def entries(self) -> Iterator[Entry]:
        """Every stored response (all variants), in no particular order."""

    def delete_matching(self, predicate: Callable[[str], bool]) -> int:
        """Remove every stored response whose URL satisfies `predicate`; how many there were."""

    def acquire(self, key: str, ttl: float) -> bool:
        """Take the fill lock for `key` unless another holder (any process) has it.

        The lock expires by itself after `ttl` seconds, so a holder that died never stalls others.
        """

    def release(self, key: str) -> None:
        """Give the fill lock for `key` back."""

    def add_counts(self, counts: dict[str, int]) -> None:
        """Add to the persisted counters (hits, misses, ...), shared by every process."""

    def counters(self) -> dict[str, int]:
        """The persisted counters since the store was created (`clear` keeps them)."""

    def flush(self) -> None:
        """Write what the store deferred to keep reads fast; called about once a second, off
        the event loop."""

    def close(self) -> None: ...
