"""The origin budget's figures, printed: the runs tests/e2e/test_origin_budget*.py assert on (a
crowd through --origin-rate 5 against an origin limited to 6 requests a second, alone, under
--workers 2 and as two instances on one Redis; an origin that always says 429; a hot URL
refreshed ahead), with their numbers, for notes and for people.

    cd tests && PYTHONPATH=../addons ../.venv/bin/python -m support.origin_figures
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from support.client import fetch
from support.limited_origin import Answers, LimitedOrigin, crowd
from support.origin import Origin
from support.proxy import Proxy
from support.redis_server import RedisServer

PATHS = [f"/item/{i}" for i in range(200)]
BUDGET = ("--origin-rate", "5", "--origin-queue-timeout", "2", "--quiet")


def show(name: str, limited: LimitedOrigin, answers: list[Answers]) -> None:
    statuses: Counter[str] = Counter()
    for got in answers:
        statuses.update(got.statuses)
    print(f"{name}: origin requests {len(limited.arrivals)}, busiest second "
          f"{limited.busiest_second()}, 429s {limited.refused}; client answers "
          f"{sum(statuses.values())} {dict(statuses)}; no answer "
          f"{sum(len(a.failures) for a in answers)}; longest wait "
          f"{max(a.longest for a in answers):.2f} s")


def crowds(work: Path) -> None:
    limited = LimitedOrigin(limit=6, retry_after=2)
    with Proxy(limited.url, work / "c1", *BUDGET) as proxy:
        show("one proxy", limited, [crowd(proxy.port, PATHS, 50, 10)])
    limited.stop()
    limited = LimitedOrigin(limit=6, retry_after=2)
    with Proxy(limited.url, work / "c2", "--workers", "2", *BUDGET) as proxy:
        show("--workers 2", limited, [crowd(proxy.port, PATHS, 50, 10)])
    limited.stop()
    if shutil.which("redis-server") is None:
        return
    redis = RedisServer(work / "redis").start()
    limited = LimitedOrigin(limit=6, retry_after=2)
    proxies = [Proxy(limited.url, work / f"r{i}", "--store", redis.url, *BUDGET).start()
               for i in (1, 2)]
    results: list[Answers] = []
    threads = [threading.Thread(target=lambda port=p.port: results.append(
        crowd(port, PATHS, 25, 10))) for p in proxies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    for p in proxies:
        p.stop()
    show("two instances on one Redis", limited, results)
    limited.stop()
    redis.stop()


def always_429(work: Path) -> None:
    cut_off = LimitedOrigin(always_429=True, retry_after=3)
    with Proxy(cut_off.url, work / "c3", "--quiet") as proxy:
        answers = crowd(proxy.port, PATHS, 10, 7)
    first = cut_off.arrivals[0]
    print(f"always 429 Retry-After 3, 10 clients for 7 s: {sum(answers.statuses.values())} "
          f"client requests, origin arrivals at "
          f"{[round(t - first, 2) for t in cut_off.arrivals]} s")
    cut_off.stop()


def hot(work: Path) -> None:
    origin = Origin()
    origin.route("/hot", headers=[("Cache-Control", "max-age=2")], body=b"hot\n")
    labels: list[tuple[str | None, str | None]] = []
    with Proxy(origin.url, work / "c4", "--quiet") as proxy:
        started = time.monotonic()
        while time.monotonic() - started < 20:
            answer = fetch(proxy.url + "/hot")
            labels.append((answer.header("X-Cache"), answer.header("Cache-Status")))
            time.sleep(0.02)
    not_hit = sum(1 for x_cache, _ in labels[1:] if x_cache != "HIT")
    stale = sum(1 for _, status in labels[1:] if "ttl=-" in (status or ""))
    print(f"hot URL max-age=2 for 20 s at about {len(labels) / 20:.0f} requests/s: "
          f"{len(labels)} requests, {not_hit} not HIT after the first, {stale} stale, "
          f"origin asked {origin.count('/hot')} times")
    origin.stop()


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="origin-figures-"))
    try:
        crowds(work)
        always_429(work)
        hot(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
