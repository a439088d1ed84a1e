"""`--slice SIZE`: a large object read piecewise costs the origin only the slices the reads touch,
and a second pass nothing; the bytes are always the object's; an object that changes, or an
origin without ranges, falls back to the usual path. A real origin that serves byte ranges and
counts the bytes it sends."""

from __future__ import annotations

import os
import random
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.client import fetch
from support.origin import Origin, Reply, Seen
from support.proxy import Proxy

MIB = 1 << 20
RANGE = re.compile(r"bytes=(\d+)-(\d+)")


class RangeOrigin:
    """Serves `body` at /big with byte ranges (206), a strong ETag and max-age; counts what it
    sends."""

    def __init__(self, body: bytes, ranges: bool = True) -> None:
        self.body = body
        self.etag = '"v1"'
        self.ranges = ranges
        self.sent = 0
        self.lock = threading.Lock()
        self.origin = Origin()
        self.origin.route("/big", handler=self._answer)
        self.url = self.origin.url

    def _answer(self, seen: Seen) -> Reply:
        fields = [("Cache-Control", "max-age=600"), ("ETag", self.etag),
                  ("Content-Type", "application/octet-stream")]
        wanted = RANGE.fullmatch(seen.header("Range") or "")
        if wanted is None or not self.ranges:
            part, status = self.body, 200
        elif int(wanted.group(1)) >= len(self.body):
            fields.append(("Content-Range", f"bytes */{len(self.body)}"))
            return Reply(416, fields, b"")
        else:
            first, last = int(wanted.group(1)), min(int(wanted.group(2)), len(self.body) - 1)
            part, status = self.body[first:last + 1], 206
            fields.append(("Content-Range", f"bytes {first}-{last}/{len(self.body)}"))
        with self.lock:
            self.sent += len(part)
        return Reply(status, fields, part)


@pytest.fixture(scope="module")
def big() -> bytes:
    return os.urandom(100 * MIB)


@pytest.fixture
def ranged(big: bytes) -> Iterator[RangeOrigin]:
    server = RangeOrigin(big)
    yield server
    server.origin.stop()


def read(proxy: Proxy, first: int, length: int) -> tuple[int, bytes, str]:
    answer = fetch(proxy.url + "/big", headers={"Range": f"bytes={first}-{first + length - 1}"},
                   timeout=30)
    return answer.status, answer.body, answer.header("X-Cache") or ""


def test_random_reads_cost_the_origin_only_the_slices_they_touch(
        ranged: RangeOrigin, big: bytes, tmp_path: Path) -> None:
    rng = random.Random(7)
    offsets = [rng.randrange(0, len(big) - 64 * 1024) for _ in range(40)]
    with Proxy(ranged.url, tmp_path / "cache", "--slice", "1m", "--quiet") as proxy:
        for first in offsets:
            status, body, _ = read(proxy, first, 64 * 1024)
            assert status == 206 and body == big[first:first + 64 * 1024]
        touched = {i for first in offsets for i in (first // MIB, (first + 64 * 1024 - 1) // MIB)}
        asked = len(touched) * MIB
        assert ranged.sent <= asked < 2 * 40 * 64 * 1024 + 2 * MIB * len(touched)
        assert ranged.sent == asked  # each touched slice once, nothing more
        sent = ranged.sent
        # A second pass over the same reads: every one from the stored slices.
        for first in offsets:
            status, body, x_cache = read(proxy, first, 64 * 1024)
            assert (status, x_cache) == (206, "HIT") and body == big[first:first + 64 * 1024]
        assert ranged.sent == sent
        # A read across a slice boundary, and an open-ended one near the end.
        status, body, _ = read(proxy, 3 * MIB - 10, 20)
        assert status == 206 and body == big[3 * MIB - 10:3 * MIB + 10]
        tail = fetch(proxy.url + "/big", headers={"Range": f"bytes={len(big) - 5}-"})
        assert tail.status == 206 and tail.body == big[-5:]
        assert tail.header("Content-Range") == f"bytes {len(big) - 5}-{len(big) - 1}/{len(big)}"
        # Past the end: 416 with the length.
        past = fetch(proxy.url + "/big", headers={"Range": f"bytes={len(big)}-"})
        assert past.status == 416 and past.header("Content-Range") == f"bytes */{len(big)}"


def test_a_changed_object_is_never_mixed_and_a_purge_removes_the_slices(
        ranged: RangeOrigin, big: bytes, tmp_path: Path) -> None:
    with Proxy(ranged.url, tmp_path / "cache", "--slice", "1m", "--quiet") as proxy:
        assert read(proxy, 0, 10)[1] == big[:10]  # slice 0 of v1 stored
        ranged.body, ranged.etag = bytes(reversed(big)), '"v2"'
        # Slices 0 (v1, stored) and 1 (v2, fetched) disagree: both are fetched anew, of v2.
        status, body, _ = read(proxy, MIB - 5, 10)
        assert status == 206 and body == ranged.body[MIB - 5:MIB + 5]
        assert fetch(proxy.url + "/big", method="PURGE").status == 200
        sent = ranged.sent
        assert read(proxy, 0, 10)[2] == "MISS" and ranged.sent == sent + MIB


def test_an_origin_without_ranges_gets_the_usual_path(big: bytes, tmp_path: Path) -> None:
    whole = RangeOrigin(big[:3 * MIB], ranges=False)
    try:
        with Proxy(whole.url, tmp_path / "cache", "--slice", "1m", "--quiet") as proxy:
            status, body, _ = read(proxy, 10, 10)
            assert status == 206 and body == big[10:20]
            # The whole object is now stored: later ranges come from it, not the origin.
            sent = whole.sent
            assert read(proxy, MIB, 5) == (206, big[MIB:MIB + 5], "HIT")
            assert whole.sent == sent
    finally:
        whole.origin.stop()
