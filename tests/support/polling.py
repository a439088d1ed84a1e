"""The one polling helper: wait for a condition, bounded in time, failing with what was awaited."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, what: str = "the condition",
               interval: float = 0.01) -> None:
    """Return once `predicate()` is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not seen within {timeout} s"
        time.sleep(interval)
