"""`--workers N`: N proxy processes answering on one port, sharing one store.

The kernel spreads connections over the processes with SO_REUSEPORT, and diskcache is safe for
several processes on one folder, so each worker is the ordinary single-process proxy; the parent
only starts them, forwards SIGINT/SIGTERM (a drain, see drain.py), SIGHUP (a reload) and SIGUSR1
(which reopens the access log), and stops all when one exits.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType
from typing import Any

WORKER_ENV = "CACHING_PROXY_WORKER"


def worker_number() -> tuple[int, int] | None:
    """(this worker, of how many) inside a worker process, else None."""
    value = os.environ.get(WORKER_ENV)
    if not value:
        return None
    index, _, count = value.partition("/")
    return int(index), int(count)


def share_listening_port() -> None:
    """Bind the proxy's listening socket with SO_REUSEPORT.

    mitmproxy opens its listener with `asyncio.start_server` and has no option for the flag, so
    the function is wrapped for this process only.
    """
    original = asyncio.start_server

    async def start_server(*args: Any, **kwargs: Any) -> asyncio.Server:
        kwargs.setdefault("reuse_port", True)
        return await original(*args, **kwargs)

    asyncio.start_server = start_server  # type: ignore[assignment]


def end_with_supervisor(interval: float = 1.0) -> None:
    """In a worker: end (SIGTERM to itself, the usual clean stop) once the supervisor is gone,
    killed by a signal it cannot pass on (SIGKILL, the OOM killer), rather than keep the port
    unsupervised. Seen within `interval` seconds."""
    supervisor = os.getppid()

    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="caching-proxy supervisor watch", daemon=True).start()


def supervise(argv: list[str], count: int) -> int:
    """Run `count` workers with the same arguments; return the exit code of the first to end.

    SIGTERM and SIGINT are passed on each time they come (a first one drains each worker, a
    SIGINT after it stops it at once); SIGHUP (reload) and SIGUSR1 (reopen the access log) are
    passed on, and each worker reads its config file itself."""
    held = {getattr(signal, name) for name in ("SIGUSR1", "SIGHUP") if hasattr(signal, name)}
    # Blocked while the children start (they inherit the mask, see __main__) and until the
    # handler below passes it on: a reopen or reload sent now is held, not lost, and kills
    # nobody.
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    children = [
        subprocess.Popen(
            [sys.executable, "-O", "-m", "caching_proxy", *argv],
            env={**os.environ, WORKER_ENV: f"{i}/{count}"},
            # Their own process group: a terminal's Ctrl-C reaches the supervisor alone, which
            # passes it on once (twice, a SIGINT would stop a draining worker at once).
            process_group=0,
        )
        for i in range(1, count + 1)
    ]
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = stopping or signum in (signal.SIGINT, signal.SIGTERM)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    for signum in held:  # not a stop: passed on
        signal.signal(signum, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
    pid, status = os.wait()
    code = os.waitstatus_to_exitcode(status)
    if not stopping:  # one worker ended by itself: the others stop too (draining, once)
        forward(signal.SIGTERM, None)
    for child in children:
        if child.pid != pid:
            child.wait()
    return code if code >= 0 else 128 - code
