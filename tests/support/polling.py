"""The one polling helper: wait for a condition, bounded in time, failing with what was awaited."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, what: str = "the condition",
               interval: float = 0.01,
               ignore: tuple[type[BaseException], ...] = ()) -> None:
    """Return once `predicate()` is true; fail the test after `timeout` seconds. An exception
    of a type in `ignore` counts as "not yet" (a server still starting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except ignore:
            pass
        assert time.monotonic() < deadline, f"{what} not seen within {timeout:g} s"
        time.sleep(interval)
