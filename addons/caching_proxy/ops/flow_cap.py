"""`--web-max-flows`: a bound on the flows mitmweb keeps, oldest dropped first.

mitmweb keeps every flow (request, response, body) in its view until a person clears it, so a
long `--web` session in front of busy traffic would grow without bound. Past the bound, the
oldest flows leave the view (and mitmweb's page, through the view's own removal), as a ring.
Without a view (the lean master, plain mitmdump) this does nothing.
"""

from __future__ import annotations

from typing import Any

from mitmproxy import ctx, http
from mitmproxy.addonmanager import Loader

from caching_proxy.cli import options as opts

DROP_BATCH = 100  # flows dropped at once past the bound: one update of the page, not one each


class FlowCap:
    def __init__(self) -> None:
        self.limit = 0

    def load(self, loader: Loader) -> None:
        opts.declare(loader, self)

    def configure(self, updated: set[str]) -> None:
        if "cache_web_max_flows" in updated:
            self.limit = max(0, ctx.options.cache_web_max_flows)

    def request(self, flow: http.HTTPFlow) -> None:
        # After the view added it (the view comes first among mitmweb's addons).
        if self.limit:
            view = ctx.master.addons.get("view")
            if view is not None:
                trim(view, self.limit)


def trim(view: Any, limit: int) -> int:
    """Drop the oldest finished flows of `view` past `limit` (down to `limit - DROP_BATCH` when
    it is larger than two batches); how many were dropped. A flow still live is never dropped:
    mitmproxy's removal would kill it, and with it a client's request."""
    count = view.store_count()
    if count <= limit:
        return 0
    keep = limit - DROP_BATCH if limit > DROP_BATCH * 2 else limit
    dropped = 0
    for f in view.resolve("@all"):  # the store in insertion order: the oldest first
        if count - dropped <= keep:
            break
        if not f.live:
            view.remove([f])  # one at a time: a batch would log "Removed N flows" each time
            dropped += 1
    return dropped
