"""Prometheus metrics on a loopback port (`--metrics-port`), in the text exposition format.

What covers every process: the request counters, answers by status class, bytes served and
evictions are the ones persisted in the store (see counters.py), so they count every process
sharing it (up to a second late), and the store's size is read on each scrape. What is a
process's own, the latency histogram and the open client connections, is recorded in every
worker under `--workers N` in prometheus-client's multiprocess mode (one file a process in
$TMPDIR/caching-proxy-metrics-<supervisor pid>), so the first worker, which serves the endpoint,
reports their sum. Uptime is the serving process's (the workers start together).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from mitmproxy import connection, ctx, exceptions, http
from mitmproxy.addonmanager import Loader
from prometheus_client import CollectorRegistry, Gauge, Histogram, multiprocess, start_http_server
from prometheus_client import values as prometheus_values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from caching_proxy.cache.addon import STORE_ERRORS, CacheAddon
from caching_proxy.cli import options as opts
from caching_proxy.mitm import workers
from caching_proxy.ops.counters import (
    BYTES_SERVED,
    EVICTIONS,
    OUTCOME_COUNTERS,
    STATUS_CLASSES,
    STATUS_COUNTERS,
    STORE_DOWN_MS,
    STORE_TIMEOUTS,
    Counters,
    hit_ratio,
)

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
    "store_timeouts": "Network store calls that got no answer within the store timeout.",
}
# Every metric name this module exports (a histogram's _bucket, _sum and _count series and a
# counter's _total come from these); docs/grafana's dashboard is checked against a real scrape.
CONNECTIONS = "caching_proxy_connections_open"
LATENCY = "caching_proxy_request_duration_seconds"


def multiprocess_dir() -> str | None:
    """The folder the workers of one `--workers N` run share their own metrics in (None
    outside a worker). Files of processes no longer alive are removed by the first worker as
    it starts: a folder left by an earlier run under a reused pid holds nothing counted twice.
    None too when the folder is not this user's own (see the check)."""
    worker = workers.worker_number()
    if worker is None:
        return None
    path = os.path.join(tempfile.gettempdir(), f"caching-proxy-metrics-{os.getppid()}")
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    found = os.lstat(path)
    if (not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid()
            or found.st_mode & 0o077):
        # A name in a shared folder another user could have taken first (a link, their own
        # folder): its files would be read as this run's. Each worker then reports its own.
        log.warning(f"caching-proxy: {path} is not this user's private folder: /metrics "
                    "covers the serving worker only")
        return None
    if worker[0] == 1:
        for name in glob.glob(os.path.join(path, "*.db")):
            pid = os.path.basename(name).rsplit("_", 1)[-1].removesuffix(".db")
            if pid.isdigit() and not _alive(int(pid)):
                with contextlib.suppress(OSError):
                    os.remove(name)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        for name in (*OUTCOME_COUNTERS.values(), "origin_errors", STORE_TIMEOUTS):
            family = CounterMetricFamily(f"caching_proxy_{name}", HELP[name])
            family.add_metric([], counts.get(name, 0))
            yield family
        yield CounterMetricFamily(
            "caching_proxy_store_down_seconds", "Seconds the network store was considered down "
            "(requests passed through).", value=counts.get(STORE_DOWN_MS, 0) / 1000)
        answers = CounterMetricFamily(
            "caching_proxy_responses", "Answers sent, by status class (the proxy's own too).",
            labels=["code"])
        for status_class, name in zip(STATUS_CLASSES, STATUS_COUNTERS, strict=True):
            answers.add_metric([status_class], counts.get(name, 0))
        yield answers
        yield CounterMetricFamily("caching_proxy_served_bytes",
                                  "Body bytes of the answers sent to clients.",
                                  value=counts.get(BYTES_SERVED, 0))
        evicted = CounterMetricFamily(
            "caching_proxy_evictions", "Stored entries the store removed: expired, or least "
            "recently used past its size bound (diskcache; 0 on Redis).", labels=["reason"])
        for name in EVICTIONS:
            evicted.add_metric([name.removeprefix("evicted_")], counts.get(name, 0))
        yield evicted
        ratio = hit_ratio(counts)
        yield GaugeMetricFamily("caching_proxy_hit_ratio",
                                "Share of cacheable requests answered from the store.",
                                value=ratio if ratio is not None else 0.0)
        yield GaugeMetricFamily("caching_proxy_store_entries", "Responses in the store.",
                                value=usage.entries)
        yield GaugeMetricFamily("caching_proxy_store_bytes",
                                "Bytes of the responses in the store.", value=usage.bytes)


