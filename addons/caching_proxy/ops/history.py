"""The last hour of the proxy's figures, for the admin API's `/status` (the status page, `--top`).

A sample every SAMPLE_SECONDS (a daemon thread beside the admin server, so the event loop does
no work for it) of what `/metrics` would say: the request counters, the latency histograms of
hits and of the origin. Deltas between samples give hit ratios and rates over 1, 5 and 60
minutes, a chart over the hour, and p50/p99 latencies *estimated from histogram buckets*
(linear within a bucket, as Prometheus' histogram_quantile). Bounded memory: at most KEEP
samples of a few dozen numbers each.

Under --workers N the admin API, so this history, lives in the first worker: the counters are
the store's (every worker's, up to a second late) and the histograms every worker's (metrics'
multiprocess files); the origin figures of `/stats` stay the first worker's own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from caching_proxy.ops.counters import hit_ratio

log = logging.getLogger(__name__)

SAMPLE_SECONDS = 10.0
RETRY_SECONDS = 0.25  # until the first sample: the store may open after the sampler starts
KEEP = 361  # an hour of samples, and the one an hour ago to measure from
WINDOWS = {"1m": 60.0, "5m": 300.0, "60m": 3600.0}
# The counters a sample keeps, by their name in /metrics (without caching_proxy_, _total).
COUNTED = ("hits", "collapsed", "stale", "misses", "revalidated", "passed", "unavailable",
           "origin_errors")
HIT_LATENCY = "caching_proxy_request_duration_seconds_bucket"
ORIGIN_LATENCY = "caching_proxy_origin_latency_seconds_bucket"
ORIGIN_ANSWERS = "caching_proxy_origin_latency_seconds_count"

Buckets = tuple[tuple[float, float], ...]  # cumulative (upper bound, count), ending with +Inf


@dataclass(frozen=True)
class Sample:
    at: float  # wall clock (time.time)
    counts: dict[str, float]  # cumulative: COUNTED and origin_answers
    hit_buckets: Buckets = ()
    origin_buckets: Buckets = ()


def read(registry: CollectorRegistry, now: float) -> Sample | None:
    """A Sample of what `registry` (the /metrics one) says now; None while the store's counters
    are missing (the store not open, or failing): a sample of zeros would make the next delta
    every count since the store was created."""
    counts: dict[str, float] = {}
    hit: dict[float, float] = {}
    origin: dict[float, float] = {}
    for family in registry.collect():
        for s in family.samples:
            name = s.name.removeprefix("caching_proxy_").removesuffix("_total")
            if name in COUNTED:
                counts[name] = s.value
            elif s.name == ORIGIN_ANSWERS:
                counts["origin_answers"] = s.value
            elif s.name == HIT_LATENCY and s.labels.get("x_cache") == "HIT":
                bound = float(s.labels["le"])
                hit[bound] = hit.get(bound, 0.0) + s.value  # multiprocess: summed already
            elif s.name == ORIGIN_LATENCY:
                origin[float(s.labels["le"])] = s.value
    if "hits" not in counts:
        return None
    return Sample(now, counts, tuple(sorted(hit.items())), tuple(sorted(origin.items())))


def quantile(q: float, buckets: Buckets) -> float | None:
    """The q-quantile (0-1) of cumulative `buckets`, estimated: linear within its bucket (the
    first from 0); the highest finite bound when it falls in +Inf. None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


def bucket_delta(new: Buckets, old: Buckets) -> Buckets:
    """`new` minus `old`, bound by bound (a bound `old` lacks counts from 0)."""
    before = dict(old)
    return tuple((bound, max(0.0, count - before.get(bound, 0.0))) for bound, count in new)


def delta(new: Sample, old: Sample) -> dict[str, float]:
    """Counts from `old` to `new`; never negative (a counter that went back: a new store)."""
    return {name: max(0.0, value - old.counts.get(name, 0.0)) for name, value in new.counts.items()}


def ratio(counts: dict[str, float]) -> float | None:
    return hit_ratio({name: int(value) for name, value in counts.items()})


