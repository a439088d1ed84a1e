"""The addons that make up caching-proxy, in the order mitmproxy must call them.

Both the `caching-proxy` runner and `addons/cache.py` (for `mitmdump -s`) load this list, so a
mitmproxy user gets the same proxy as the CLI.
"""

from __future__ import annotations

from caching_proxy.addon import CacheAddon
from caching_proxy.guard import Guard


def addons() -> list[object]:
    # Order matters within a hook: addons that refuse or answer a request (guards, PURGE) come
    # before the cache; addons that only observe the answer (logs, counters) come after it.
    return [Guard(), CacheAddon()]
