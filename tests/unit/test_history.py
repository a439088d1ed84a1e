"""The status history (ops/history.py) and --top's rows (ops/top.py), by an injected clock: the
quantile estimate from buckets, window deltas and hit ratios, the bounded ring, a failing
reader, reading a real prometheus-client registry, and the rows and plain block --top prints."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from caching_proxy.ops import history as h
from caching_proxy.ops import top

INF = float("inf")


def test_quantile_is_linear_within_its_bucket() -> None:
    buckets = ((0.01, 50.0), (0.1, 90.0), (1.0, 100.0), (INF, 100.0))
    assert h.quantile(0.5, buckets) == pytest.approx(0.01)
    assert h.quantile(0.25, buckets) == pytest.approx(0.005)  # half of the first bucket, from 0
    assert h.quantile(0.7, buckets) == pytest.approx(0.01 + 0.09 * 0.5)
    assert h.quantile(0.99, buckets) == pytest.approx(0.1 + 0.9 * 0.9)


def test_quantile_without_observations_or_in_inf() -> None:
    assert h.quantile(0.5, ()) is None
    assert h.quantile(0.5, ((0.1, 0.0), (INF, 0.0))) is None
    assert h.quantile(0.99, ((0.1, 1.0), (INF, 10.0))) == 0.1  # the highest finite bound


def test_bucket_delta_and_counter_delta_never_go_negative() -> None:
    assert h.bucket_delta(((0.1, 5.0), (INF, 9.0)), ((0.1, 2.0), (INF, 3.0))) == (
        (0.1, 3.0), (INF, 6.0))
    assert h.delta(h.Sample(2, {"hits": 1.0}), h.Sample(1, {"hits": 7.0})) == {"hits": 0.0}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sample(at: float, hits: float, misses: float, hit_le: float = 0.0) -> h.Sample:
    return h.Sample(at, {"hits": hits, "misses": misses, "origin_answers": misses},
                    hit_buckets=((0.001, hit_le), (INF, hit_le)))


def test_windows_ratios_rates_and_series() -> None:
    clock = Clock()
    readings = iter([sample(1000, 0, 0), sample(1010, 30, 10, 30), sample(1070, 130, 10, 130)])
    history = h.History(lambda at: next(readings), clock=clock)
    history.sample()
    clock.now = 1010
    history.sample()
    now = sample(1070, 130, 10, 130)
    figures = history.figures(now)
    one = figures["windows"]["1m"]
    assert one["seconds"] == 60.0  # from the sample at 1010
    assert one["hit_ratio"] == 1.0 and one["requests_per_second"] == pytest.approx(100 / 60, 1e-3)
    assert one["origin_per_second"] == 0.0
    five = figures["windows"]["5m"]
    assert five["seconds"] == 70.0  # not full yet: from the oldest sample
    assert five["hit_ratio"] == pytest.approx(130 / 140, 1e-3)
    assert figures["latency"]["hit"] == {"p50": 0.0005, "p99": 0.00099, "count": 100}
    assert figures["series"] == [{"at": 1010, "requests_per_second": 4.0, "hit_ratio": 0.75}]


def test_no_reading_no_figures_and_a_failing_reader_skips_a_sample() -> None:
    def failing(at: float) -> h.Sample:
        raise OSError("the store is down")

    history = h.History(failing, clock=Clock())
    assert history.sample() is None and not history.samples
    assert history.figures(None)["windows"] == {}
    empty = h.History(lambda at: None, clock=Clock())
    assert empty.sample() is None and not empty.samples


def test_the_ring_keeps_an_hour_at_most() -> None:
    clock = Clock()
    history = h.History(lambda at: sample(at, at, 0), clock=clock)
    for _ in range(h.KEEP + 50):
        clock.now += h.SAMPLE_SECONDS
        history.sample()
    assert len(history.samples) == h.KEEP
    assert history.samples[0].at == clock.now - (h.KEEP - 1) * h.SAMPLE_SECONDS
    assert len(history.figures(sample(clock.now + 1, 0, 0))["series"]) == h.KEEP - 1


class Hits(Collector):
    def __init__(self, hits: float) -> None:
        self.hits = hits

    def collect(self) -> Iterator[Metric]:
        for name, value in (("hits", self.hits), ("misses", 2.0)):
            family = CounterMetricFamily(f"caching_proxy_{name}", name)
            family.add_metric([], value)
            yield family


def test_read_takes_counters_and_hit_buckets_from_a_registry() -> None:
    registry = CollectorRegistry()
    assert h.read(registry, 1.0) is None  # no store counters: no sample
    registry.register(Hits(5.0))
    latency = Histogram(h.HIT_LATENCY.removesuffix("_bucket"), "x", ["x_cache"],
                        buckets=(0.01, 0.1), registry=registry)
    latency.labels("HIT").observe(0.005)
    latency.labels("MISS").observe(0.05)
    found = h.read(registry, 7.0)
    assert found is not None and found.at == 7.0
    assert found.counts["hits"] == 5.0 and found.counts["misses"] == 2.0
    assert found.hit_buckets == ((0.01, 1.0), (0.1, 1.0), (INF, 1.0))
    assert found.origin_buckets == ()


def test_top_rows_rates_between_two_polls_and_plain_block() -> None:
    before = {"at": 10.0, "counts": {"hits": 10, "misses": 4, "origin_answers": 4}}
    now = {"at": 12.0, "counts": {"hits": 30, "misses": 5, "origin_answers": 5},
           "uptime_seconds": 61.4, "entries": 3, "bytes": 2048, "evicted_lru": 2,
           "connections_open": 1, "memory_tier": {"bytes": 1024, "max_bytes": 4096},
           "windows": {"1m": {"hit_ratio": 0.5}, "5m": None},
           "latency": {"hit": {"p50": 0.0004, "p99": 0.002}}}
    rows = dict(top.figures(now, before))
    assert rows["hit/s"] == "10.0" and rows["miss/s"] == "0.5"
    assert rows["origin answers/s"] == "0.5"
    assert rows["hit ratio 1 min"] == "50.0%" and rows["hit ratio 5 min"] == "-"
    assert rows["hit latency p50 / p99"] == "0.4 ms / 2.0 ms"
    assert rows["origin latency p50 / p99"] == "- / -"
    assert rows["uptime"] == "61 s" and rows["store bytes"] == "2.0 KiB"
    assert rows["evictions"] == "2" and rows["memory tier"] == "1.0 KiB of 4.0 KiB"
    assert dict(top.figures(now, None))["hit/s"] == "-"
    block = top.plain(top.figures(now, before)).splitlines()
    assert block[1].split() == ["hit/s", "10.0"] and "\x1b" not in "".join(block)


@pytest.mark.parametrize(("host", "url"), [
    (None, "http://127.0.0.1:9"), ("0.0.0.0", "http://127.0.0.1:9"), ("::", "http://[::1]:9"),
    ("10.1.2.3", "http://10.1.2.3:9"), ("::1", "http://[::1]:9")])
def test_admin_url(host: str | None, url: str) -> None:
    assert top.admin_url(host, 9) == url