def requests(counts: dict[str, float]) -> float:
    """Requests answered, of every outcome."""
    return sum(counts.get(name, 0.0) for name in COUNTED if name != "origin_errors")


@dataclass
class History:
    """The ring of samples. `sample()` may be called from any thread; `figures` too."""

    reader: Callable[[float], Sample | None]
    clock: Callable[[], float] = time.time
    interval: float = SAMPLE_SECONDS
    samples: deque[Sample] = field(default_factory=lambda: deque(maxlen=KEEP))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> Sample | None:
        """Take a sample now and keep it; None if there is none to take."""
        try:
            taken = self.reader(self.clock())
        except Exception as e:  # a failing store: no sample this time, the ring goes on
            log.debug(f"caching-proxy: no status sample: {e!r}")
            return None
        if taken is not None:
            with self._lock:
                self.samples.append(taken)
        return taken

    def start(self) -> None:
        """Sample every `interval` on a daemon thread until stop() (the samples kept stay)."""
        self._stop.set()  # a thread started before ends, on its own event
        self._stop = threading.Event()
        threading.Thread(target=self._run, args=(self._stop,), name="caching-proxy history",
                         daemon=True).start()

    def _run(self, stop: threading.Event) -> None:
        while True:
            taken = self.sample()
            if stop.wait(self.interval if taken or self.samples else RETRY_SECONDS):
                return

    def stop(self) -> None:
        self._stop.set()

    def figures(self, now: Sample | None) -> dict[str, Any]:
        """What `/status` adds to `/stats`: for each window, the hit ratio, the requests/s and
        the origin answers/s (from the sample at or just before its start, or the oldest kept:
        `seconds` says how long it covers); p50/p99 of hits and of the origin over the last
        minute; and `series`, one point per sample interval over the hour, for the chart."""
        with self._lock:
            kept = list(self.samples)
        if now is None:
            return {"windows": {}, "latency": {}, "series": [], "sample_seconds": self.interval}
        windows: dict[str, Any] = {}
        for name, seconds in WINDOWS.items():
            start = _start_of(kept, now.at - seconds)
            if start is None:
                windows[name] = None
                continue
            span = max(now.at - start.at, 1e-9)
            moved = delta(now, start)
            windows[name] = {"seconds": round(span, 1), "hit_ratio": _rounded(ratio(moved)),
                             "requests_per_second": round(requests(moved) / span, 3),
                             "origin_per_second": round(moved.get("origin_answers", 0.0) / span,
                                                        3)}
        minute = _start_of(kept, now.at - WINDOWS["1m"])
        latency: dict[str, Any] = {}
        for name, new, old in (
                ("hit", now.hit_buckets, minute.hit_buckets if minute else ()),
                ("origin", now.origin_buckets, minute.origin_buckets if minute else ())):
            recent = bucket_delta(new, old)
            latency[name] = {"p50": _rounded(quantile(0.5, recent), 6),
                             "p99": _rounded(quantile(0.99, recent), 6),
                             "count": int(recent[-1][1]) if recent else 0}
        return {"windows": windows, "latency": latency, "series": series(kept),
                "sample_seconds": self.interval}


def series(kept: Iterable[Sample]) -> list[dict[str, Any]]:
    """One point per pair of successive samples: its end, requests/s, hit ratio."""
    points: list[dict[str, Any]] = []
    previous: Sample | None = None
    for s in kept:
        if previous is not None and s.at > previous.at:
            moved = delta(s, previous)
            points.append({"at": round(s.at, 3),
                           "requests_per_second": round(requests(moved) / (s.at - previous.at), 3),
                           "hit_ratio": _rounded(ratio(moved))})
        previous = s
    return points


def _start_of(kept: list[Sample], since: float) -> Sample | None:
    """The newest sample at or before `since`, else the oldest (a window not yet full)."""
    if not kept:
        return None
    found = kept[0]
    for s in kept:
        if s.at > since:
            break
        found = s
    return found


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)
