"""Large store reads and writes run off the event loop: other connections keep being answered."""

from __future__ import annotations

import gc
import http.client
import threading
import time

from support.origin import Origin
from support.proxy import Proxy

BIG = 50 * 1000 * 1000


def test_small_hits_answer_within_100ms_while_a_50mb_entry_is_stored_and_served(
    origin: Origin, proxy: Proxy
) -> None:
    origin.route("/big", 200, [("Cache-Control", "max-age=600")], b"B" * BIG)
    origin.route("/small", 200, [("Cache-Control", "max-age=600")], b"small")
    small = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    small.request("GET", "/small")
    small.getresponse().read()
    big_statuses: list[tuple[str | None, int]] = []

    def big_traffic() -> None:
        for _ in range(4):  # one miss that stores 50 MB, then hits that read it back
            conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
            conn.request("GET", "/big")
            answer = conn.getresponse()
            big_statuses.append((answer.getheader("X-Cache"), len(answer.read())))
            conn.close()

    worker = threading.Thread(target=big_traffic)
    latencies: list[float] = []
    # The measuring client's own garbage collection pauses are not the proxy's latency.
    gc.disable()
    try:
        worker.start()
        while worker.is_alive():
            started = time.perf_counter()
            small.request("GET", "/small")
            answer = small.getresponse()
            assert answer.read() == b"small" and answer.getheader("X-Cache") == "HIT"
            latencies.append(time.perf_counter() - started)
            time.sleep(0.005)
        worker.join()
    finally:
        gc.enable()
    small.close()
    assert big_statuses == [("MISS", BIG)] + [("HIT", BIG)] * 3
    assert origin.count("/big") == 1 and origin.count("/small") == 1
    print(f"small hits: {len(latencies)}, max {max(latencies) * 1000:.1f} ms")
    assert len(latencies) > 10
    assert max(latencies) < 0.1
