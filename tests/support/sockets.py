"""What the kernel says of this machine's sockets, for tests of listeners."""

from __future__ import annotations

from pathlib import Path


def listening_sockets(port: int) -> int:
    """Sockets in LISTEN state on `port` (state 0A in /proc/net/tcp)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
            count += 1
    return count
