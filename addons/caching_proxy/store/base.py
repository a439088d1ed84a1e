"""The records the layout stores besides responses, and the key of a variant."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class VaryIndex:
    """Stored under a URL whose responses vary: the field names that select a variant, and the
    generation its variants are keyed under.

    It never lists the variants (the backend's group under the URL does), so it stays the same
    few bytes however many variants there are. A new generation starts whenever the index is
    created afresh (first variant, changed Vary, after a purge): variants of an older
    generation can never be reached again, even where deleting them missed some (a lost Redis
    group, two processes changing Vary at once).
    """

    vary: tuple[str, ...]
    generation: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    entries: int
    bytes: int


def variant_key(url: str, values: tuple[str, ...], generation: str = "") -> str:
    """The key of the variant selected by `values` (RFC 9111 4.1): a member of `url`'s group."""
    return variant_prefix(url, generation) + repr(values)


def variant_prefix(url: str, generation: str) -> str:
    """What the keys of one generation of `url`'s variants start with."""
    return f"{url}\x00{generation}\x00"
