"""The addons that make up caching-proxy, in the order mitmproxy must call them.

Both the `caching-proxy` runner and `addons/cache.py` (for `mitmdump -s`) load this list, so a
mitmproxy user gets the same proxy as the CLI.
"""

from __future__ import annotations

from caching_proxy.access_log import AccessLog
from caching_proxy.addon import CacheAddon
from caching_proxy.commands import CacheCommands
from caching_proxy.counters import Counters
from caching_proxy.guard import Guard
from caching_proxy.metrics import Metrics
from caching_proxy.origin_timeouts import OriginTimeouts
from caching_proxy.purge import Purge
from caching_proxy.streaming import BodyLimit


def addons() -> list[object]:
    # Order matters within a hook: addons that refuse or answer a request (guards, PURGE) come
    # before the cache; addons that only observe the answer (logs, counters) come after it.
    # OriginTimeouts follows CacheAddon: its timer starts once the cache forwards a request, and
    # its 504 in the error hook gives way to a stale answer chosen there by CacheAddon.
    cache = CacheAddon()
    counters = Counters(cache)
    return [
        Guard(), Purge(cache), BodyLimit(), cache, OriginTimeouts(),
        counters, Metrics(cache, counters), AccessLog(), CacheCommands(cache, counters),
    ]
