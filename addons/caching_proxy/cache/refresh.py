"""Background revalidation for stale-while-revalidate (RFC 5861 3).

The stale response is served at once; one request per key (per process, and across processes
through the store's fill lock) goes to the origin from a worker thread with the stored
validators, and its answer is handed back to the cache on the event loop as if it were a
forwarded response. Bounded: at most MAX_RUNNING refreshes at once; the others are skipped
(the next request inside the window tries again).
"""

from __future__ import annotations

import asyncio
import http.client as httpclient
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from mitmproxy import ctx, http

from caching_proxy.cache.flow_state import META_KEY, FlowState, Phase
from caching_proxy.cache.settings import Shared
from caching_proxy.policy import CACHE_ANSWERED_FIELDS
from caching_proxy.store.entry import Entry

log = logging.getLogger(__name__)

MAX_RUNNING = 8
# The store lock of a key's refresh, apart from its fill lock: named as the key's own (after
# SEP), so that a Redis Cluster keeps it in the key's slot.
REFRESH_LOCK = "\x00refresh"
# Hop-by-hop fields (RFC 9110 7.6.1) and the client's framing, not forwarded by this client.
_NOT_FORWARDED = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te",
                            b"transfer-encoding", b"upgrade", b"content-length", b"expect"})


def tls_context() -> ssl.SSLContext:
    """The upstream TLS settings mitmproxy itself uses (ssl_insecure, trusted CA options)."""
    if ctx.options.ssl_insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    import certifi

    return ssl.create_default_context(
        cafile=ctx.options.ssl_verify_upstream_trusted_ca or certifi.where(),
        capath=ctx.options.ssl_verify_upstream_trusted_confdir,
    )


class _FinalResponse(httpclient.HTTPResponse):
    """http.client skips only a 100 Continue before the final head; this skips every interim
    1xx (a 103 Early Hints is not the answer to a refresh), as the proxy itself does."""

    def _read_status(self) -> tuple[str, int, str]:
        version, status, reason = super()._read_status()  # type: ignore[misc]
        # begin() skips the head of a 100 and reads the next one.
        interim = 100 <= status < 200 and status != 101
        return version, httpclient.CONTINUE if interim else status, reason


def fetch(request: http.Request, timeout: float, max_size: int,
          context: ssl.SSLContext | None) -> http.Response | None:
    """GET `request` from its origin; None when the body exceeds max_size (not to be stored)."""
    conn: httpclient.HTTPConnection
    if request.scheme == "https":
        conn = httpclient.HTTPSConnection(request.host, request.port, timeout=timeout,
                                           context=context)
    else:
        conn = httpclient.HTTPConnection(request.host, request.port, timeout=timeout)
    conn.response_class = _FinalResponse
    try:
        started = time.time()
        conn.putrequest("GET", request.path, skip_host=True, skip_accept_encoding=True)
        for name, value in request.headers.fields:
            if name.lower() not in _NOT_FORWARDED:
                conn.putheader(name.decode("latin-1"), value)
        conn.endheaders()
        answer = conn.getresponse()
        body = answer.read(max_size + 1)
        if len(body) > max_size:
            return None
        fields = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.getheaders()
                  if k.lower().encode() not in _NOT_FORWARDED or k.lower() == "content-length"]
        return http.Response(b"HTTP/1.1", answer.status, answer.reason.encode("latin-1"),
                             http.Headers(fields), body, None, started, time.time())
    finally:
        conn.close()


class OriginAdmission(Protocol):
    """What lets a background refresh go to the origin (origin/gate.py): the budget, a pause
    the origin asked for, --offline."""

    async def admit_background(self) -> str | None:
        """A ticket when a refresh may go now (never waits), which `background_done` is owed;
        None when it may not."""

    async def admit_client(self) -> str | None:
        """As for a client's request (waits in the budget's queue): a ticket `background_done`
        is owed, or None when the origin is not to be asked now."""

    async def background_done(self, ticket: str, response: http.Response | None) -> None:
        """The refresh with `ticket` is over, with the origin's answer (None: it failed)."""


class Refresher:
    """The background refreshes of this process, at most MAX_RUNNING at once, each admitted by
    the origin gate when one is set (`gate`): client misses come first."""

    def __init__(self, shared: Shared,
                 on_response: Callable[[http.HTTPFlow], Awaitable[None] | None]) -> None:
        self.shared = shared
        self._on_response = on_response
        self._running: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # How a refresh reaches the origin (in-process tests put the origin on their clock).
        self.fetch: Callable[..., http.Response | None] = fetch
        self.gate: OriginAdmission | None = None
        # Called with the client's flow before its request is copied for a refresh (the
        # forwarded fields, edge/forwarded.py: the cache's hook runs before that addon's).
        self.before_copy: list[Callable[[http.HTTPFlow], None]] = []

    def refresh(self, flow: http.HTTPFlow, state: FlowState, entry: Entry,
                validators: tuple[tuple[str, str], ...]) -> None:
        """Revalidate `entry` in the background, once per key across processes. The refresh
        is stored under the same key and rule as the request that found it stale."""
        store = self.shared.store
        key = state.key
        if store is None or key in self._running or len(self._running) >= MAX_RUNNING:
            return
        timeout = self.shared.settings.refresh_timeout
        for prepare in self.before_copy:
            prepare(flow)
        request = flow.request.copy()
        request.method = "GET"
        for name in CACHE_ANSWERED_FIELDS:
            request.headers.pop(name, None)
        for name, value in validators:
            request.headers[name] = value
        refresh = http.HTTPFlow(flow.client_conn, flow.server_conn)
        refresh.request = request
        refresh.metadata[META_KEY] = FlowState(
            key=key, phase=Phase.REVALIDATE, fwd="stale", config=state.config, stored=entry,
            request_time=self.shared.clock())
        self._running.add(key)
        task = asyncio.get_running_loop().create_task(
            self._locked(key, refresh, timeout, self.shared.settings.max_object_size))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _locked(self, key: str, flow: http.HTTPFlow, timeout: float,
                      max_size: int) -> None:
        """`_run` under the store's refresh lock of `key` (awaited, never holding up the loop
        on a network store): once across processes."""
        store = self.shared.store
        lock = key + REFRESH_LOCK
        token = await store.acquire_async(lock, timeout) if store is not None else ""
        if token is None:
            self._running.discard(key)
            return  # another process refreshes it
        try:
            gate = self.gate
            if gate is None:
                await self._run(key, flow, timeout, max_size)
            elif (ticket := await gate.admit_background()) is not None:
                answer = None
                try:
                    answer = await self._run(key, flow, timeout, max_size)
                finally:
                    await gate.background_done(ticket, answer)
        finally:
            self._running.discard(key)
            if store is not None:
                store.release(lock, token)

    async def _run(self, key: str, flow: http.HTTPFlow, timeout: float,
                   max_size: int) -> http.Response | None:
        """The origin's answer to the refresh (None: it failed), once the cache took it."""
        response = None
        try:
            context = tls_context() if flow.request.scheme == "https" else None
            response = await asyncio.to_thread(self.fetch, flow.request, timeout, max_size, context)
            if response is None:
                return None
            flow.response = response
            result = self._on_response(flow)
            if result is not None:
                await result
        except Exception as e:  # the origin failing is the reason stale answers exist
            log.info(f"caching-proxy: background refresh of {flow.request.url} failed: {e!r}")
        finally:
            self._running.discard(key)
        return response

    def done(self) -> None:
        for task in self._tasks:
            task.cancel()
