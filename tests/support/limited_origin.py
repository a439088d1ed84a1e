"""A rate-limited origin, as a metered API is: it keeps the arrival time of every request and
answers 429 with Retry-After past its limit; and a crowd of keep-alive clients that records
every answer it gets (used by tests/e2e/test_origin_budget*.py)."""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from support.origin import Origin, Reply, Seen


class LimitedOrigin:
    """At most `limit` requests in any one second; past it 429 with `Retry-After: retry_after`.
    `always_429`: every answer is that 429 (an origin that has cut the client off)."""

    def __init__(self, limit: int = 6, retry_after: int = 2, max_age: int = 60,
                 always_429: bool = False) -> None:
        self.limit = limit
        self.retry_after = retry_after
        self.max_age = max_age
        self.always_429 = always_429
        self.arrivals: list[float] = []
        self.refused = 0
        self._lock = threading.Lock()
        self.origin = Origin()
        self.origin.fallback = self._answer
        self.url = self.origin.url

    def _answer(self, seen: Seen) -> Reply:
        now = time.monotonic()
        with self._lock:
            self.arrivals.append(now)
            recent = sum(1 for t in self.arrivals if now - t < 1.0)
            over = self.always_429 or recent > self.limit
            if over:
                self.refused += 1
        if over:
            return Reply(429, [("Retry-After", str(self.retry_after))], b"slow down\n")
        return Reply(200, [("Cache-Control", f"max-age={self.max_age}")],
                     seen.path.encode() + b"\n")

    def busiest_second(self) -> int:
        """The most requests that arrived within any one second."""
        with self._lock:
            times = sorted(self.arrivals)
        most, start = 0, 0
        for end, t in enumerate(times):
            while t - times[start] >= 1.0:
                start += 1
            most = max(most, end - start + 1)
        return most

    def stop(self) -> None:
        self.origin.stop()


@dataclass
class Answers:
    statuses: Counter[str] = field(default_factory=Counter)  # "200 HIT", "503", ...
    failures: list[str] = field(default_factory=list)  # no answer: a reset, a timeout
    wrong: list[str] = field(default_factory=list)  # a 200 whose body is not its path's
    retry_afters: list[str] = field(default_factory=list)
    longest: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def crowd(port: int, paths: list[str], clients: int, seconds: float,
          timeout: float = 15.0) -> Answers:
    """`clients` threads, each on its own kept-alive connection, asking random `paths` for
    `seconds`; every answer (or its absence) recorded."""
    answers = Answers()
    stop_at = time.monotonic() + seconds

    def client(number: int) -> None:
        rng = random.Random(number)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        while time.monotonic() < stop_at:
            path = rng.choice(paths)
            started = time.monotonic()
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as e:
                with answers.lock:
                    answers.failures.append(f"{path}: {e!r}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
                continue
            took = time.monotonic() - started
            with answers.lock:
                answers.longest = max(answers.longest, took)
                label = str(response.status)
                if response.status == 200:
                    label += " " + (response.getheader("X-Cache") or "?")
                    if body != path.encode() + b"\n":
                        answers.wrong.append(path)
                elif response.status == 503:
                    answers.retry_afters.append(response.getheader("Retry-After") or "")
                answers.statuses[label] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + timeout + 5)
    return answers
