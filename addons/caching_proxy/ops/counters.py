"""Counts how requests were answered and adds the counts to the store, where every process that
shares it (other workers, `caching-proxy --stats`, the metrics endpoint) reads them.

Counting is a dict increment per request; the store is written once a second (and at shutdown),
not per request: a write per hit would cost more than the hit.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from mitmproxy import http

from caching_proxy.cache.addon import STORE_ERRORS, CacheAddon
from caching_proxy.cache.flow_state import FlowState, state_of

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 1.0
COUNTED_KEY = "caching_proxy.counted"
# Counter name for each FlowState.outcome.
OUTCOME_COUNTERS = {
    "hit": "hits",
    "collapsed": "collapsed",
    "stale": "stale",
    "miss": "misses",
    "revalidated": "revalidated",
    "pass": "passed",
    "unavailable": "unavailable",
}
ORIGIN_ERRORS = "origin_errors"
# What operators watch beside the outcomes: answers by status class and the body bytes sent
# (every answer that reaches the response hook, the proxy's own included), and the entries the
# store evicted (diskcache's culls: expired ones, and least recently used ones past the size
# bound; store/disk/adapter.py). Redis evicts by its maxmemory-policy without telling a client:
# those stay 0 on Redis.
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
STATUS_COUNTERS = tuple(f"responses_{c}" for c in STATUS_CLASSES)
BYTES_SERVED = "bytes_served"
EVICTIONS = ("evicted_expiry", "evicted_lru")
# A network store's calls that got no answer within --store-timeout, and the milliseconds it was
# considered down (store/outage.py): GuardedStore's, added here to be persisted with the rest.
STORE_TIMEOUTS, STORE_DOWN_MS = "store_timeouts", "store_down_ms"
COUNTER_NAMES = (*OUTCOME_COUNTERS.values(), ORIGIN_ERRORS, BYTES_SERVED, *STATUS_COUNTERS,
                 *EVICTIONS, STORE_TIMEOUTS, STORE_DOWN_MS)
# Answered from the store, without waiting for the origin's answer to this request.
FROM_STORE = ("hits", "collapsed", "stale")


# How mitmproxy words a flow's error when the client left: its HTTP/1 server on the client's
# EOF, its HTTP/2 layer on a stream reset (tests/e2e/test_core_paths.py fails if that changes).
CLIENT_GONE = ("Client disconnected.", "stream reset by client")


def client_went_away(flow: http.HTTPFlow) -> bool:
    return flow.error is not None and flow.error.msg.startswith(CLIENT_GONE)


def hit_ratio(counts: dict[str, int]) -> float | None:
    """Share of cacheable requests answered from the store (pass-through requests left out)."""
    served = sum(counts.get(n, 0) for n in FROM_STORE)
    total = served + counts.get("misses", 0) + counts.get("revalidated", 0)
    return served / total if total else None


class Counters:
    def __init__(self, cache: CacheAddon) -> None:
        self.cache = cache
        self.pending: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        cache.before_close.append(self.flush)

    def running(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._flush_periodically())

    def response(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is not None:
            self._count_served(response)
        state = self._first_count(flow)
        if state is None or response is None:
            return
        if (response.status_code >= 500 and state.outcome in ("miss", "pass", "revalidated")) or (
            # A stored response answered instead of the origin's 5xx (stale-if-error, use-stale).
            state.outcome == "stale" and "stale-on-" in response.headers.get("cache-status", "")
        ):
            self.pending[ORIGIN_ERRORS] += 1

    def error(self, flow: http.HTTPFlow) -> None:
        # The origin refused, reset, timed out or sent garbage (the answer may still be a stored
        # stale response, chosen by the cache in this same hook), or the client left: not the
        # origin's failure.
        state = self._first_count(flow)
        if state is not None and state.outcome not in ("hit", "collapsed", "unavailable") and (
                not client_went_away(flow)):
            self.pending[ORIGIN_ERRORS] += 1

    def _count_served(self, response: http.Response) -> None:
        """The answer's status class and body bytes (a streamed body: its Content-Length)."""
        status = response.status_code
        if 100 <= status < 600:
            self.pending[STATUS_COUNTERS[status // 100 - 1]] += 1
        if response.stream:
            length = response.headers.get("content-length", "")
            size = int(length) if length.isdigit() else 0
        else:
            size = len(response.raw_content or b"")
        if size:
            self.pending[BYTES_SERVED] += size

    def _first_count(self, flow: http.HTTPFlow) -> FlowState | None:
        """The flow's state the first time it is seen here; a flow that failed after its
        response (a client gone mid-body) is counted once."""
        state = state_of(flow)
        if state is None or flow.metadata.get(COUNTED_KEY):
            return None
        flow.metadata[COUNTED_KEY] = True
        name = OUTCOME_COUNTERS.get(state.outcome)
        if name is not None:
            self.pending[name] += 1
        return state

    def flush(self) -> None:
        self._write(self._take())

    def _take(self) -> dict[str, int]:
        """The counts not written yet, handed over (on the event loop)."""
        counts, self.pending = dict(self.pending), Counter()
        guarded = self.cache.shared.store
        if guarded is not None:
            for name, delta in guarded.outage_counts().items():
                counts[name] = counts.get(name, 0) + delta
        return counts

    def _write(self, counts: dict[str, int]) -> None:
        if not counts or self.cache.store is None:
            return
        try:
            self.cache.store.add_counts(counts)
        except STORE_ERRORS as e:
            log.debug(f"caching-proxy: counters not saved: {e}")

    def snapshot(self) -> dict[str, int]:
        """The persisted counters plus what this process has not written yet."""
        self.flush()
        found: dict[str, Any] = self.cache.store.counters() if self.cache.store else {}
        return {name: int(found.get(name, 0)) for name in COUNTER_NAMES}

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            counts = self._take()
            if counts:
                # In a thread: a store that hangs (Redis stopped) never holds up the loop.
                await asyncio.to_thread(self._write, counts)

    def done(self) -> None:
        # The last counts are written by the cache addon's done, before it closes the store.
        if self._task is not None:
            self._task.cancel()
