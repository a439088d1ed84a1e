"""An in-process mitmproxy in reverse mode (by default under the runner's lean master, with only
mitmproxy's own addons and those a test adds), on a free port of 127.0.0.1, for tests that drive
mitmproxy's internals through real sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from mitmproxy import master as mmaster
from mitmproxy import options

from caching_proxy.mitm import runner


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def lean_proxy(origin_url: str, scenario: Callable[[Any, int], Awaitable[None]],
                     *addons: object,
                     make_master: Callable[[options.Options], mmaster.Master] = runner.LeanMaster,
                     **more: Any) -> None:
    """Run `scenario(master, proxy_port)` against the proxy, once it accepts connections, then
    shut it down (`more`: other mitmproxy options)."""
    opts = options.Options()
    master = make_master(opts)
    master.addons.add(*addons)
    port = free_port()
    opts.update(mode=[f"reverse:{origin_url}"], listen_host="127.0.0.1", listen_port=port,
                connection_strategy="lazy", termlog_verbosity="error", **more)
    running = asyncio.create_task(master.run())
    try:
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            break
        await asyncio.wait_for(scenario(master, port), 10)
    finally:
        master.shutdown()
        await asyncio.wait_for(running, 10)
