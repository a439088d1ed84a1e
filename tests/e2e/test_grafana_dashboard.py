"""The Grafana dashboard in docs/grafana (issue 33, item 13): every query names only metrics a
real proxy exports, checked against that proxy's own /metrics."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from support.client import fetch
from support.origin import Origin, free_port
from support.proxy import ROOT, Proxy

DASHBOARD = ROOT / "docs" / "grafana" / "caching-proxy.json"
# PromQL's own words, where a query names no metric: its aggregations' label lists, label
# matchers, ranges, strings and function calls are taken out before the names are read.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
            "or", "unless", "offset"}
IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def queries() -> list[str]:
    found = [target["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"]
             for target in panel["targets"]]
    assert found, "the dashboard has no queries"
    return found


def metric_names(expr: str) -> set[str]:
    text = re.sub(r'"[^"]*"', "", expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", text)
    text = re.sub(r"[A-Za-z_]+\s*\(", "(", text)  # function names
    return {name for name in IDENTIFIER.findall(text) if name not in KEYWORDS}


def exported(port: int) -> set[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        families = text_string_to_metric_families(r.read().decode())
        return {s.name for family in families for s in family.samples}


def test_every_query_names_metrics_the_proxy_exports(origin: Origin, tmp_path: Path) -> None:
    port = free_port()
    origin.route("/d", 200, [("Cache-Control", "max-age=60")], b"d")
    with Proxy(origin.url, tmp_path / "cache", "--metrics-port", str(port)) as proxy:
        fetch(proxy.url + "/d")
        fetch(proxy.url + "/d")  # a MISS and a HIT: the latency histogram has series
        names = exported(port)
    for expr in queries():
        used = metric_names(expr)
        assert used, f"no metric in {expr!r}"
        assert used <= names, f"{expr!r} names {used - names}, not exported"


def test_the_name_reader_finds_names_and_only_names() -> None:
    # What the check above relies on: a misspelt name is found, PromQL's words are not.
    assert metric_names('histogram_quantile(0.95, sum by (le, x_cache) '
                        '(rate(caching_proxy_request_duration_seconds_bucket[5m])))') == {
        "caching_proxy_request_duration_seconds_bucket"}
    assert metric_names('sum by (code) (rate(caching_proxy_respones_total{code="5xx"}[1m]))'
                        ) == {"caching_proxy_respones_total"}
