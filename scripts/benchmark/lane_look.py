"""What the hit lane's look costs a request it leaves to mitmproxy (a miss): the head parsed, the
flow built and `Reuse.pin_hit`'s store lookup that finds nothing, per request, in-process on a
real diskcache folder with the default memory tier. Rounds of distinct URLs, all shown.

    PYTHONPATH=addons:scripts .venv/bin/python -O -m benchmark.lane_look
"""

from __future__ import annotations

import statistics
import tempfile
import time

from mitmproxy import http
from mitmproxy.addons import proxyserver
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow

from caching_proxy.cache.addon import CacheAddon
from caching_proxy.mitm.hit_lane import Lane

REQUESTS = 20_000
ROUNDS = 5


def main() -> None:
    cache = CacheAddon()
    with (tempfile.TemporaryDirectory() as folder,
          taddons.context(proxyserver.Proxyserver(), cache) as tctx):
        tctx.options.update(cache_dir=folder)
        lane = Lane(None, cache.reuse,  # type: ignore[arg-type]  # no hooks are run here
                    ProxyMode.parse("reverse:http://127.0.0.1:8080"), False, True)
        client, server = tflow.tclient_conn(), tflow.tserver_conn()
        rounds = []
        for r in range(ROUNDS):
            heads = [f"GET /m{r}-{i} HTTP/1.1\r\nHost: 127.0.0.1:3000\r\nUser-Agent: wrk\r\n\r\n"
                     .encode() for i in range(REQUESTS)]
            start = time.perf_counter()
            for head in heads:
                flow = http.HTTPFlow(client, server)
                flow.request = lane.request_of(head)  # type: ignore[assignment]
                flow.live = True
                if cache.reuse.pin_hit(flow) is not False:
                    raise SystemExit("a lookup found something: not a miss")
            rounds.append((time.perf_counter() - start) / REQUESTS * 1e6)
        print(f"hit lane's look on a miss: {statistics.median(rounds):.1f} us per request "
              f"(median of {ROUNDS} rounds of {REQUESTS:,}: "
              + " / ".join(f"{x:.1f}" for x in rounds) + ")")


if __name__ == "__main__":
    main()
