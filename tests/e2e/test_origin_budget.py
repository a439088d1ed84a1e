"""Made for a rate-limited origin: the origin budget, the pause a 429 asks for, refresh ahead and
--offline, against real origins started here that count (and time) every request they get."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.client import fetch
from support.limited_origin import LimitedOrigin, crowd
from support.origin import Origin, Reply, Seen, free_port
from support.polling import wait_until
from support.proxy import Proxy

PATHS = [f"/item/{i}" for i in range(200)]


@pytest.fixture
def limited() -> Iterator[LimitedOrigin]:
    server = LimitedOrigin(limit=6, retry_after=2)
    yield server
    server.stop()


def test_a_crowd_through_origin_rate_never_exceeds_the_limit(
        limited: LimitedOrigin, tmp_path: Path) -> None:
    with Proxy(limited.url, tmp_path / "cache", "--origin-rate", "5",
               "--origin-queue-timeout", "2", "--quiet") as proxy:
        answers = crowd(proxy.port, PATHS, clients=50, seconds=10)
    assert limited.busiest_second() <= 6, limited.busiest_second()
    assert limited.refused == 0
    assert not answers.failures and not answers.wrong
    # Every answer is stored, fetched, or 503 with Retry-After; none waited past the queue.
    assert set(answers.statuses) <= {"200 HIT", "200 MISS", "503"}, answers.statuses
    assert answers.statuses["200 MISS"] == len(limited.arrivals)
    assert answers.statuses["503"] > 0 and all(r.isdigit() for r in answers.retry_afters)
    assert answers.longest < 2 + 3, answers.longest
    # 5 a second while the crowd asked, and while its last requests waited in the queue (2 s).
    assert 30 <= len(limited.arrivals) <= 5 * (10 + 2) + 1, len(limited.arrivals)


def test_an_origin_that_always_says_429_is_asked_once_per_retry_after(tmp_path: Path) -> None:
    cut_off = LimitedOrigin(always_429=True, retry_after=3)
    try:
        with Proxy(cut_off.url, tmp_path / "cache", "--quiet") as proxy:
            answers = crowd(proxy.port, PATHS, clients=10, seconds=7)
    finally:
        cut_off.stop()
    # The ten clients' first requests meet an origin not yet known to refuse: they all go.
    # After that, one probe per Retry-After (at 3 s and 6 s), not one per client request.
    arrivals = sorted(cut_off.arrivals)
    seen = [round(t - arrivals[0], 2) for t in arrivals]
    # The first wave: at most one request per client, before any 429 was known. The probes
    # after it: one at a time, Retry-After apart (the first pause began with the wave's first
    # 429; the one at 6 s may fall past the 7 s of asking).
    wave = [t for t in arrivals if t - arrivals[0] < 2.5]
    probes = arrivals[len(wave):]
    assert len(wave) <= 10 and 1 <= len(probes) <= 2, seen
    assert all(b - a >= 2.9 for a, b in zip([wave[0], *probes], probes, strict=False)), seen
    assert sum(answers.statuses.values()) > 100  # the clients kept asking all along
    # The origin's own 429 reaches the client that asked; the others get 503 with the time left.
    assert set(answers.statuses) == {"429", "503"}, answers.statuses
    assert answers.statuses["429"] == len(cut_off.arrivals)
    assert {int(r) for r in answers.retry_afters} <= {1, 2, 3}


def test_a_stale_entry_answers_while_the_origin_asks_for_a_pause(
        origin: Origin, tmp_path: Path) -> None:
    refusing = threading.Event()

    def answer(_: Seen) -> Reply:
        if refusing.is_set():
            return Reply(429, [("Retry-After", "30")], b"slow down\n")
        return Reply(200, [("Cache-Control", "max-age=1")], b"kept\n")

    origin.route("/kept", handler=answer)
    origin.route("/other", handler=answer)
    with Proxy(origin.url, tmp_path / "cache", "--quiet") as proxy:
        assert fetch(proxy.url + "/kept").body == b"kept\n"
        time.sleep(1.2)  # stale now
        refusing.set()
        # The origin's 429 is not the answer: the stale entry is (--use-stale http_429).
        first = fetch(proxy.url + "/kept")
        assert (first.status, first.body) == (200, b"kept\n")
        assert "detail=stale-on-http-429" in str(first.header("Cache-Status"))
        # From then on the origin is not asked at all for 30 s, for any URL.
        asked = origin.count("/kept") + origin.count("/other")
        second = fetch(proxy.url + "/kept")
        assert (second.status, second.body) == (200, b"kept\n")
        assert "detail=origin-backoff" in str(second.header("Cache-Status"))
        assert second.header("X-Cache") == "HIT"
        nothing = fetch(proxy.url + "/other")
        assert nothing.status == 503 and 28 <= int(nothing.header("Retry-After") or 0) <= 30
        assert origin.count("/kept") + origin.count("/other") == asked


def test_a_hot_entry_is_refreshed_ahead_and_never_seen_stale(
        origin: Origin, tmp_path: Path) -> None:
    origin.route("/hot", headers=[("Cache-Control", "max-age=2")], body=b"hot\n")
    with Proxy(origin.url, tmp_path / "cache", "--quiet") as proxy:
        labels: list[str] = []
        started = time.monotonic()
        while time.monotonic() - started < 20:
            answer = fetch(proxy.url + "/hot")
            assert answer.body == b"hot\n"
            labels.append(f"{answer.header('X-Cache')} {answer.header('Cache-Status')}")
            time.sleep(0.02)  # 50 requests a second
    assert labels[0].startswith("MISS")
    later = labels[1:]
    assert len(later) > 500
    assert all(label.startswith("HIT") for label in later), [x for x in later if "HIT" not in x]
    assert not [label for label in later if "ttl=-" in label or "stale" in label]
    # About once per 2 s (refreshed in the last tenth of each lifetime, on average).
    assert 9 <= origin.count("/hot") <= 15, origin.count("/hot")


def test_offline_serves_what_is_stored_however_stale_and_504_for_the_rest(
        origin: Origin, tmp_path: Path) -> None:
    origin.route("/a", headers=[("Cache-Control", "max-age=1")], body=b"a\n")
    origin.route("/b", headers=[("Cache-Control", "max-age=600")], body=b"b\n")
    with Proxy(origin.url, tmp_path / "cache", "--quiet") as proxy:
        fetch(proxy.url + "/a")
        fetch(proxy.url + "/b")
    time.sleep(1.1)
    asked = len(origin.seen)
    with Proxy(origin.url, tmp_path / "cache", "--offline", "--quiet") as proxy:
        stale = fetch(proxy.url + "/a")
        assert (stale.status, stale.body) == (200, b"a\n")
        assert "detail=offline" in str(stale.header("Cache-Status"))
        assert fetch(proxy.url + "/b").header("X-Cache") == "HIT"
        assert fetch(proxy.url + "/never-seen").status == 504
        assert fetch(proxy.url + "/b", method="POST", body=b"x").status == 504
    assert len(origin.seen) == asked  # offline: the origin saw nothing


def test_health_checks_mark_the_origin_down_and_up(origin: Origin, tmp_path: Path) -> None:
    healthy = threading.Event()
    healthy.set()
    origin.route("/health", handler=lambda _: Reply(200 if healthy.is_set() else 500))
    origin.route("/page", headers=[("Cache-Control", "max-age=1")], body=b"page\n")
    origin.route("/new", headers=[("Cache-Control", "max-age=60")], body=b"new\n")
    with Proxy(origin.url, tmp_path / "cache", "--health-check", "/health",
               "--health-interval", "0.2", "--health-fails", "2") as proxy:
        assert fetch(proxy.url + "/page").body == b"page\n"
        wait_until(lambda: origin.count("/health") >= 2)
        healthy.clear()
        assert proxy.logged("origin is down", timeout=5)
        asked = origin.count("/page") + origin.count("/new")
        time.sleep(1.0)  # /page is stale now
        stale = fetch(proxy.url + "/page")
        assert (stale.status, stale.body) == (200, b"page\n")
        assert "detail=origin-down" in str(stale.header("Cache-Status"))
        refused = fetch(proxy.url + "/new")
        assert refused.status == 503 and refused.header("Retry-After") == "1"
        assert origin.count("/page") + origin.count("/new") == asked  # not asked while down
        healthy.set()
        assert proxy.logged("origin is up again", timeout=5)
        assert fetch(proxy.url + "/new").body == b"new\n"
        assert origin.count("/new") == 1


def test_origin_concurrency_bounds_requests_in_flight(origin: Origin, tmp_path: Path) -> None:
    lock = threading.Lock()
    in_flight, most = [0], [0]

    def slow(seen: Seen) -> Reply:
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(0.3)
        with lock:
            in_flight[0] -= 1
        return Reply(200, [("Cache-Control", "max-age=60")], seen.path.encode() + b"\n")

    origin.fallback = slow
    with Proxy(origin.url, tmp_path / "cache", "--origin-concurrency", "2", "--quiet") as proxy:
        answers = crowd(proxy.port, [f"/s{i}" for i in range(12)], clients=8, seconds=2)
    assert most[0] == 2
    assert not answers.failures and not answers.wrong
    assert set(answers.statuses) <= {"200 HIT", "200 MISS"}, answers.statuses
    # Each path about once: the waiters were coalesced or queued. (A request whose lane lookup
    # found nothing a moment before the fill was stored asks once more: cache/lookup.py.)
    assert 12 <= len(origin.seen) <= 14, [seen.path for seen in origin.seen]


def test_offline_switched_through_the_admin_api_and_origin_figures(
        origin: Origin, tmp_path: Path) -> None:
    origin.route("/kept", headers=[("Cache-Control", "max-age=600")], body=b"kept\n")
    origin.route("/busy", status=429, headers=[("Retry-After", "0")], body=b"slow\n")
    admin = free_port()
    with Proxy(origin.url, tmp_path / "cache", "--admin-port", str(admin),
               "--metrics-port", str(free_port()), "--quiet") as proxy:
        api = f"http://127.0.0.1:{admin}"
        fetch(proxy.url + "/kept")
        assert fetch(proxy.url + "/busy").status == 429
        stats = json.loads(fetch(api + "/stats").body)["origin"]
        assert stats["responses_429"] == 1 and stats["pauses"] == 1
        assert stats["latency_count"] == 2 and stats["health"] == "unchecked"
        assert stats["offline"] is False
        metrics = fetch(api + "/metrics").body.decode()
        assert "caching_proxy_origin_responses_429_total 1.0" in metrics
        assert 'caching_proxy_origin_latency_seconds_count 2.0' in metrics
        switched = fetch(api + "/offline", method="POST", body=b'{"on": true}',
                         headers={"Content-Type": "application/json"})
        assert json.loads(switched.body) == {"offline": True}
        asked = len(origin.seen)
        assert fetch(proxy.url + "/kept").header("X-Cache") == "HIT"
        assert fetch(proxy.url + "/elsewhere").status == 504
        assert len(origin.seen) == asked
        wrong = fetch(api + "/offline", method="POST", body=b'{"on": "yes"}',
                      headers={"Content-Type": "application/json"})
        assert wrong.status == 400
        fetch(api + "/offline", method="POST", body=b'{"on": false}',
              headers={"Content-Type": "application/json"})
        assert fetch(proxy.url + "/elsewhere").status == 404  # the origin's own answer again
        assert len(origin.seen) == asked + 1


@pytest.mark.parametrize("flags", [("--origin-rate", "fast"), ("--origin-burst", "0"),
                                   ("--origin-concurrency", "-1"),
                                   ("--origin-queue-timeout", "forever"),
                                   ("--refresh-ahead", "-2")])
def test_bad_budget_options_are_one_line_errors(flags: tuple[str, str], tmp_path: Path) -> None:
    from support.proxy import cli

    done = cli(*flags, "--origin", "http://127.0.0.1:9", "--cache-dir", str(tmp_path))
    assert done.returncode == 2
    assert flags[0] in done.stderr and len(done.stderr.strip().splitlines()) <= 3, done.stderr
