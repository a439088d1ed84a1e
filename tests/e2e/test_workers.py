"""`--workers N`: N processes on one port (SO_REUSEPORT) sharing one store."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from support.client import fetch
from support.origin import Origin
from support.proxy import Proxy, cli
from support.sockets import listening_sockets


def test_two_workers_share_port_and_store(origin: Origin, tmp_path: Path) -> None:
    origin.route("/w", 200, [("Cache-Control", "max-age=60")], b"shared")
    with Proxy(origin.url, tmp_path / "cache", "--workers", "2") as proxy:
        deadline = time.monotonic() + 20
        while listening_sockets(proxy.port) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert listening_sockets(proxy.port) == 2
        assert "2 workers" in proxy.output
        answers = [fetch(proxy.url + "/w") for _ in range(40)]  # a new connection each
    assert all(a.status == 200 and a.body == b"shared" for a in answers)
    assert [a.x_cache for a in answers].count("MISS") == 1
    assert origin.count("/w") == 1
    assert proxy.proc is not None and proxy.proc.returncode is not None


def test_workers_end_when_their_supervisor_is_killed(origin: Origin, tmp_path: Path) -> None:
    with Proxy(origin.url, tmp_path / "cache", "--workers", "2") as proxy:
        deadline = time.monotonic() + 20
        while listening_sockets(proxy.port) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert listening_sockets(proxy.port) == 2
        assert proxy.proc is not None
        proxy.proc.send_signal(signal.SIGKILL)  # nothing passed on: the workers notice alone
        deadline = time.monotonic() + 10
        while listening_sockets(proxy.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert listening_sockets(proxy.port) == 0


def test_workers_option_is_validated(tmp_path: Path) -> None:
    result = cli("--workers", "0", "--origin", "http://x", "--cache-dir", str(tmp_path))
    assert result.returncode == 2 and "invalid worker count 0" in result.stderr
    result = cli("--workers", "2", "--web", "--origin", "http://x", "--cache-dir", str(tmp_path))
    assert result.returncode == 2 and "--workers cannot be combined with --web" in result.stderr