class UptimeCollector(Collector):
    def __init__(self, started: Callable[[], float], clock: Callable[[], float]) -> None:
        self.started = started
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("caching_proxy_uptime_seconds",
                                "Seconds since this proxy process started.",
                                value=max(0.0, self.clock() - self.started()))


class Metrics:
    def __init__(self, cache: CacheAddon, counters: Counters,
                 clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.started = clock()
        self.registry = CollectorRegistry()
        self.registry.register(StoreCollector(cache, counters))
        self.registry.register(UptimeCollector(lambda: self.started, clock))
        self.shared_dir = multiprocess_dir()
        own: CollectorRegistry | None = self.registry
        if self.shared_dir is not None:
            # This process's values go to files of the folder; the endpoint sums the files.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = self.shared_dir
            prometheus_values.ValueClass = prometheus_values.MultiProcessValue()
            multiprocess.MultiProcessCollector(self.registry, path=self.shared_dir)
            own = None
        self.latency = Histogram(
            LATENCY, "Time from the request's arrival to its response, by X-Cache.",
            ["x_cache"], buckets=LATENCY_BUCKETS, registry=own,
        )
        self.connections = Gauge(CONNECTIONS, "Client connections open.", registry=own,
                                 multiprocess_mode="livesum")
        self.server: Any = None
        self.admin_serves = False  # set by admin.Admin while it serves /metrics
        self.exported = False  # some worker serves the metrics: every worker records its own

    def load(self, loader: Loader) -> None:
        opts.declare(loader, self)

    def running(self) -> None:
        self.started = self.clock()

    def configure(self, updated: set[str]) -> None:
        if not updated & {"cache_metrics_port", "cache_admin_port"}:
            return
        port = ctx.options.cache_metrics_port
        if not 0 <= port <= 65535:
            raise exceptions.OptionsError("cache_metrics_port must be 0-65535")
        self.exported = bool(port or ctx.options.cache_admin_port)
        if "cache_metrics_port" not in updated:
            return
        self._stop()
        worker = workers.worker_number()
        if port and (worker is None or worker[0] == 1):
            try:
                self.server, _ = start_http_server(port, addr="127.0.0.1", registry=self.registry)
            except OSError as e:
                raise exceptions.OptionsError(f"cannot serve metrics on port {port}: {e}") from e

    def client_connected(self, client: connection.Client) -> None:
        self.connections.inc()

    def client_disconnected(self, client: connection.Client) -> None:
        self.connections.dec()

    def response(self, flow: http.HTTPFlow) -> None:
        if (self.exported or self.server is not None or self.admin_serves) and (
                flow.response is not None):
            self.latency.labels(flow.response.headers.get("x-cache", "none")).observe(
                time.time() - flow.request.timestamp_start)

    def live(self) -> dict[str, Any]:
        """This run's figures for /stats: uptime (this process) and open connections (every
        worker's)."""
        open_now = 0.0
        collectors: list[Any] = (
            [multiprocess.MultiProcessCollector(None, path=self.shared_dir)]
            if self.shared_dir is not None else [self.connections])
        for collector in collectors:
            for family in collector.collect():
                open_now += sum(s.value for s in family.samples if s.name == CONNECTIONS)
        return {"uptime_seconds": round(max(0.0, self.clock() - self.started), 3),
                "connections_open": int(open_now)}

    def done(self) -> None:
        self._stop()
        if self.shared_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), self.shared_dir)
            worker = workers.worker_number()
            if worker is not None and worker[0] == 1:
                shutil.rmtree(self.shared_dir, ignore_errors=True)

    def _stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
