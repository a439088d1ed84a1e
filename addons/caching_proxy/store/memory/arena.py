"""Where the memory tier keeps its copies' bytes: one anonymous private mapping cut into
segments, written in order and emptied oldest first, so that the memory the copies take stays
within the tier's size whatever mix of sizes comes and goes.

Why not one bytes object per copy (as before): copies freed and made at random leave holes in
malloc's heap that other allocations fill, and a 64 MiB tier of 1 KB copies under reads spread
over a larger store grew the process by 1.5x its size (README, "The memory tier"; RAMCloud's
"Log-structured Memory for DRAM-based Storage" measured the same of allocators). Here a copy's
bytes go at the end of the open segment; when the tier is full, the oldest segment is emptied
whole (its copies dropped) and written again, so no hole is left behind. Segments the tier gives
up (to its index, or on clear) go back to the kernel (MADV_DONTNEED).

A copy's key is written into the segment too, before its bytes, so that emptying a segment
finds its copies by reading it: no list of keys per segment keeps key objects alive on the heap
after their copies are gone (a miss that leaves a "nothing stored" copy and drops it at once
leaves nothing behind). What is counted against `max_bytes`: every segment in use, whole; and
each live copy's key object and record (one packed bytes object) with its dict slot.
Pages of a segment are resident only once written.

Order out: first in, first out by segment, with a second chance: a copy read while its segment
is among the oldest quarter is written again at the end, so a hot copy outlives its segment.

Not thread-safe: MemoryTier holds its lock around every call. The mapping is private, so a
forked worker writes its own pages (copy on write), never its parent's.
"""

from __future__ import annotations

import mmap
import struct
import sys
from collections import deque
from typing import Final

SEGMENTS = 16
# Reserve no swap for the mapping (Linux): pages count once written, and a tier larger than the
# machine's memory plus swap (which it may never fill) is not refused at start.
_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000 if sys.platform.startswith("linux") else 0)
# A live copy's record and its dict slot, besides its key object: measured with tracemalloc, 77
# bytes for the record and 42 to 80 for the dict's table (up to 120 just after it grows).
# tests/store/test_memory_tier.py checks that a full tier holds no more than its bound.
RECORD_COST = 200
# Keys are any str (a URL decoded with surrogateescape too): written so that they read back.
_KEY_CODING = ("utf-8", "surrogatepass")

# A copy in its segment: the length of its key and of its bytes (-1: "nothing stored"), then
# the key (UTF-8), then the bytes.
_HEAD = struct.Struct("<Ii")
# A copy's record, packed: its segment, length, the offset of its bytes, the two ints of the
# change counters' token it was read under, the time it expires, and what it counts (its key
# object and RECORD_COST).
_PACKED = struct.Struct("<B3xiqQQdI")
Record = tuple[int, int, int, int, int, float, int]  # unpacked
SEGMENT: Final = 0
LENGTH: Final = 1
OFFSET: Final = 2
TOKEN: Final = slice(3, 5)
UNTIL: Final = 5
COST: Final = 6


