"""Which pages of a mapping this process really holds, read from the kernel (Linux /proc), for
the tests that check the memory tier's bound (a whole process's RSS: support.load.rss_kib)."""

from __future__ import annotations

import ctypes
import mmap


def mapped_resident(mapping: mmap.mmap) -> int:
    """Bytes of `mapping` present in this process's memory: the kernel's page table, read in
    /proc/self/pagemap (bit 63 of each page's entry)."""
    start = ctypes.addressof(ctypes.c_char.from_buffer(mapping))
    pages = len(mapping) // mmap.PAGESIZE
    with open("/proc/self/pagemap", "rb") as pagemap:
        pagemap.seek(start // mmap.PAGESIZE * 8)
        table = pagemap.read(pages * 8)
    present = sum(int.from_bytes(table[i:i + 8], "little") >> 63 for i in range(0, len(table), 8))
    return present * mmap.PAGESIZE

