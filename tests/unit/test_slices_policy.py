"""Which slices a Range touches and what a slice's 206 says (policy/slices.py)."""

from __future__ import annotations

import pytest

from caching_proxy.policy.slices import (
    Piece,
    fits,
    piece_of,
    slice_indexes,
    slice_range,
    sliced_spec,
    unsatisfied_length,
)

MIB = 1 << 20


@pytest.mark.parametrize(("value", "if_range", "spec"), [
    ("bytes=0-9", None, (0, 9)), ("bytes=5-", None, (5, None)),
    ("bytes=-5", None, None),  # a suffix: its start needs the length
    ("bytes=0-1,5-6", None, None), ("items=0-9", None, None), (None, None, None),
    ("bytes=0-9", '"v1"', None),
])
def test_what_is_sliced(value: str | None, if_range: str | None,
                        spec: tuple[int, int | None] | None) -> None:
    assert sliced_spec(value, if_range) == spec


def test_the_slices_a_range_touches() -> None:
    assert list(slice_indexes(0, 9, MIB, None)) == [0]
    assert list(slice_indexes(MIB - 1, MIB, MIB, None)) == [0, 1]
    assert list(slice_indexes(3 * MIB, None, MIB, None)) == [3]  # to learn the length
    assert list(slice_indexes(3 * MIB, None, MIB, 5 * MIB + 1)) == [3, 4, 5]
    assert list(slice_indexes(0, 10 * MIB, MIB, 2 * MIB)) == [0, 1]  # clamped to the end
    assert slice_range(2, MIB) == f"bytes={2 * MIB}-{3 * MIB - 1}"


def test_a_slice_answer_and_its_identity() -> None:
    fields = [("Content-Range", "bytes 0-9/100"), ("ETag", '"a"')]
    assert piece_of(206, fields) == Piece(0, 9, 100, ("etag", '"a"'))
    modified = [("Content-Range", "bytes 0-9/100"), ("ETag", 'W/"a"'),
                ("Last-Modified", "Tue, 01 Dec 2026 00:00:00 GMT")]
    assert piece_of(206, modified) == Piece(0, 9, 100, ("last-modified",
                                                        "Tue, 01 Dec 2026 00:00:00 GMT"))
    assert piece_of(206, [("Content-Range", "bytes 0-9/100"), ("ETag", 'W/"a"')]) is None
    assert piece_of(200, fields) is None
    assert piece_of(206, [("Content-Range", "bytes 9-0/100"), ("ETag", '"a"')]) is None
    assert piece_of(206, [("Content-Range", "bytes 0-100/100"), ("ETag", '"a"')]) is None
    assert fits(Piece(MIB, 2 * MIB - 1, 5 * MIB, ("etag", '"a"')), 1, MIB)
    assert fits(Piece(4 * MIB, 4 * MIB + 9, 4 * MIB + 10, ("etag", '"a"')), 4, MIB)  # the last
    assert not fits(Piece(0, 9, 5 * MIB, ("etag", '"a"')), 0, MIB)  # shorter than asked
    assert unsatisfied_length([("Content-Range", "bytes */1234")]) == 1234
    assert unsatisfied_length([("Content-Range", "bytes 0-1/2")]) is None
