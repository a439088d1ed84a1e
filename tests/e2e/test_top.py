"""`caching-proxy --top` against a real proxy (--admin-port) and a real origin: driven in a pty
(its rich screen, figures that change as requests arrive, Ctrl-C typed into the terminal: exit
0, no traceback), plain blocks when piped, `--once`, a bearer token, and the one-line errors
(no proxy there: 1; no --admin-port, --once alone: 2)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
from typing import Any

from support.client import fetch
from support.origin import Origin, free_port
from support.polling import wait_until
from support.proxy import ROOT, _env, cli

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]")


def admin_proxy(make_proxy: Any, *extra: str) -> tuple[Any, str]:
    port = free_port()
    return make_proxy("--admin-port", str(port), *extra), str(port)


def figure(screen: str, name: str) -> str | None:
    """The last value shown for `name` (a rich table cell or a plain line)."""
    found = re.findall(re.escape(name) + r"[\s│┃|]+([0-9.]+%?|-)", screen)
    return found[-1] if found else None


class Terminal:
    """A child process on a pty of 120x40, its output collected by a thread. The pty is its
    controlling terminal (util-linux `setsid --ctty`, which execs in place: no fork of this
    multi-threaded process but subprocess' own), so a typed Ctrl-C is a SIGINT to it."""

    def __init__(self, *args: str) -> None:
        fd, child_side = pty.openpty()
        fcntl.ioctl(child_side, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.proc = subprocess.Popen(
            ["setsid", "--ctty", sys.executable, "-m", "caching_proxy", *args],
            stdin=child_side, stdout=child_side, stderr=child_side, cwd=ROOT, env=_env())
        os.close(child_side)
        self.fd = fd
        self.raw = b""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:  # EIO: the child closed its side
                    return
                if not chunk:
                    return
                self.raw += chunk

    @property
    def screen(self) -> str:
        return ANSI.sub("", self.raw.decode("utf-8", "replace"))

    @property
    def code(self) -> int | None:
        return self.proc.poll()

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def close(self) -> None:
        if not self.exited():
            self.proc.kill()
            self.proc.wait()
        os.close(self.fd)


def test_top_in_a_pty_shows_live_figures_and_ctrl_c_ends_it(origin: Origin,
                                                              make_proxy: Any) -> None:
    proxy, port = admin_proxy(make_proxy)
    origin.route("/top", 200, [("Cache-Control", "max-age=600")], b"figures")
    term = Terminal("--top", "--admin-port", port)
    try:
        wait_until(lambda: figure(term.screen, "hit/s") is not None, timeout=20,
                   what="--top's first screen")
        assert "caching-proxy --top" in term.screen and "\x1b[" in term.raw.decode("utf-8",
                                                                                    "replace")
        assert figure(term.screen, "store entries") == "0"
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                fetch(proxy.url + "/top")

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        try:
            wait_until(lambda: float(figure(term.screen, "hit/s") or 0) > 0, timeout=20,
                       what="hits per second above 0 on --top's screen")
            wait_until(lambda: figure(term.screen, "store entries") == "1", timeout=10,
                       what="one stored entry on --top's screen")
        finally:
            stop.set()
            loader.join()
        assert figure(term.screen, "hit ratio 1 min") not in (None, "-")
        assert origin.count("/top") == 1  # every other request was a hit
        os.write(term.fd, b"\x03")  # Ctrl-C, typed into the terminal: SIGINT
        wait_until(term.exited, timeout=10, what="--top ending on Ctrl-C")
        assert term.code == 0
        assert "Traceback" not in term.screen and "KeyboardInterrupt" not in term.screen
    finally:
        term.close()


def test_top_piped_prints_plain_blocks_and_once_prints_one(origin: Origin,
                                                            make_proxy: Any) -> None:
    proxy, port = admin_proxy(make_proxy)
    origin.route("/p", 200, [("Cache-Control", "max-age=600")], b"p")
    fetch(proxy.url + "/p")
    done = cli("--top", "--once", "--admin-port", port)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and done.stderr == ""
    assert done.stdout.count("hit ratio 60 min") == 1
    assert figure(done.stdout, "store entries") == "1"
    assert re.search(r"^memory tier\s+off$", done.stdout, re.M)

    piped = subprocess.Popen([sys.executable, "-m", "caching_proxy", "--top", "--admin-port", port],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                             env=_env())
    try:
        assert piped.stdout is not None
        blocks = 0
        for line in piped.stdout:
            blocks += line.startswith("uptime")
            if blocks == 2:
                break
        piped.send_signal(signal.SIGINT)
        assert piped.wait(10) == 0
        assert piped.stderr is not None and "Traceback" not in piped.stderr.read()
    finally:
        if piped.poll() is None:
            piped.kill()
            piped.wait()


def test_top_with_the_bearer_token(origin: Origin, make_proxy: Any) -> None:
    _, port = admin_proxy(make_proxy, "--purge-secret", "s3cret")
    done = cli("--top", "--once", "--admin-port", port, "--purge-secret", "s3cret")
    assert done.returncode == 0 and "hit ratio 1 min" in done.stdout, done.stderr
    refused = cli("--top", "--once", "--admin-port", port, "--purge-secret", "wrong")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"caching-proxy: error: the admin API at http://127.0.0.1:{port} answered 403: wrong secret"]


def test_top_one_line_errors() -> None:
    port = str(free_port())
    nobody = cli("--top", "--admin-port", port)
    assert nobody.returncode == 1 and nobody.stdout == ""
    assert len(nobody.stderr.splitlines()) == 1
    assert nobody.stderr.startswith(f"caching-proxy: error: no admin API answers at "
                                    f"http://127.0.0.1:{port}: ")
    no_port = cli("--top")
    assert no_port.returncode == 2 and len(no_port.stderr.splitlines()) == 1
    assert "--top needs --admin-port" in no_port.stderr
    alone = cli("--once")
    assert alone.returncode == 2
    assert alone.stderr == "caching-proxy: error: --once goes with --top\n"
