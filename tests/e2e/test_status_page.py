"""The admin API's status page (`/`, `/status.js`) and its figures (`/status`), on a real proxy
with a real origin: the answers' security headers, the same Host and Origin checks as the rest
of the admin API, the page without the bearer token but its figures only with it, read-only;
and the page loaded in headless Chromium (Debian's chromium-headless-shell; skipped, saying so,
where it is not installed): its script ran under the page's own Content-Security-Policy (no
violation logged) and drew the figures and the hour's chart.

Not covered by Chromium: typing the token into the page's form (a --dump-dom run cannot type);
the page's message when /status refuses is checked instead."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from support.client import fetch
from support.origin import Origin, free_port
from support.polling import wait_until
from support.sockets import listening_sockets

CHROMIUM = shutil.which("chromium-headless-shell") or shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium-headless-shell is not installed; scripts/test installs it "
    "with apt where it can")


def admin_proxy(make_proxy: Any, *extra: str) -> tuple[Any, str]:
    port = free_port()
    return make_proxy("--admin-port", str(port), *extra), f"http://127.0.0.1:{port}"


def chromium_dom(url: str, profile: Path) -> tuple[str, str]:
    """The page's DOM after its script ran (a virtual 5 s: a few of its polls), and Chromium's
    log (its console messages, CSP violations among them)."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


def cell(dom: str, name: str) -> str:
    found = re.search(rf'<td id="v-{name}">([^<]*)</td>', dom)
    assert found, f"no {name} cell in the page"
    return found.group(1)


def test_page_and_script_are_static_with_strict_headers(make_proxy: Any) -> None:
    _, admin = admin_proxy(make_proxy)
    page = fetch(admin + "/")
    assert page.status == 200 and page.header("Content-Type") == "text/html; charset=utf-8"
    policy = page.header("Content-Security-Policy") or ""
    assert "script-src 'self';" in policy and "'unsafe-inline'" not in policy
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert re.search(r"style-src 'sha256-[A-Za-z0-9+/=]+';", policy)
    assert page.header("X-Content-Type-Options") == "nosniff"
    assert page.header("X-Frame-Options") == "DENY"
    html = page.body.decode()
    # No inline script and no resource from elsewhere: every src/href is this server's.
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/status.js" defer>']
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    script = fetch(admin + "/status.js")
    assert script.status == 200 and script.header("Content-Type") == \
        "text/javascript; charset=utf-8"
    assert script.header("Content-Security-Policy") == "default-src 'none'; frame-ancestors 'none'"
    code = script.body.decode()
    assert "innerHTML" not in code and "eval(" not in code and "textContent" in code
    assert fetch(admin + "/stats").header("X-Content-Type-Options") == "nosniff"


def test_page_keeps_the_admin_apis_checks(make_proxy: Any) -> None:
    _, admin = admin_proxy(make_proxy)
    assert fetch(admin + "/", headers={"Host": "evil.example"}).status == 421  # DNS rebinding
    assert fetch(admin + "/", headers={"Origin": "http://evil.example"}).status == 403
    posted = fetch(admin + "/", method="POST", body=b"{}",
                   headers={"Content-Type": "application/json"})
    assert posted.status == 405 and posted.header("Allow") == "GET"  # read-only


def test_with_a_secret_the_page_loads_but_its_figures_need_the_token(make_proxy: Any) -> None:
    _, admin = admin_proxy(make_proxy, "--purge-secret", "s3cret")
    assert fetch(admin + "/").status == 200 and fetch(admin + "/status.js").status == 200
    assert fetch(admin + "/status").status == 401
    assert fetch(admin + "/status", headers={"Authorization": "Bearer nope"}).status == 403
    given = fetch(admin + "/status", headers={"Authorization": "Bearer s3cret"})
    assert given.status == 200 and "windows" in json.loads(given.body)
    # The page's routes skip the token for GET only.
    assert fetch(admin + "/", method="POST", body=b"{}",
                 headers={"Content-Type": "application/json"}).status == 401


