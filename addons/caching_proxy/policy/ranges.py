"""Range requests answered from a stored full response (RFC 9110 14): pure functions of the
request's Range and If-Range fields and the stored response's status, validators and length.

What a cache may choose (14.2), chosen as nginx and Varnish do: only `bytes` ranges of a stored
200; an invalid or unknown-unit Range is ignored (the whole 200); ranges that overlap, or more
than MAX_RANGES of them, get the whole 200 too (RFC 9110 14.2 allows ignoring them, against
denial of service by many small ranges); several disjoint ranges are sent as
multipart/byteranges in the order asked; none satisfiable is a 416 with `bytes */LENGTH`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from itertools import pairwise

from .fields import Headers, first_value, parse_http_date

MAX_RANGES = 16


class RangeKind(enum.Enum):
    FULL = "full"  # serve the whole response (no Range, ignored, or If-Range did not match)
    PARTIAL = "partial"  # 206 with `ranges`
    UNSATISFIABLE = "unsatisfiable"  # 416


@dataclass(frozen=True, slots=True)
class ByteRange:
    first: int
    last: int  # inclusive

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self, complete: int) -> str:
        return f"bytes {self.first}-{self.last}/{complete}"


@dataclass(frozen=True, slots=True)
class RangePlan:
    kind: RangeKind
    ranges: tuple[ByteRange, ...] = ()


FULL = RangePlan(RangeKind.FULL)
UNSATISFIABLE = RangePlan(RangeKind.UNSATISFIABLE)

Spec = tuple[int | None, int | None]  # (first, last); (None, n) is a suffix of n bytes


def parse_range(value: str) -> list[Spec] | None:
    """The byte-range specs of a Range value (14.1.1), or None when it is not a valid `bytes`
    range set (then the field is ignored, 14.2)."""
    unit, eq, rest = value.partition("=")
    if not eq or unit.lower() != "bytes":  # no whitespace around "=" (14.1.1)
        return None
    specs: list[Spec] = []
    for part in rest.split(","):
        part = part.strip(" \t")
        if not part:
            continue  # empty list elements are allowed (RFC 9110 5.6.1)
        first, dash, last = part.partition("-")
        if not dash or not (first or last):
            return None
        if (first and not first.isdigit()) or (last and not last.isdigit()):
            return None
        if not first:
            specs.append((None, int(last)))
            continue
        start, end = int(first), int(last) if last else None
        if end is not None and end < start:
            return None  # 14.1.1: invalid if last < first
        specs.append((start, end))
    return specs or None


def resolve(specs: list[Spec], length: int) -> list[ByteRange]:
    """The satisfiable ranges of `specs` over a representation of `length` bytes (14.1.1)."""
    found: list[ByteRange] = []
    for first, last in specs:
        if first is None:
            assert last is not None
            if last == 0 or length == 0:
                continue  # a suffix of 0 bytes is unsatisfiable
            found.append(ByteRange(max(0, length - last), length - 1))
        elif first < length:
            found.append(ByteRange(first, length - 1 if last is None else min(last, length - 1)))
    return found


def if_range_matches(if_range: str, stored: Headers) -> bool:
    """RFC 9110 13.1.5: an entity-tag must match the stored ETag strongly; a date must equal
    Last-Modified exactly, and that Last-Modified must be strong (at least a second before
    the Date, 8.8.2.2)."""
    value = if_range.strip()
    if value.startswith('"') or value.startswith("W/"):
        etag = first_value(stored, "etag")
        return (etag is not None and not value.startswith("W/")
                and not etag.startswith("W/") and etag.strip() == value)
    given = parse_http_date(value)
    modified = parse_http_date(first_value(stored, "last-modified"))
    date = parse_http_date(first_value(stored, "date"))
    return (given is not None and modified is not None and given == modified
            and date is not None and date - modified >= 1)


def range_plan(method: str, request: Headers, status: int, stored: Headers,
               length: int) -> RangePlan:
    """How to answer `request` (its Range and If-Range) from a stored response of `status`
    with `stored` fields and a body of `length` bytes."""
    value = first_value(request, "range")
    if value is None or method != "GET" or status != 200:
        return FULL
    if_range = first_value(request, "if-range")
    if if_range is not None and not if_range_matches(if_range, stored):
        return FULL
    specs = parse_range(value)
    if specs is None:
        return FULL
    ranges = resolve(specs, length)
    if not ranges:
        return UNSATISFIABLE
    if len(ranges) > MAX_RANGES or _overlapping(ranges):
        return FULL
    return RangePlan(RangeKind.PARTIAL, tuple(ranges))


def _overlapping(ranges: list[ByteRange]) -> bool:
    ordered = sorted(ranges, key=lambda r: r.first)
    return any(b.first <= a.last for a, b in pairwise(ordered))
