"""Large store reads and writes run off the event loop: other connections keep being answered.

Issue 5 sets the bound: while a 50 MB entry is stored and served, small hits on other connections
answer within 100 ms. The small hits are timed by a client in its own process, so that the test's
own threads (the origin writing 50 MB, the big client reading it) cannot pause the clock.
Measured on the 2-core dev box: with those store calls forced onto the loop, the slowest small
hit of a run took 200-400 ms (12 runs); off the loop, 30-68 ms, once 183 ms in a full-suite run
(a pause of the shared machine: the other 125 answers of that run took at most 61 ms).
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
from pathlib import Path

from support.origin import Origin
from support.proxy import Proxy

BIG = 50 * 1000 * 1000

# Sends GET /small on one kept-alive connection until the stop file appears; prints one JSON
# object: the latency of each answer and every answer that was not a small HIT.
SMALL_CLIENT = r"""
import http.client, json, os, sys, time
port, stop = int(sys.argv[1]), sys.argv[2]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
latencies, wrong = [], []
print("ready", flush=True)
while not os.path.exists(stop):
    started = time.perf_counter()
    conn.request("GET", "/small")
    answer = conn.getresponse()
    body = answer.read()
    latencies.append(time.perf_counter() - started)
    if body != b"small" or answer.getheader("X-Cache") != "HIT":
        wrong.append([answer.status, answer.getheader("X-Cache"), len(body)])
    time.sleep(0.005)
print(json.dumps({"latencies": latencies, "wrong": wrong}))
"""


def measure(origin: Origin, proxy: Proxy, stop: Path, big_path: str) -> list[float]:
    """Latencies of small hits on one connection while `big_path` (50 MB) is stored by one miss
    and read back by three hits on other connections."""
    origin.route(big_path, 200, [("Cache-Control", "max-age=600")], b"B" * BIG)
    small = subprocess.Popen(
        [sys.executable, "-c", SMALL_CLIENT, str(proxy.port), str(stop)],
        stdout=subprocess.PIPE, text=True,
    )
    assert small.stdout is not None and small.stdout.readline() == "ready\n"
    big_statuses: list[tuple[str | None, int]] = []

    def big_traffic() -> None:
        for _ in range(4):
            conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
            conn.request("GET", big_path)
            answer = conn.getresponse()
            big_statuses.append((answer.getheader("X-Cache"), len(answer.read())))
            conn.close()

    worker = threading.Thread(target=big_traffic)
    worker.start()
    worker.join(timeout=120)
    stop.touch()
    out, _ = small.communicate(timeout=30)
    stop.unlink()
    report = json.loads(out)
    assert big_statuses == [("MISS", BIG)] + [("HIT", BIG)] * 3
    assert origin.count(big_path) == 1 and origin.count("/small") == 1
    assert report["wrong"] == []
    latencies: list[float] = report["latencies"]
    assert len(latencies) > 10
    slowest = sorted(latencies)[-3:]
    print(f"small hits: {len(latencies)}, slowest {[round(t * 1000, 1) for t in slowest]} ms")
    return latencies


def test_small_hits_answer_within_100ms_while_a_50mb_entry_is_stored_and_served(
    origin: Origin, proxy: Proxy, tmp_path: Path
) -> None:
    origin.route("/small", 200, [("Cache-Control", "max-age=600")], b"small")
    warm = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    warm.request("GET", "/small")
    assert warm.getresponse().read() == b"small"
    warm.close()
    # A second try only when the first saw a late answer: a pause of the shared machine hits
    # one run at random, while a store call on the loop stalls small hits in every run
    # (measured: 1 to 3 answers over 100 ms in each of 6 runs with the calls forced on the loop).
    for attempt in ("/big", "/big-again"):
        latencies = measure(origin, proxy, tmp_path / "stop", attempt)
        if max(latencies) < 0.1:
            break
    assert max(latencies) < 0.1
