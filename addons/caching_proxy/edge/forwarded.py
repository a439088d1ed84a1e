"""Forwarded fields, on by default as Varnish and Squid set them: toward the origin
`X-Forwarded-For` (the client's address, appended to a trusted proxy's list),
`X-Forwarded-Proto` (`http`, or `https` on a TLS client connection) and `Via` (RFC 9110 7.6.3);
toward the client `Via: 1.1 caching-proxy` on every answer that passes the response hook: hits
(the hit lane's too), misses, revalidations and the proxy's own answers. `cache_forwarded=off`
sends none of them and passes the client's own fields on as before.

Guarantees:
- the fields are set after the guard (a client's `Connection: X-Forwarded-For` cannot strip
  them) and after the cache's lookup, on every request that goes to the origin: misses,
  passes, revalidations and background refreshes (stale-while-revalidate); never on a request
  the cache answers, so a hit pays one field line and nothing else;
- a client's own X-Forwarded-For and X-Forwarded-Proto reach the origin only when its address
  is in cache_trusted_proxies; otherwise they are replaced;
- none of them is part of the cache key: the key is the URL, and the lookup ran before they were
  set. (An origin answering `Vary: X-Forwarded-For` gets a response stored under the value this
  proxy sent, which a lookup never matches: such answers are fetched each time, never shared.)

X-Forwarded-Host is not sent: the client's Host is the client's to choose, the cache key does
not hold it, and an origin that builds links from it would have one client's Host stored for
everyone, which is why the cache passes requests that carry one (policy/lookup.py). No 508 on
a Via loop either: every instance has the same pseudonym, so two caching-proxies in a chain
would look like one; a loop grows the request head by a Via line a hop and ends at the guard's
431 (100 fields, 64 KiB).

A failure inside a hook refuses the flow (fail_closed): an origin never gets a request whose
X-Forwarded-For still holds what an untrusted client wrote.
"""

from __future__ import annotations

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader

from caching_proxy.cache.addon import CacheAddon
from caching_proxy.cli import options as opts
from caching_proxy.edge.fail_closed import fail_closed
from caching_proxy.policy.forwarded import (
    PSEUDONYM,
    VIA,
    Network,
    forwarded_for,
    is_trusted,
    parse_networks,
    parse_switch,
    peer_address,
)

VIA_FIELD = (b"Via", VIA.encode())
DONE_KEY = "caching_proxy.forwarded_fields"  # the request has them (set once)
VERSIONS = {"2.0": "2", "3.0": "3"}


class Forwarded:
    def __init__(self, cache: CacheAddon) -> None:
        self.on = True
        self.trusted: tuple[Network, ...] = ()
        # A background refresh copies the client's request inside the cache's request hook,
        # before this addon's runs: its fields are set on the request just before that copy.
        cache.refresher.before_copy.append(self._before_refresh)

    def _before_refresh(self, flow: http.HTTPFlow) -> None:
        if self.on:
            self.set_fields(flow)

    def load(self, loader: Loader) -> None:
        opts.declare(loader, self)

    def configure(self, updated: set[str]) -> None:
        if not updated & {"cache_forwarded", "cache_trusted_proxies"}:
            return
        try:
            on = parse_switch(ctx.options.cache_forwarded)
            trusted = parse_networks(ctx.options.cache_trusted_proxies)
        except ValueError as e:
            raise exceptions.OptionsError(str(e)) from e
        self.on, self.trusted = on, trusted

    @fail_closed
    def request(self, flow: http.HTTPFlow) -> None:
        if self.on and flow.response is None:
            self.set_fields(flow)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if self.on and response is not None and response.stream:
            # A streamed body's head leaves right after this hook.
            response.headers.fields += (VIA_FIELD,)

    def response(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if self.on and response is not None and not response.stream:
            # One field line on the raw fields: equivalent to appending to an origin's Via
            # (RFC 9110 5.3), and a tuple concatenation, not a header edit, on every hit. The
            # response hook, not responseheaders: the cache may answer in its response hook
            # (after a 304) with a response of its own.
            response.headers.fields += (VIA_FIELD,)

    def set_fields(self, flow: http.HTTPFlow) -> None:
        """Set the origin-bound fields on `flow`'s request, once."""
        if flow.metadata.get(DONE_KEY):
            return
        flow.metadata[DONE_KEY] = True
        request = flow.request
        headers = request.headers
        peername = flow.client_conn.peername
        peer = peer_address(str(peername[0])) if peername else "unknown"
        trusted = bool(self.trusted) and is_trusted(peer, self.trusted)
        headers["X-Forwarded-For"] = forwarded_for(headers.get_all("X-Forwarded-For"), peer,
                                                   trusted)
        if not (trusted and "X-Forwarded-Proto" in headers):
            headers["X-Forwarded-Proto"] = "https" if flow.client_conn.tls_established else "http"
        # received-protocol: the client's version ("1.1", "2"), then the pseudonym.
        version = request.http_version.removeprefix("HTTP/")
        headers.add("Via", f"{VERSIONS.get(version, version)} {PSEUDONYM}")
