"""The addons that make up caching-proxy, in the order mitmproxy must call them.

Both the `caching-proxy` runner and `addons/cache.py` (for `mitmdump -s`) load this list, so a
mitmproxy user gets the same proxy as the CLI.
"""

from __future__ import annotations

from caching_proxy.cache.addon import CacheAddon
from caching_proxy.edge.body_limit import BodyLimit
from caching_proxy.edge.client_limits import ClientLimits
from caching_proxy.edge.client_tls import ClientTls
from caching_proxy.edge.forwarded import Forwarded
from caching_proxy.edge.guard import Guard
from caching_proxy.edge.origin_timeouts import OriginTimeouts
from caching_proxy.edge.purge import Purge
from caching_proxy.mitm import client_http1, http2_server, origin_http1
from caching_proxy.mitm.drain import Drain
from caching_proxy.mitm.hit_lane import HitLane
from caching_proxy.ops.access_log import AccessLog
from caching_proxy.ops.admin import Admin
from caching_proxy.ops.commands import CacheCommands
from caching_proxy.ops.counters import Counters
from caching_proxy.ops.flow_cap import FlowCap
from caching_proxy.ops.marks import WebMarks
from caching_proxy.ops.metrics import Metrics
from caching_proxy.origin.figures import OriginCollector
from caching_proxy.origin.gate import OriginGate


def addons(marks: bool = True) -> list[object]:
    """`marks`: load WebMarks, for a master that shows flows (mitmweb, the console, mitmdump -s);
    the lean master keeps no flows, so marking them would be 2% of a hit for nobody."""
    # mitmproxy's HTTP/1 origin side, extended before any connection (interim responses, one
    # retry on a dead reused connection); both the runner and `mitmdump -s` come through here.
    origin_http1.install()
    http2_server.install()
    # Its client side: bounded heads, strict request lines, half-closed clients answered.
    client_http1.install()
    # Order matters within a hook: addons that refuse or answer a request (guards, PURGE) come
    # before the cache; addons that only observe the answer (logs, counters) come after it.
    # WebMarks reads the outcome once the cache (and, in the error hook, a stale answer) set it.
    # OriginGate follows CacheAddon (it holds back or refuses what the cache forwards) and comes
    # before OriginTimeouts, so that time in its queue is not the origin's.
    # OriginTimeouts follows CacheAddon: its timer starts once the cache forwards a request, and
    # its 504 in the error hook gives way to a stale answer chosen there by CacheAddon.
    # Forwarded follows them: it sets the origin-bound fields on what is forwarded, after the
    # guard and the lookup, and adds Via to every answer once the cache made it.
    # ClientLimits comes first, to refuse a connection past the bound before anything else runs;
    # ClientTls refuses cleartext on an HTTPS port before the guard or the cache see it.
    cache = CacheAddon()
    counters = Counters(cache)
    gate = OriginGate(cache)
    metrics = Metrics(cache, counters)
    metrics.registry.register(OriginCollector(gate))
    return [
        ClientLimits(), ClientTls(), Guard(), Purge(cache), BodyLimit(), cache, gate,
        Forwarded(cache), OriginTimeouts(),
        counters, metrics, AccessLog(), *([WebMarks(), FlowCap()] if marks else []),
        CacheCommands(cache, counters), Admin(cache, metrics, gate),
        # Last: its client_connected runs once ClientLimits has refused or wrapped the
        # connection. It serves only under the lean master (off under mitmweb and mitmdump -s).
        HitLane(),
        # Last, and its hooks never yield: a drain closes no connection between a hook that
        # finished an answer and its write (mitm/drain.py).
        Drain(),
    ]
