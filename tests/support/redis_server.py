"""A real redis-server for the tests: started on a free port in a temp folder, killed, restarted."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from support.origin import free_port

# A cache's settings: no persistence, bounded memory that evicts the least recently used.
STORE_ARGS = ("--save", "", "--appendonly", "no", "--maxmemory", "64mb",
              "--maxmemory-policy", "allkeys-lru")


class RedisServer:
    """`args` replace STORE_ARGS (a cluster node's, a sentinel's); `config` is a file the server
    reads first (a sentinel's, which it also rewrites)."""

    def __init__(self, folder: Path, port: int | None = None, args: Sequence[str] = STORE_ARGS,
                 config: Path | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.args = list(args)
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> RedisServer:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is not installed (scripts/test installs it)"
        self.folder.mkdir(parents=True, exist_ok=True)
        config = [str(self.config)] if self.config is not None else []
        self.proc = subprocess.Popen(
            [binary, *config, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.folder), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        """SIGKILL: the outage a crash gives, not a clean shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        self.kill()
