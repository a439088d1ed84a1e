"""Prometheus metrics on a loopback port (`--metrics-port`), in the text exposition format.

The request counters are the ones persisted in the store (see counters.py), so they cover every
process sharing it: with `--workers N` only the first worker serves the endpoint, and it still
reports all workers' requests (up to a second late). The latency histogram is that process's own.
Store size is read on each scrape without reading the entries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader
from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from caching_proxy.cache.addon import STORE_ERRORS, CacheAddon
from caching_proxy.cli import options as opts
from caching_proxy.mitm import workers
from caching_proxy.ops.counters import COUNTER_NAMES, Counters, hit_ratio

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HELP = {
    "hits": "Requests answered from the store without contacting the origin.",
    "collapsed": "Requests answered from a response fetched for a concurrent request.",
    "stale": "Requests answered with a stale stored response.",
    "misses": "Requests answered by the origin.",
    "revalidated": "Requests answered from the store after the origin confirmed it (304).",
    "passed": "Requests forwarded without caching (unsafe methods, no-store, bypass).",
    "unavailable": "only-if-cached requests with nothing usable stored (504).",
    "origin_errors": "Origin exchanges that failed (refused, reset, timeout, garbage) or got 5xx.",
}


class StoreCollector(Collector):
    def __init__(self, cache: CacheAddon, counters: Counters) -> None:
        self.cache = cache
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        store = self.cache.store
        if store is None:
            return
        try:
            counts = store.counters()
            usage = store.usage_estimate()
        except STORE_ERRORS as e:
            log.debug(f"caching-proxy: metrics without the store: {e}")
            return
        for name, pending in self.counters.pending.copy().items():
            counts[name] = counts.get(name, 0) + pending
        for name in COUNTER_NAMES:
            family = CounterMetricFamily(f"caching_proxy_{name}", HELP[name])
            family.add_metric([], counts.get(name, 0))
            yield family
        ratio = hit_ratio(counts)
        yield GaugeMetricFamily("caching_proxy_hit_ratio",
                                "Share of cacheable requests answered from the store.",
                                value=ratio if ratio is not None else 0.0)
        yield GaugeMetricFamily("caching_proxy_store_entries", "Responses in the store.",
                                value=usage.entries)
        yield GaugeMetricFamily("caching_proxy_store_bytes",
                                "Bytes of the responses in the store.", value=usage.bytes)


class Metrics:
    def __init__(self, cache: CacheAddon, counters: Counters) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(StoreCollector(cache, counters))
        self.latency = Histogram(
            "caching_proxy_request_duration_seconds",
            "Time from the request's arrival to its response, by X-Cache.",
            ["x_cache"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.server: Any = None
        self.admin_serves = False  # set by admin.Admin while it serves /metrics

    def load(self, loader: Loader) -> None:
        opts.declare(loader, self)

    def configure(self, updated: set[str]) -> None:
        if "cache_metrics_port" not in updated:
            return
        port = ctx.options.cache_metrics_port
        if not 0 <= port <= 65535:
            raise exceptions.OptionsError("cache_metrics_port must be 0-65535")
        self._stop()
        worker = workers.worker_number()
        if port and (worker is None or worker[0] == 1):
            try:
                self.server, _ = start_http_server(port, addr="127.0.0.1", registry=self.registry)
            except OSError as e:
                raise exceptions.OptionsError(f"cannot serve metrics on port {port}: {e}") from e

    def response(self, flow: http.HTTPFlow) -> None:
        if (self.server is not None or self.admin_serves) and flow.response is not None:
            self.latency.labels(flow.response.headers.get("x-cache", "none")).observe(
                time.time() - flow.request.timestamp_start)

    def done(self) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
