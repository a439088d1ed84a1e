"""A real caching-proxy process started through its CLI on a free port, with its own cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from support.origin import free_port

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a one-shot `caching-proxy` command and wait for it."""
    return subprocess.run(
        [sys.executable, "-m", "caching_proxy", *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=_env(),
    )


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "addons") + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Proxy:
    def __init__(
        self, origin_url: str, cache_dir: Path, *extra: str, port: int | None = None,
        command: list[str] | None = None, ready_text: str = "caching-proxy: listening on",
    ) -> None:
        self.origin_url = origin_url
        self.cache_dir = cache_dir
        self.extra = list(extra)
        self.port = port or free_port()
        self.command = command
        self.ready_text = ready_text
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> Proxy:
        cmd = self.command or [
            # -O as the CLI would re-exec itself with (cli.py), without the second start.
            sys.executable, "-O", "-m", "caching_proxy", "--port", str(self.port),
            "--origin", self.origin_url, "--cache-dir", str(self.cache_dir), *self.extra,
        ]
        self.lines = []
        ready = threading.Event()
        self.proc = subprocess.Popen(
            # errors="replace": the log quotes what clients send, which need not be UTF-8, and a
            # reader thread that died on it would leave the proxy blocked on a full pipe.
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
            cwd=ROOT, env=_env(),
        )
        proc = self.proc

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self.lines.append(line.rstrip("\n"))
                if self.ready_text in line:
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("proxy did not start:\n" + self.output)
        if proc.poll() is not None or not any(self.ready_text in x for x in self.lines):
            time.sleep(0.2)
            raise RuntimeError(f"proxy exited with {proc.poll()}:\n" + self.output)
        return self

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def logged(self, text: str, timeout: float = 2.0) -> bool:
        """Whether a line containing `text` is logged within `timeout` seconds: a line can reach
        `lines` after the response it was logged for (mitmproxy's log, then this pipe)."""
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def stop(self) -> None:
        """SIGTERM (the drain); a request still in flight after 2 s is a test's own business,
        not a reason to wait out --drain-timeout: SIGINT then stops at once."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(8)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