def test_status_has_the_stats_and_the_hours_figures(origin: Origin, make_proxy: Any) -> None:
    proxy, admin = admin_proxy(make_proxy, "--memory-size", "4m")
    origin.route("/s", 200, [("Cache-Control", "max-age=600")], b"s" * 100)

    def status() -> dict[str, Any]:
        found: dict[str, Any] = json.loads(fetch(admin + "/status").body)
        return found

    # The history's first sample, the windows' start, is taken once the store is open.
    wait_until(lambda: status()["windows"]["1m"] is not None, what="the first sample")
    for _ in range(4):
        fetch(proxy.url + "/s")
    wait_until(lambda: status()["counts"]["hits"] == 3, what="3 hits counted")
    found = status()
    assert found["entries"] == 1 and found["counts"]["misses"] == 1
    assert found["counts"]["origin_answers"] == 1
    assert found["windows"]["1m"]["hit_ratio"] == 0.75
    assert found["latency"]["hit"]["count"] == 3 and found["latency"]["hit"]["p99"] > 0
    assert found["latency"]["origin"]["count"] == 1
    tier = found["memory_tier"]
    assert tier["max_bytes"] == 4 * 1024 * 1024 and tier["bytes"] > 0
    assert json.loads(fetch(admin + "/stats").body)["memory_tier"] == tier


def test_under_workers_the_history_counts_every_worker(origin: Origin, make_proxy: Any) -> None:
    proxy, admin = admin_proxy(make_proxy, "--workers", "2")
    wait_until(lambda: listening_sockets(proxy.port) == 2, timeout=20, interval=0.1,
               what="both workers listening")
    origin.route("/w", 200, [("Cache-Control", "max-age=600")], b"w")

    def status() -> dict[str, Any]:
        found: dict[str, Any] = json.loads(fetch(admin + "/status").body)
        return found

    wait_until(lambda: status()["windows"]["1m"] is not None, what="the first sample")
    answers = [fetch(proxy.url + "/w").x_cache for _ in range(40)]  # a new connection each
    assert answers.count("MISS") == 1
    # The store's counters (every worker's, each flushed within a second) and the histograms of
    # both workers (multiprocess files): all 39 hits, whichever worker answered them.
    wait_until(lambda: status()["counts"]["hits"] == 39, what="every worker's hits counted")
    found = status()
    assert found["latency"]["hit"]["count"] == 39
    assert found["windows"]["1m"]["hit_ratio"] == 0.975


@needs_chromium
def test_chromium_runs_the_page_and_draws_the_figures(origin: Origin, make_proxy: Any,
                                                      tmp_path: Path) -> None:
    proxy, admin = admin_proxy(make_proxy)
    origin.route("/c", 200, [("Cache-Control", "max-age=600")], b"c")
    wait_until(lambda: json.loads(fetch(admin + "/status").body)["windows"]["1m"],
               what="the history's first sample")
    for _ in range(5):
        fetch(proxy.url + "/c")
    # The chart's first point needs two samples (one at start, the next SAMPLE_SECONDS later).
    wait_until(lambda: json.loads(fetch(admin + "/status").body)["series"], timeout=30,
               interval=0.5, what="the history's second sample")
    dom, log = chromium_dom(admin + "/", tmp_path / "profile")
    assert "Content Security Policy" not in log, log
    assert cell(dom, "store-entries") == "1"
    assert cell(dom, "hit-ratio-1-min") == "80.0%"
    assert re.fullmatch(r"[0-9.]+ ms / [0-9.]+ ms", cell(dom, "hit-latency-p50-p99"))
    assert cell(dom, "hit-s") == "0.00"  # no request between the page's polls
    assert cell(dom, "memory-tier") == "off"
    assert re.search(r'<polyline class="rps" points="[0-9.]+,[0-9.]+', dom)
    assert re.search(r'<polyline class="ratio" points="[0-9.]+,[0-9.]+', dom)
    assert '<p id="error"></p>' in dom


@needs_chromium
def test_chromium_page_says_when_it_lacks_the_token(make_proxy: Any, tmp_path: Path) -> None:
    _, admin = admin_proxy(make_proxy, "--purge-secret", "s3cret")
    dom, _ = chromium_dom(admin + "/", tmp_path / "profile")
    assert re.search(r'<p id="error">cannot read /status: send Authorization: Bearer', dom)
    assert "<tbody></tbody>" in dom  # no figure without the token
