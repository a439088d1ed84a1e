"""Bodies that carry their own checksum, so a client can verify every byte it is served."""

from __future__ import annotations

import hashlib

from support.origin import Handler, Reply, Seen


def checked_body(path: str, version: int = 0, size: int = 200) -> bytes:
    """`<sha256 hex> <payload>`; the payload names the path and version and is `size` long."""
    seed = f"{path} v{version} ".encode()
    payload = (seed * (size // len(seed) + 1))[:size]
    return hashlib.sha256(payload).hexdigest().encode() + b" " + payload


def body_ok(body: bytes, path: str | None = None) -> bool:
    digest, _, payload = body.partition(b" ")
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        return False
    return path is None or payload.startswith(f"{path} v".encode())


def sized_handler(size: int, cache_control: str = "max-age=300") -> Handler:
    """Answers any path with a checked body of `size` bytes."""

    def handler(seen: Seen) -> Reply:
        return Reply(200, [("Cache-Control", cache_control)],
                     checked_body(seen.path.split("?")[0], 0, size))

    return handler
