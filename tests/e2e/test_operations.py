"""Operating the cache: purge (CLI and PURGE), --list, --stats, access log, metrics, commands,
each against a real store and a real running proxy."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from support.client import fetch
from support.origin import Origin, Reply, Seen, free_port
from support.polling import wait_until
from support.proxy import Proxy, cli
from support.web import WebSession

FRESH = [("Cache-Control", "max-age=600")]


def json_of(*args: str) -> Any:
    done = cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_cli_purge_url_path_and_prefix_while_proxy_serves(origin: Origin, proxy: Proxy) -> None:
    for path in ("/p", "/api/a", "/api/b", "/keep"):
        origin.route(path, 200, FRESH, path.encode())
        assert fetch(proxy.url + path).x_cache == "MISS"
        assert fetch(proxy.url + path).x_cache == "HIT"
    cache = str(proxy.cache_dir)

    done = cli("--cache-dir", cache, "--purge", "/p")
    assert done.returncode == 0 and "purged 1 response for /p" in done.stdout
    assert fetch(proxy.url + "/p").x_cache == "MISS"
    assert origin.count("/p") == 2

    assert json_of("--cache-dir", cache, "--purge", origin.url + "/p") == {
        "store": cache, "purged": {origin.url + "/p": 1},
        "matched": {origin.url + "/p": origin.url + "/p"}}
    assert json_of("--cache-dir", cache, "--purge-prefix", "/api/")["purged"] == {"/api/*": 2}
    for path in ("/p", "/api/a", "/api/b"):
        assert fetch(proxy.url + path).x_cache == "MISS"
    assert fetch(proxy.url + "/keep").x_cache == "HIT"
    assert origin.count("/keep") == 1

    fetch(proxy.url + "/p")
    # The proxy's own URL, as copied from a browser: matched by path against the stored origin.
    done = cli("--cache-dir", cache, "--purge", proxy.url + "/p")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"caching-proxy: purged 1 response for {proxy.url}/p (matched /p at {origin.url})")
    assert fetch(proxy.url + "/p").x_cache == "MISS"
    done = cli("--cache-dir", cache, "--purge", proxy.url + "/nothing-stored")
    assert "purged 0 responses for" in done.stdout
    bad = cli("--cache-dir", cache, "--purge", "nothing-like-a-url")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "give a URL or a /path" in bad.stderr


def test_purge_method_from_loopback_never_reaches_the_origin(origin: Origin, proxy: Proxy) -> None:
    origin.route("/v", handler=lambda s: Reply(200, [*FRESH, ("Vary", "Accept")], b"v"))
    for accept in ("a/b", "c/d"):
        fetch(proxy.url + "/v", headers={"Accept": accept})
    origin.route("/g/1", 200, FRESH, b"1")
    origin.route("/g/2", 200, FRESH, b"2")
    fetch(proxy.url + "/g/1")
    fetch(proxy.url + "/g/2")

    purged = fetch(proxy.url + "/v", method="PURGE")
    assert purged.status == 200 and json.loads(purged.body) == {"purged": 2, "path": "/v"}
    assert fetch(proxy.url + "/v", method="PURGE").status == 404  # nothing left
    assert json.loads(fetch(proxy.url + "/g/*", method="PURGE").body)["purged"] == 2
    assert fetch(proxy.url + "/v", headers={"Accept": "a/b"}).x_cache == "MISS"
    assert [s.method for s in origin.seen].count("PURGE") == 0


def test_purge_secret_required_when_configured(origin: Origin, make_proxy: Any) -> None:
    proxy = make_proxy("--purge-secret", "s3cret")
    origin.route("/s", 200, FRESH, b"s")
    fetch(proxy.url + "/s")
    assert fetch(proxy.url + "/s", method="PURGE").status == 403  # loopback alone is not enough
    wrong = fetch(proxy.url + "/s", method="PURGE", headers={"X-Purge-Secret": "guess"})
    assert wrong.status == 403
    assert fetch(proxy.url + "/s").x_cache == "HIT"
    right = fetch(proxy.url + "/s", method="PURGE", headers={"X-Purge-Secret": "s3cret"})
    assert right.status == 200 and json.loads(right.body)["purged"] == 1
    assert [s.method for s in origin.seen] == ["GET"]


def revalidating(seen: Seen) -> Reply:
    if seen.header("If-None-Match") == '"r1"':
        return Reply(304, [("ETag", '"r1"'), ("Cache-Control", "max-age=0")])
    return Reply(200, [("ETag", '"r1"'), ("Cache-Control", "max-age=0")], b"r")


def test_stats_count_known_traffic_exactly(origin: Origin, proxy: Proxy) -> None:
    origin.route("/s1", 200, FRESH, b"one")
    origin.route("/s2", 200, [("Cache-Control", "no-store")], b"two")
    origin.route("/e", 500, [], b"boom")
    origin.route("/r", handler=revalidating)
    statuses = [fetch(proxy.url + p).x_cache for p in ("/s1", "/s1", "/s1", "/s2", "/s2")]
    assert statuses == ["MISS", "HIT", "HIT", "MISS", "MISS"]
    assert fetch(proxy.url + "/s1", method="POST", body=b"x").status == 200  # passed; invalidates
    assert fetch(proxy.url + "/s1").x_cache == "MISS"
    assert fetch(proxy.url + "/e").status == 500
    assert fetch(proxy.url + "/r").x_cache == "MISS"
    revalidated = fetch(proxy.url + "/r")
    assert revalidated.body == b"r" and "fwd-status=304" in (revalidated.header("Cache-Status") or "")
    proxy.stop()  # the counters of a stopped proxy are all written

    stats = json_of("--cache-dir", str(proxy.cache_dir), "--stats")["stats"]
    assert stats == {
        "entries": 2, "bytes": stats["bytes"], "hits": 2, "collapsed": 0, "stale": 0,
        "misses": 6, "revalidated": 1, "passed": 1, "unavailable": 0, "origin_errors": 1,
        "bytes_served": stats["bytes_served"], "responses_1xx": 0, "responses_2xx": 9,
        "responses_3xx": 0, "responses_4xx": 0, "responses_5xx": 1, "evicted_expiry": 0,
        "evicted_lru": 0, "store_timeouts": 0, "store_down_seconds": 0.0,
        "hit_ratio": round(2 / 9, 4),
    }
    assert stats["bytes_served"] > 0
    assert stats["bytes"] > len(b"one") + len(b"r")
    human = cli("--cache-dir", str(proxy.cache_dir), "--stats")
    assert "hit ratio      22.2%" in human.stdout and "misses         6" in human.stdout


def test_stats_of_a_running_proxy_within_a_second(origin: Origin, proxy: Proxy) -> None:
    origin.route("/x", 200, FRESH, b"x")
    for _ in range(3):
        fetch(proxy.url + "/x")

    def seen() -> bool:
        stats = json_of("--cache-dir", str(proxy.cache_dir), "--stats")["stats"]
        return bool(stats["hits"] == 2 and stats["misses"] == 1)

    wait_until(seen, timeout=5)


def test_list_shows_urls_status_size_age_ttl_variants(origin: Origin, proxy: Proxy) -> None:
    origin.route("/l", 200, [("Cache-Control", "max-age=100"), ("Vary", "Accept")], b"list")
    origin.route("/m", 404, [("Cache-Control", "max-age=50")], b"")
    fetch(proxy.url + "/l", headers={"Accept": "a/b"})
    fetch(proxy.url + "/l", headers={"Accept": "c/d"})
    fetch(proxy.url + "/m")
    rows = json_of("--cache-dir", str(proxy.cache_dir), "--list")["entries"]
    base = f"http://127.0.0.1:{origin.port}"
    assert [(r["url"], r["status"], r["variants"], r["vary"]) for r in rows] == [
        (base + "/l", 200, 2, {"accept": "a/b"}), (base + "/l", 200, 2, {"accept": "c/d"}),
        (base + "/m", 404, 1, {}),
    ]
    assert all(0 <= r["age"] <= 5 for r in rows)
    assert 90 <= rows[0]["ttl"] <= 100 and 40 <= rows[2]["ttl"] <= 50
    assert rows[0]["size"] > len(b"list")
    human = cli("--cache-dir", str(proxy.cache_dir), "--list").stdout.splitlines()
    assert human[0].split() == ["URL", "STATUS", "SIZE", "AGE", "TTL", "VARIANTS", "VARY"]
    assert len(human) == 4 and human[3].startswith(base + "/m  404")
    assert [line.split()[-1] for line in human[1:]] == ["accept=a/b", "accept=c/d", "-"]


def access_lines(proxy: Proxy, marker: str) -> list[str]:
    return [line for line in proxy.lines if marker in line]


def test_access_log_text_json_and_quiet(origin: Origin, make_proxy: Any, tmp_path: Path) -> None:
    origin.route("/a", 200, FRESH, b"abc")
    text = make_proxy(cache_dir=tmp_path / "c1")
    fetch(text.url + "/a")
    fetch(text.url + "/a")
    wait_until(lambda: len(access_lines(text, " /a ")) == 2)
    miss, hit = access_lines(text, " /a ")
    assert " GET /a 200 MISS " in miss and " GET /a 200 HIT " in hit
    assert '"caching-proxy; hit; ttl=' in hit and " 3 " in hit and hit.endswith("ms")

    as_json = make_proxy("--log-format", "json", cache_dir=tmp_path / "c2")
    fetch(as_json.url + "/a")
    wait_until(lambda: len(access_lines(as_json, '"path": "/a"')) == 1)
    record = json.loads(access_lines(as_json, '"path": "/a"')[0])
    assert {k: record[k] for k in ("method", "path", "status", "x_cache", "bytes")} == {
        "method": "GET", "path": "/a", "status": 200, "x_cache": "MISS", "bytes": 3}
    assert record["cache_status"].startswith("caching-proxy; fwd=uri-miss; stored")
    assert record["ms"] >= 0 and record["time"].endswith("Z")

    quiet = make_proxy("--quiet", cache_dir=tmp_path / "c3")
    fetch(quiet.url + "/a")
    fetch(quiet.url + "/a")
    time.sleep(0.3)
    assert access_lines(quiet, "/a") == []


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_metrics_scrape(origin: Origin, make_proxy: Any) -> None:
    port = free_port()
    proxy = make_proxy("--metrics-port", str(port))
    origin.route("/m", 200, FRESH, b"m" * 100)
    for _ in range(4):
        fetch(proxy.url + "/m")
    values = scrape(port)
    assert values["caching_proxy_hits_total"] == 3
    assert values["caching_proxy_misses_total"] == 1
    assert values["caching_proxy_origin_errors_total"] == 0
    assert values["caching_proxy_hit_ratio"] == 0.75
    assert values["caching_proxy_store_entries"] == 1
    assert values["caching_proxy_store_bytes"] >= 100
    assert values['caching_proxy_request_duration_seconds_count{x_cache="HIT"}'] == 3
    assert values['caching_proxy_request_duration_seconds_count{x_cache="MISS"}'] == 1
    assert listening_addresses(port) == ["127.0.0.1"]  # loopback only


def listening_addresses(port: int) -> list[str]:
    """Local addresses of the IPv4 sockets listening on `port` (Linux /proc/net/tcp)."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, _, hex_port = local.partition(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.append(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def test_commands_from_mitmweb(origin: Origin, tmp_path: Path) -> None:
    origin.route("/c", 200, FRESH, b"c")
    web_port = free_port()
    with Proxy(origin.url, tmp_path / "cache", "--web", "--web-port", str(web_port)) as proxy:
        fetch(proxy.url + "/c")
        fetch(proxy.url + "/c")
        # A browser's session, opened at the start-up line's URL (mitmproxy 12: its token).
        web = WebSession(proxy)
        assert web.base == f"http://127.0.0.1:{web_port}"

        def command(name: str, *arguments: str) -> Any:
            return web.post_json(f"/commands/{name}", {"arguments": list(arguments)})

        stats = json.loads(command("cache.stats")["value"])
        assert (stats["hits"], stats["misses"], stats["entries"]) == (1, 1, 1)
        assert command("cache.purge", "/c")["value"] == "purged 1 response for /c"
        assert fetch(proxy.url + "/c").x_cache == "MISS"
        assert command("cache.clear")["value"].startswith("cleared 1 entries")
        assert fetch(proxy.url + "/c").x_cache == "MISS"
    assert origin.count("/c") == 3


