"""Range requests against a stored whole response (RFC 9110 14, 13.1.5), as pure functions."""

from __future__ import annotations

import pytest

from caching_proxy.policy.ranges import (
    MAX_RANGES,
    ByteRange,
    RangeKind,
    parse_range,
    range_plan,
    resolve,
)

STORED = [("ETag", '"v1"'), ("Last-Modified", "Tue, 01 Dec 2026 10:00:00 GMT"),
          ("Date", "Tue, 01 Dec 2026 12:00:00 GMT")]


@pytest.mark.parametrize(("value", "specs"), [
    ("bytes=0-4", [(0, 4)]),
    ("bytes=5-", [(5, None)]),
    ("bytes=-3", [(None, 3)]),
    ("BYTES = 1-2, 4-5", None),  # no whitespace around "=" in the grammar
    ("bytes=1-2, ,4-5", [(1, 2), (4, 5)]),
    ("bytes=5-4", None),
    ("bytes=a-b", None),
    ("bytes=-", None),
    ("bytes=", None),
    ("items=0-4", None),
    ("0-4", None),
    ("bytes=1-2;x", None),
])
def test_parse_range(value: str, specs: list[tuple[int | None, int | None]] | None) -> None:
    assert parse_range(value) == specs


def test_resolve_clamps_and_drops_the_unsatisfiable() -> None:
    assert resolve([(0, 4)], 10) == [ByteRange(0, 4)]
    assert resolve([(8, 20)], 10) == [ByteRange(8, 9)]
    assert resolve([(None, 3)], 10) == [ByteRange(7, 9)]
    assert resolve([(None, 30)], 10) == [ByteRange(0, 9)]
    assert resolve([(10, None), (None, 0)], 10) == []
    assert resolve([(0, 0)], 0) == []


def plan(value: str, *extra: tuple[str, str], status: int = 200, length: int = 10,
         method: str = "GET", stored: list[tuple[str, str]] | None = None) -> RangeKind:
    return range_plan(method, [("Range", value), *extra], status,
                      STORED if stored is None else stored, length).kind


def test_plans() -> None:
    assert plan("bytes=0-4") is RangeKind.PARTIAL
    assert plan("bytes=0-1,5-6") is RangeKind.PARTIAL
    assert plan("bytes=20-") is RangeKind.UNSATISFIABLE
    assert plan("bytes=nonsense") is RangeKind.FULL  # ignored, 14.2
    assert plan("bytes=0-4", method="HEAD") is RangeKind.FULL  # Range is for GET only
    assert plan("bytes=0-4", status=404) is RangeKind.FULL
    assert plan("bytes=0-5,3-8") is RangeKind.FULL  # overlapping: the whole
    many = ",".join(f"{i}-{i}" for i in range(MAX_RANGES + 1))
    assert plan("bytes=" + many, length=100) is RangeKind.FULL
    few = ",".join(f"{i}-{i}" for i in range(0, 2 * MAX_RANGES, 2))
    assert plan("bytes=" + few, length=100) is RangeKind.PARTIAL


def test_if_range() -> None:
    assert plan("bytes=0-4", ("If-Range", '"v1"')) is RangeKind.PARTIAL
    assert plan("bytes=0-4", ("If-Range", '"v2"')) is RangeKind.FULL
    assert plan("bytes=0-4", ("If-Range", 'W/"v1"')) is RangeKind.FULL  # weak never matches
    weak = [("ETag", 'W/"v1"'), *STORED[1:]]
    assert plan("bytes=0-4", ("If-Range", '"v1"'), stored=weak) is RangeKind.FULL
    assert plan("bytes=0-4", ("If-Range", STORED[1][1])) is RangeKind.PARTIAL
    assert plan("bytes=0-4", ("If-Range", "Tue, 01 Dec 2026 10:00:01 GMT")) is RangeKind.FULL
    # A Last-Modified less than a second before Date is weak: a date never matches it.
    close = [("Last-Modified", STORED[2][1]), ("Date", STORED[2][1])]
    assert plan("bytes=0-4", ("If-Range", STORED[2][1]), stored=close) is RangeKind.FULL