class CopyArena:
    """Copies of at most `max_item` bytes each, under keys, within `max_bytes` (see the module).
    """

    def __init__(self, max_bytes: int) -> None:
        page = mmap.PAGESIZE
        self.max_bytes = max_bytes
        self.segment_size = max(page, max_bytes // SEGMENTS // page * page)
        self.max_item = self.segment_size
        count = max(1, max_bytes // self.segment_size)
        try:
            self._map = mmap.mmap(-1, count * self.segment_size,
                                  flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _NORESERVE)
        except OSError as e:
            raise OSError(e.errno, f"cannot map a memory tier of {max_bytes:,} bytes "
                                   f"(--memory-size): {e.strerror}") from None
        self._view = memoryview(self._map)
        self._index: dict[str, bytes] = {}  # packed records
        self._filled = [0] * count  # bytes written into each segment
        self._opened = [0] * count  # when each segment was last opened (see _open)
        self._order: deque[int] = deque()  # segments in use, oldest first; the open one last
        self._free = list(range(count - 1, -1, -1))
        self._serial = 0  # segments opened so far
        self._held = 0  # what is counted against max_bytes (see the module)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def keys(self) -> list[str]:
        return list(self._index)

    @property
    def held(self) -> int:
        """Bytes counted against max_bytes: at least what the copies take in this process."""
        return self._held

    def find(self, key: str) -> Record | None:
        packed = self._index.get(key)
        return None if packed is None else _PACKED.unpack(packed)  # type: ignore[return-value]

    def read(self, key: str, record: Record) -> memoryview:
        """The bytes of `key`'s copy, found as `record` (of a length >= 0), valid until the next
        call. A copy in one of the oldest quarter of segments is first written again at the end
        (its second chance)."""
        offset, length = record[OFFSET], record[LENGTH]
        in_use = len(self._order)
        if in_use > 1 and self._opened[record[SEGMENT]] <= self._serial - in_use + max(
                1, in_use // 4):
            data = bytes(self._view[offset:offset + length])  # its segment may be reused below
            if not self.put(key, data, record[TOKEN], record[UNTIL]):
                return memoryview(data)
            offset = _PACKED.unpack(self._index[key])[OFFSET]
        return self._view[offset:offset + length]

    def put(self, key: str, data: bytes | None, token: object, until: float) -> bool:
        """Keep `data` (None: "nothing stored") under `key`, read under `token`, in place of any
        copy it had; False when it is not kept: over max_item with its key, a tier too small
        for one segment, or a token that is not two ints (one that never equals another)."""
        self.drop(key)
        if type(token) is not tuple or len(token) != 2:
            return False
        name = key.encode(*_KEY_CODING)
        length = -1 if data is None else len(data)
        size = _HEAD.size + len(name) + max(length, 0)
        cost = RECORD_COST + sys.getsizeof(key)
        if size > self.segment_size:
            return False
        if not self._order or self._filled[self._order[-1]] + size > self.segment_size:
            if not self._open(cost):
                return False
        else:
            self._make_room(cost)
            if not self._order and not self._open(cost):  # the open segment had to go too
                return False
        segment = self._order[-1]
        start = segment * self.segment_size + self._filled[segment]
        _HEAD.pack_into(self._view, start, len(name), length)
        offset = start + _HEAD.size + len(name)
        self._view[start + _HEAD.size:offset] = name
        if data is not None:
            self._view[offset:offset + length] = data
        self._filled[segment] += size
        self._index[key] = _PACKED.pack(segment, length, offset, *token, until, cost)
        self._held += cost
        return True

    def drop(self, key: str) -> None:
        packed = self._index.pop(key, None)
        if packed is not None:
            self._held -= _PACKED.unpack(packed)[COST]

    def clear(self) -> None:
        """Drop every copy and give every segment back to the kernel."""
        while self._order:
            self._release(self._empty_oldest())

    # -- segments ------------------------------------------------------------------------------

    def _open(self, cost: int) -> bool:
        """Make a fresh segment the open one, with room for one more copy's `cost` (emptying
        the oldest segments as needed); False when even one would be over max_bytes."""
        need = self.segment_size + cost
        segment = None
        while self._order and (self._held + need > self.max_bytes or not self._free):
            segment = self._empty_oldest()
            if self._held + need <= self.max_bytes:
                break  # written again at once: no need to give its pages back
            self._release(segment)
            segment = None
        if segment is None:
            if self._held + need > self.max_bytes or not self._free:
                return False
            segment = self._free.pop()
        self._order.append(segment)
        self._serial += 1
        self._opened[segment] = self._serial
        self._held += self.segment_size
        return True

    def _make_room(self, cost: int) -> None:
        """Empty the oldest segments (the open one last) until one more copy's cost fits."""
        while self._order and self._held + cost > self.max_bytes:
            self._release(self._empty_oldest())

    def _empty_oldest(self) -> int:
        """Drop the copies of the oldest segment in use, read from the segment itself, and
        take it out of use; its number."""
        segment = self._order.popleft()
        view, index, head = self._view, self._index, _HEAD.size
        at = segment * self.segment_size
        end = at + self._filled[segment]
        while at < end:
            named, length = _HEAD.unpack_from(view, at)
            key = str(view[at + head:at + head + named], *_KEY_CODING)
            packed = index.get(key)
            if packed is not None and packed[0] == segment:  # its first byte: see _PACKED
                del index[key]
                self._held -= _PACKED.unpack(packed)[COST]
            at += head + named + max(length, 0)
        self._filled[segment] = 0
        self._held -= self.segment_size
        return segment

    def _release(self, segment: int) -> None:
        """Give an emptied segment's pages back to the kernel; it is free again."""
        start = segment * self.segment_size
        self._map.madvise(mmap.MADV_DONTNEED, start, self.segment_size)
        self._free.append(segment)
