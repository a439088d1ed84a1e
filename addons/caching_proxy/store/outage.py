"""When a network store that did not answer in time is down, and when it is only the event loop
that was late: the evidence rule GuardedStore follows (no I/O here; the clock is passed in).

One slow answer is no outage. On a busy proxy the loop itself can run a callback 100 ms late,
and a call that timed out then says nothing of the store. So:

- a timeout whose timer ran late by LOOP_LATE_SHARE of the timeout or more is the loop's: counted
  (`timeouts`, `loop_late`), never evidence;
- on the first timeout that was not the loop's, one probe call goes with a longer bound
  (`probe_bound`), and calls pass through at once until it comes back (so a request meets one
  timeout, not one per call it makes): an answer lifts that, none declares the store down;
- DOWN_AFTER timeouts in a row that were not the loop's declare it down too;
- any answer resets the count; while down, calls pass through at once for SILENT_SECONDS, then
  are tried again; the time from being declared down to the next answer is `down_seconds`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DOWN_AFTER = 3
LOOP_LATE_SHARE = 0.25
SILENT_SECONDS = 1.0


def probe_bound(timeout: float) -> float:
    """How long the probe waits: long enough that a slow loop cannot fail it."""
    return max(1.0, 4 * timeout)


@dataclass
class Evidence:
    timeout: float
    in_a_row: int = 0
    down_since: float | None = None
    silent_until: float = 0.0
    probing: bool = False
    timeouts: int = 0  # every call that timed out
    loop_late: int = 0  # of which the loop's
    down_seconds: float = 0.0
    _reported: dict[str, float] = field(default_factory=dict)

    def silent(self, now: float) -> bool:
        """Whether calls pass through without waiting (the store was just declared down)."""
        return now < self.silent_until

    def timed_out(self, late: float, now: float) -> str:
        """A call timed out, its timer `late` seconds behind: "loop" (not evidence), "probe"
        (the caller sends the one probe), "down" (declared down now) or "counted"."""
        self.timeouts += 1
        if late >= LOOP_LATE_SHARE * self.timeout:
            self.loop_late += 1
            return "loop"
        self.in_a_row += 1
        if self.in_a_row >= DOWN_AFTER:
            self._down(now)
            return "down"
        if not self.probing:
            self.probing = True
            self.silent_until = max(self.silent_until, now + probe_bound(self.timeout))
            return "probe"
        return "counted"

    def probed(self, answered: bool, now: float) -> None:
        self.probing = False
        if answered:
            self.answered(now)
            if self.down_since is None:
                self.silent_until = 0.0
        else:
            self._down(now)

    def answered(self, now: float) -> None:
        self.in_a_row = 0
        if self.down_since is not None:
            self.down_seconds += now - self.down_since
            self.down_since = None

    def failed(self, now: float) -> None:
        """The medium failed outright (refused, reset): that is evidence at once."""
        self._down(now)

    def _down(self, now: float) -> None:
        self.in_a_row = 0
        if self.down_since is None:
            self.down_since = now
        self.silent_until = now + SILENT_SECONDS

    def counts(self, now: float) -> dict[str, int]:
        """What changed since the last call, as the persisted counters take it: timeouts and
        milliseconds down (an outage still going on counts up to now)."""
        ongoing = 0.0 if self.down_since is None else now - self.down_since
        figures = {"store_timeouts": float(self.timeouts),
                   "store_down_ms": (self.down_seconds + ongoing) * 1000}
        deltas = {name: int(value - self._reported.get(name, 0.0))
                  for name, value in figures.items()}
        for name, delta in deltas.items():
            self._reported[name] = self._reported.get(name, 0.0) + delta
        return {name: delta for name, delta in deltas.items() if delta}
