"""A large object fetched and stored in fixed-size ranges (nginx's slice module): which slices a
Range request touches, what each asks the origin, and whether two slices are of one object.
Pure functions, no I/O.

Slice k of size S is bytes k*S to (k+1)*S - 1 (the last one shorter). A request for bytes a-b
touches slices a//S to b//S; one for `a-` touches a//S to the last, known once a slice told the
object's length (its Content-Range). Slices are of one object when their lengths agree and their
validators do: the same strong ETag, else the same Last-Modified (RFC 9110 8.8.3, 13.1.5: a
weak or absent validator cannot tie two ranges together; nginx's slice module checks the ETag).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .fields import Headers, first_value
from .ranges import Spec, parse_range

_CONTENT_RANGE = re.compile(r"\s*bytes\s+(\d+)-(\d+)/(\d+)\s*", re.I)


@dataclass(frozen=True, slots=True)
class Piece:
    """What a slice's 206 says of itself."""

    first: int
    last: int
    total: int
    identity: tuple[str, str]  # ("etag", value) or ("last-modified", value)


def sliced_spec(range_value: str | None, if_range: str | None) -> tuple[int, int | None] | None:
    """The one `first-[last]` range a sliced answer can serve, or None: no Range, several
    ranges, a suffix (its start needs the length first: fetched whole as today), or an
    If-Range (answered by the usual path, which checks it against a whole stored response)."""
    if range_value is None or if_range is not None:
        return None
    specs: list[Spec] | None = parse_range(range_value)
    if specs is None or len(specs) != 1 or specs[0][0] is None:
        return None
    first, last = specs[0]
    assert first is not None
    return first, last


def slice_indexes(first: int, last: int | None, size: int, total: int | None) -> range:
    """The slices bytes `first`-`last` touch (`last` None: to the end, when `total` is known;
    else only the first slice, to learn it)."""
    end = last
    if total is not None:
        end = total - 1 if end is None else min(end, total - 1)
    start_index = first // size
    if end is None:
        return range(start_index, start_index + 1)
    return range(start_index, end // size + 1)


def slice_range(index: int, size: int) -> str:
    """The Range field asking the origin for slice `index`."""
    return f"bytes={index * size}-{(index + 1) * size - 1}"


def piece_of(status: int, headers: Headers) -> Piece | None:
    """What a slice's answer is, or None when it cannot be a slice: not a 206, no single
    `bytes a-b/total` Content-Range, or no validator that ties slices together."""
    if status != 206:
        return None
    found = _CONTENT_RANGE.fullmatch(first_value(headers, "content-range") or "")
    if found is None:
        return None
    first, last, total = (int(g) for g in found.groups())
    if last < first or last >= total:
        return None
    etag = first_value(headers, "etag")
    if etag is not None and not etag.strip().startswith("W/"):
        identity = ("etag", etag.strip())
    else:
        modified = first_value(headers, "last-modified")
        if modified is None:
            return None
        identity = ("last-modified", modified.strip())
    return Piece(first, last, total, identity)


def unsatisfied_length(headers: Headers) -> int | None:
    """The length a 416's `Content-Range: bytes */LENGTH` gives, or None."""
    found = re.fullmatch(r"\s*bytes\s+\*/(\d+)\s*", first_value(headers, "content-range") or "",
                         re.I)
    return int(found.group(1)) if found else None


def fits(piece: Piece, index: int, size: int) -> bool:
    """Whether `piece` is exactly slice `index` of an object of its length."""
    return piece.first == index * size and piece.last == min((index + 1) * size, piece.total) - 1
