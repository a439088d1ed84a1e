"""Starting, probing and stopping the servers under test, each in its own process group."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """One GET: (status, X-Cache header or '')."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("X-Cache", "")
    finally:
        conn.close()


class Server:
    """A server process started for the run; its output goes to LOGDIR/NAME.log."""

    def __init__(self, name: str, command: list[str], port: int, logdir: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name, self.command, self.port = name, command, port
        self.log = logdir / f"{name}.log"
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Server:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **(self.env or {})}, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}: "
                                   f"{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not listen on port {self.port} within {timeout:g}s")

    def log_tail(self, lines: int = 5) -> str:
        text = self.log.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])

    def memory(self) -> Memory:
        """Resident memory of the process and all its descendants (workers)."""
        assert self.process is not None
        total = Memory(0, 0, 0)
        for pid in process_tree(self.process.pid):
            total = total + memory(pid)
        return total

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name in field 2 may hold spaces; the parent pid follows its ')'.
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


@dataclass(frozen=True)
class Memory:
    """Resident KiB: all, anonymous (the heap), file-backed (e.g. SQLite's memory-mapped pages)."""

    rss: int
    anon: int
    file: int

    def __add__(self, other: Memory) -> Memory:
        return Memory(self.rss + other.rss, self.anon + other.anon, self.file + other.file)

    def __str__(self) -> str:
        return (f"{self.rss / 1024:.1f} MiB (anon {self.anon / 1024:.1f}, "
                f"file {self.file / 1024:.1f})")


def memory(pid: int) -> Memory:
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile"):
                fields[name] = int(value.split()[0])
    except OSError:
        pass
    return Memory(fields.get("VmRSS", 0), fields.get("RssAnon", 0), fields.get("RssFile", 0))
