"""The counters operators watch (issue 33, item 12) through real proxies: answers by status
class, bytes served, evictions (diskcache's size bound and expiry), uptime and open connections,
in --stats, /stats and /metrics; with --workers 2, /metrics covers both workers."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from support.client import fetch
from support.origin import Origin, free_port
from support.polling import wait_until
from support.proxy import Proxy, cli

FRESH = [("Cache-Control", "max-age=300")]
MakeProxy = Callable[..., Proxy]


def samples(port: int) -> dict[str, float]:
    """Every sample of a scrape, by name and labels as the exposition writes them."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            found[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return found


def stats(cache_dir: Path) -> dict[str, Any]:
    done = cli("--cache-dir", str(cache_dir), "--stats", "--json")
    assert done.returncode == 0, done.stderr
    figures: dict[str, Any] = json.loads(done.stdout)["stats"]
    return figures


def admin_stats(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
        figures: dict[str, Any] = json.loads(r.read())
    return figures


def test_status_classes_bytes_uptime_and_connections(origin: Origin,
                                                     make_proxy: MakeProxy) -> None:
    metrics_port, admin_port = free_port(), free_port()
    proxy = make_proxy("--metrics-port", str(metrics_port), "--admin-port", str(admin_port))
    origin.route("/ok", 200, FRESH, b"x" * 1000)
    origin.route("/gone", 404, [("Cache-Control", "no-store")], b"no")
    origin.route("/moved", 301, [("Location", "/ok"), ("Cache-Control", "no-store")], b"")
    origin.route("/boom", 503, [], b"down")
    for path in ("/ok", "/ok", "/ok", "/gone", "/moved", "/boom"):
        fetch(proxy.url + path)
    with socket.create_connection(("127.0.0.1", proxy.port)) as held:
        held.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        assert held.recv(65536).startswith(b"HTTP/1.1 200")
        # Counted once it was written to the store (once a second).
        wait_until(lambda: admin_stats(admin_port)["responses_2xx"] == 4, what="the counts")
        live = admin_stats(admin_port)
        assert live["connections_open"] == 1  # the held one (the admin API is not the proxy's)
        assert samples(metrics_port)["caching_proxy_connections_open"] == 1
    wait_until(lambda: samples(metrics_port)["caching_proxy_connections_open"] == 0,
               what="the held connection closed")
    assert {k: live[k] for k in ("responses_2xx", "responses_3xx", "responses_4xx",
                                 "responses_5xx", "bytes_served")} == {
        "responses_2xx": 4, "responses_3xx": 1, "responses_4xx": 1, "responses_5xx": 1,
        "bytes_served": 4000 + len(b"no") + len(b"down")}
    assert 0 < live["uptime_seconds"] < 600
    scraped = samples(metrics_port)
    assert scraped['caching_proxy_responses_total{code="2xx"}'] == 4
    assert scraped['caching_proxy_responses_total{code="5xx"}'] == 1
    assert scraped["caching_proxy_served_bytes_total"] == live["bytes_served"]
    assert scraped['caching_proxy_evictions_total{reason="lru"}'] == 0
    assert 0 < scraped["caching_proxy_uptime_seconds"] < 600
    proxy.stop()
    stored = stats(proxy.cache_dir)
    assert (stored["responses_2xx"], stored["bytes_served"]) == (4, live["bytes_served"])
    human = cli("--cache-dir", str(proxy.cache_dir), "--stats").stdout
    assert "responses 2xx  4" in human and "bytes served   3.9 KiB" in human


def test_evictions_by_size_and_by_expiry_are_counted(origin: Origin,
                                                      make_proxy: MakeProxy) -> None:
    # A 256 KiB store of 20 KiB answers: past a dozen, the least recently used go.
    proxy = make_proxy("--cache-size", "256k", "--set", "cache_keep_stale=0")
    for n in range(40):
        origin.route(f"/big{n}", 200, FRESH, b"b" * 20_000)
        assert fetch(proxy.url + f"/big{n}").x_cache == "MISS"
    wait_until(lambda: stats(proxy.cache_dir)["evicted_lru"] > 0, what="an LRU eviction")
    assert stats(proxy.cache_dir)["evicted_expiry"] == 0
    # Kept one second (max-age=1 and no stale time); diskcache removes expired rows as it
    # writes new ones.
    origin.route("/short", 200, [("Cache-Control", "max-age=1")], b"s")
    fetch(proxy.url + "/short")
    written = iter(range(1000))

    def expired_one() -> bool:
        n = next(written)
        origin.route(f"/w{n}", 200, FRESH, b"w")
        fetch(proxy.url + f"/w{n}")
        return bool(stats(proxy.cache_dir)["evicted_expiry"] > 0)

    wait_until(expired_one, timeout=15, what="an expired entry removed")


def test_metrics_cover_every_worker(origin: Origin, tmp_path: Path) -> None:
    port = free_port()
    origin.route("/w", 200, FRESH, b"w")
    with Proxy(origin.url, tmp_path / "cache", "--workers", "2", "--metrics-port",
               str(port)) as proxy:
        wait_until(lambda: samples(port), ignore=(OSError,), what="the metrics endpoint")
        # Each on a new connection: the kernel spreads them over both workers (40 to one
        # alone: one chance in 2^39).
        for _ in range(40):
            assert fetch(proxy.url + "/w").status == 200
        scraped = samples(port)
        latency = sum(v for k, v in scraped.items()
                      if k.startswith("caching_proxy_request_duration_seconds_count"))
        assert latency == 40  # both workers' own histograms, summed
        wait_until(lambda: samples(port)['caching_proxy_responses_total{code="2xx"}'] == 40,
                   what="both workers' counts")
        assert samples(port)["caching_proxy_connections_open"] == 0
