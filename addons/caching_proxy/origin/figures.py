"""What the origin gate has seen, for `/stats` (admin API) and `/metrics`: requests in flight and
queued, refused by the budget, 429s, pauses, the health state, and the origin's latency.

All of it is this process's own (with --workers N, the serving worker's: these figures are not
written to the store), read from the event loop's thread or the admin thread without locks:
each figure is one attribute read, so a scrape may mix figures a moment apart, never a torn one.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from caching_proxy.origin.gate import OriginGate

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
HEALTH_STATES = ("unchecked", "up", "down")


class Latency:
    """A histogram of the origin's time to its response head, from when the request was let go
    (after any queue)."""

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last: above every bucket
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative, as Prometheus wants them, ending with +Inf."""
        found, running = [], 0
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), self.counts, strict=True):
            running += count
            found.append((bound, float(running)))
        return found


def origin_stats(gate: OriginGate) -> dict[str, Any]:
    """The `origin` object of `/stats`."""
    budget, backoff, health = gate.budget, gate.backoff, gate.health
    return {
        "offline": gate.offline,
        "health": health.state,
        "health_checks": health.checks,
        "seconds_down": round(health.seconds_down(), 3),
        "in_flight": budget.in_flight,
        "queued": budget.queued,
        "admitted": budget.admitted,
        "refused_by_budget": budget.refused,
        "responses_429": gate.seen_429,
        "pauses": backoff.pauses,
        "paused_seconds": round(backoff.paused_seconds, 3),
        "pause_left_seconds": round(backoff.local_remaining(), 3),
        "answered_without_origin": dict(gate.answered),
        "latency_seconds_sum": round(gate.latency.total, 6),
        "latency_count": sum(gate.latency.counts),
    }


class OriginCollector(Collector):
    def __init__(self, gate: OriginGate) -> None:
        self.gate = gate

    def collect(self) -> Iterator[Metric]:
        gate = self.gate
        budget, backoff, health = gate.budget, gate.backoff, gate.health

        def gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"caching_proxy_origin_{name}", text, value=value)

        def counter(name: str, text: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(f"caching_proxy_origin_{name}", text, value=value)

        yield gauge("in_flight", "Requests in flight to the origin (this process).",
                    budget.in_flight)
        yield gauge("queued", "Requests waiting for the origin budget.", budget.queued)
        yield counter("refused", "Requests the origin budget refused after the queue timeout.",
                      budget.refused)
        yield counter("responses_429", "429 Too Many Requests answers from the origin.",
                      gate.seen_429)
        yield counter("pause_seconds", "Seconds of pause the origin asked for (Retry-After, "
                      "or the backoff), summed.", backoff.paused_seconds)
        yield gauge("pause_left_seconds", "Seconds left of the pause in effect.",
                    backoff.local_remaining())
        without = CounterMetricFamily(
            "caching_proxy_origin_not_asked", "Requests answered without the origin, by why.",
            labels=["reason"])
        for reason, count in gate.answered.items():
            without.add_metric([reason], count)
        yield without
        state = GaugeMetricFamily("caching_proxy_origin_health",
                                  "1 for the origin's health state now.", labels=["state"])
        for name in HEALTH_STATES:
            state.add_metric([name], 1.0 if health.state == name else 0.0)
        yield state
        yield counter("down_seconds", "Seconds the origin was marked down by health checks.",
                      health.seconds_down())
        yield gauge("offline", "1 while --offline (the origin is never asked).",
                    1.0 if gate.offline else 0.0)
        latency = gate.latency
        yield HistogramMetricFamily(
            "caching_proxy_origin_latency_seconds",
            "The origin's time to its response head, after any queue.",
            buckets=latency.buckets(), sum_value=latency.total)
