"""CopyArena, the memory tier's copies in segments of one mapping: what is found reads back
exactly what was put, what it counts never passes its bound, a hot copy outlives its segment,
and the pages it gives up or writes after a fork are its own (the kernel's page table)."""

from __future__ import annotations

import mmap
import os
import random

from caching_proxy.store.memory.arena import LENGTH, OFFSET, RECORD_COST, TOKEN, UNTIL, CopyArena
from support.resident import mapped_resident


def resident(arena: CopyArena) -> int:
    return mapped_resident(arena._map)


def read_back(arena: CopyArena, key: str) -> bytes | None:
    record = arena.find(key)
    if record is None or record[LENGTH] < 0:
        return None
    return bytes(arena.read(key, record))


def test_what_is_found_is_what_was_put_and_the_count_stays_within_its_bound() -> None:
    arena = CopyArena(1 << 20)
    rng = random.Random(7)
    last: dict[str, tuple[bytes | None, object]] = {}
    for step in range(30_000):
        key = f"http://o:80/{rng.randrange(3_000)}" + "x" * rng.randrange(200)
        roll = rng.random()
        if roll < 0.5:
            data = None if roll < 0.05 else os.urandom(rng.choice((10, 300, 3_000, 40_000)))
            assert arena.put(key, data, (step, 1), float(step))
            last[key] = (data, (step, 1))
        elif roll < 0.6:
            arena.drop(key)
            last.pop(key, None)
        else:
            record = arena.find(key)
            if record is not None:
                data, token = last[key]
                assert (record[TOKEN], read_back(arena, key)) == (token, data)
        assert arena.held <= arena.max_bytes
    found = [key for key in last if key in arena]
    assert len(found) > 50
    for key in found:
        if key in arena:  # not pushed out by another's second chance in this loop
            assert read_back(arena, key) == last[key][0]
    assert resident(arena) <= arena.held


def test_a_copy_read_again_outlives_its_segment_and_one_never_read_does_not() -> None:
    arena = CopyArena(1 << 20)
    arena.put("hot", b"h" * 1_000, (1, 1), 9.0)
    arena.put("cold", b"c" * 1_000, (1, 1), 9.0)
    for i in range(2_000):  # about three times what the arena holds
        arena.put(f"filler{i}", os.urandom(1_500), (1, 1), 9.0)
        record = arena.find("hot")
        assert record is not None, f"hot dropped after {i} fillers"
        assert bytes(arena.read("hot", record)) == b"h" * 1_000
        assert record[UNTIL] == 9.0
    assert arena.find("cold") is None
    assert arena.find("filler0") is None and arena.find("filler1999") is not None


def test_copies_over_a_segment_with_their_key_and_tiers_under_a_page_are_refused() -> None:
    arena = CopyArena(1 << 20)
    head = 8  # the lengths of key and bytes, before them in the segment
    assert not arena.put("big", bytes(arena.max_item - head - 2), (1, 1), 9.0)
    assert arena.put("fits", bytes(arena.max_item - head - 4), (1, 1), 9.0)
    assert read_back(arena, "fits") == bytes(arena.max_item - head - 4)
    assert arena.find("big") is None and arena.held <= arena.max_bytes
    tiny = CopyArena(1_000)
    assert not tiny.put("k", b"x", (1, 1), 9.0) and not tiny.put("k", None, (1, 1), 9.0)
    assert tiny.held == 0


def test_keys_of_nothing_stored_are_counted_and_pushed_out_too() -> None:
    arena = CopyArena(256 << 10)
    for i in range(50_000):
        assert arena.put(f"http://o:80/absent/{i}", None, (1, 1), 9.0)
        assert arena.held <= arena.max_bytes
    assert 100 < len(arena) < 256 * 1024 // RECORD_COST
    assert arena.find("http://o:80/absent/49999") is not None


def test_clear_gives_the_pages_back() -> None:
    arena = CopyArena(4 << 20)
    for i in range(3_000):
        arena.put(f"k{i}", os.urandom(1_000), (1, 1), 9.0)
    assert resident(arena) > 2 << 20
    arena.clear()
    assert (len(arena), arena.held, resident(arena)) == (0, 0, 0)
    assert arena.put("again", b"a", (1, 1), 9.0) and read_back(arena, "again") == b"a"


def test_a_forked_child_writes_its_own_pages() -> None:
    arena = CopyArena(1 << 20)
    arena.put("k", b"parent", (1, 1), 9.0)
    offset = arena.find("k")[OFFSET]  # type: ignore[index]
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's own exit code carries its result
        arena._map.seek(0)
        arena._view[offset:offset + 6] = b"childs"
        arena.put("k", b"child!", (2, 2), 9.0)
        os._exit(0 if read_back(arena, "k") == b"child!" else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert read_back(arena, "k") == b"parent"
    assert mmap.PAGESIZE <= resident(arena) <= arena.held


def test_a_tier_larger_than_the_machine_opens_and_keeps_copies() -> None:
    """Its pages count once written: a size over memory plus swap is no reason to refuse."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    arena = CopyArena(4 * physical)
    assert arena.put("k", b"v" * 1_000, (1, 1), 9.0) and read_back(arena, "k") == b"v" * 1_000
    assert len(arena) == 1 and arena.held < arena.segment_size + 4096


def test_keys_of_any_text_are_found_again_when_their_segment_is_emptied() -> None:
    """Emptying a segment reads its keys back from it: non-ASCII keys and ones holding lone
    surrogates (bytes decoded with surrogateescape) must come back equal, or their records
    would stay counted for ever and the tier would refuse new copies."""
    arena = CopyArena(256 << 10)
    for i in range(20_000):
        key = f"http://o:80/caf\u00e9/\U0001f600/{i}/" + b"\xff\xfe".decode("utf-8", "surrogateescape")
        assert arena.put(key, os.urandom(100), (1, 1), 9.0), f"refused after {i} copies"
        assert arena.held <= arena.max_bytes
    assert len(arena) < 256 * 1024 // (RECORD_COST + 100)
