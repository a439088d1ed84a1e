"""caching-proxy on uvloop, for the bench's `hituv` row: uvloop's event loop policy set, then
`python -m caching_proxy` run as it is, with the same arguments.

The runner (caching_proxy.mitm.runner) starts its loop with asyncio.run(), which asks the
policy for a new loop, so the policy set here is the loop the proxy runs on. Workers
(--workers N) are started as `python -m caching_proxy` and run on asyncio's own loop: use one
worker.

    python -O -m benchmark.uvproxy --port 8081 --origin http://127.0.0.1:8080 --cache-dir DIR
"""

from __future__ import annotations

import asyncio
import runpy
import sys

import uvloop


def main() -> None:
    # uvloop.install() does the same, with a DeprecationWarning from Python 3.12 on.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    sys.argv[0] = "caching-proxy"
    runpy.run_module("caching_proxy", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