def test_stats_count_collapsed_stale_and_origin_failures(origin: Origin, proxy: Proxy) -> None:
    from concurrent.futures import ThreadPoolExecutor

    origin.route("/slow", handler=lambda _: Reply(200, FRESH, b"slow", delay=1.0))
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: fetch(proxy.url + "/slow", timeout=30), range(6)))
    collapsed = sum("; collapsed" in (a.header("Cache-Status") or "") for a in answers)
    hits = sum(a.x_cache == "HIT" for a in answers) - collapsed
    assert origin.count("/slow") == 1 and collapsed >= 1
    origin.route("/sie", 200, [("Cache-Control", "max-age=1, stale-if-error=600")], b"old")
    fetch(proxy.url + "/sie")
    time.sleep(1.1)
    origin.route("/sie", 503, [], b"down")
    stale = fetch(proxy.url + "/sie")
    assert (stale.status, stale.body, stale.x_cache) == (200, b"old", "HIT")
    proxy.stop()
    stats = json_of("--cache-dir", str(proxy.cache_dir), "--stats")["stats"]
    assert {k: stats[k] for k in ("collapsed", "hits", "misses", "stale", "origin_errors")} == {
        "collapsed": collapsed, "hits": hits, "misses": 2, "stale": 1, "origin_errors": 1}


def test_clear_reports_the_bytes_that_stats_showed(origin: Origin, proxy: Proxy) -> None:
    for path in ("/s1", "/s2"):
        origin.route(path, 200, FRESH, b"z" * 3000)
        assert fetch(proxy.url + path).x_cache == "MISS"
    cache = str(proxy.cache_dir)
    shown = json_of("--cache-dir", cache, "--stats")["stats"]
    cleared = json_of("--cache-dir", cache, "--clear-cache")["cleared"]
    assert shown["entries"] == cleared["entries"] == 2
    assert shown["bytes"] == cleared["bytes"] >= 6000
    assert json_of("--cache-dir", cache, "--stats")["stats"]["entries"] == 0
