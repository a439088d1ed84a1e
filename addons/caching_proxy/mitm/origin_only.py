"""Forwards to the origin and nowhere else, whatever the user's scripts or mitmproxy's own
addons did to a request.

mitmproxy opens the server connection to `flow.request.host:port` as it stands after the
`request` hook, and to `server.address` as it stands after `server_connect`: a script (`-s`)
or `map_remote` that changes either would make the cache an open proxy. This addon runs after
them (mitmproxy_addons.around_cache puts it last but the hit lane and the drain) and
refuses, with the proxy's own 502, a request whose scheme, host or port is no longer the
origin's, and fails a server connection to any other address. A rewrite that keeps the origin
(a path, a query, a header) goes on. Both checks fail closed.
"""

from __future__ import annotations

import logging

from mitmproxy import ctx, http
from mitmproxy.proxy import server_hooks
from mitmproxy.proxy.mode_specs import ProxyMode, ReverseMode

from caching_proxy.cache.flow_state import Phase, state_of
from caching_proxy.edge.fail_closed import fail_closed
from caching_proxy.edge.refusals import refusal_response

log = logging.getLogger(__name__)

REFUSED = "not forwarded: its destination is not the origin"


class OriginOnly:
    def __init__(self) -> None:
        self.origin: tuple[str, str, int] | None = None  # scheme, host, port
        self._warned = False

    def configure(self, updated: set[str]) -> None:
        if "mode" not in updated:
            return
        modes = [ProxyMode.parse(m) for m in ctx.options.mode]
        # One reverse mode, as the runner sets it; anything else: no origin, every flow refused.
        if len(modes) == 1 and isinstance(modes[0], ReverseMode):
            host, port = modes[0].address
            self.origin = ("https" if modes[0].scheme == "https" else "http", host.lower(), port)
        else:
            self.origin = None

    def _refused(self, where: str) -> None:
        if not self._warned:  # once: a script that retargets every request would flood the log
            self._warned = True
            log.warning(f"caching-proxy: a request to {where} was refused: {REFUSED} "
                        "(changed by a script or map_remote; see docs/security.md)")

    @fail_closed
    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.error is not None:
            return  # answered (a hit, a refusal) or failed: nothing is forwarded
        r = flow.request
        if self.origin is None or (r.scheme, r.host.lower(), r.port) != self.origin:
            self._refused(f"{r.scheme}://{r.host}:{r.port}")
            state = state_of(flow)
            if state is not None:  # as the origin gate refuses: the fill is over, answered
                cache = ctx.master.addons.get("cacheaddon")
                if cache is not None:
                    cache.coalescer.finish(state)  # requests waiting on this fill go on
                state.phase = Phase.ANSWERED
                state.outcome = "unavailable"
            flow.response = refusal_response(502, f"Bad Gateway: {REFUSED}",
                                             detail="proxy-error")

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        server = data.server
        try:
            address = server.address
            allowed = (self.origin is not None and server.via is None and address is not None
                       and (str(address[0]).lower(), address[1]) == self.origin[1:])
        except Exception:  # fails closed: no connection
            allowed = False
        if not allowed:
            self._refused(f"{server.address}")
            server.error = REFUSED
