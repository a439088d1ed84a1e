"""The most a hit can be under mitmproxy: the proxy's own lean master, answering every request
at once from one prepared 1 KiB response, with no cache, no store and no other addon.

What this row answers beyond the hit rows is only mitmproxy's per-request machinery (its HTTP/1
layers, the flow and four hooks), so `hit / ceiling` is the share of that bound the cache keeps.

    python -m benchmark.ceiling --port 8081 --origin http://127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import asyncio

from mitmproxy import http, options

from caching_proxy.mitm.runner import LeanMaster

BODY = b"x" * 1024


class AnswerAtOnce:
    def request(self, flow: http.HTTPFlow) -> None:
        flow.response = http.Response.make(
            200, BODY, {"Cache-Control": "max-age=86400", "X-Cache": "HIT"})


async def serve(port: int, origin: str) -> None:
    opts = options.Options()
    master = LeanMaster(opts)
    master.addons.add(AnswerAtOnce())
    opts.update(mode=[f"reverse:{origin}"], connection_strategy="lazy",
                listen_host="127.0.0.1", listen_port=port)
    await master.run()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--origin", required=True)
    args = p.parse_args()
    asyncio.run(serve(args.port, args.origin))


if __name__ == "__main__":
    main()
