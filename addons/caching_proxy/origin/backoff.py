"""The pause after the origin said "too many requests": no request goes to it until the pause
ends, for any URL (policy/origin_budget.py decides how long).

Guarantees: a pause only grows while it lasts (a shorter Retry-After does not cut a longer one).
Where the store is shared (--workers, Redis) the pause is the store's (Schedules.hold_off): a
429 seen by one process pauses every process and instance, each of which reads it before
sending (one store read per forwarded request, only while the origin has paused someone
recently or the store is shared). If the store fails, this process's own pause still holds.
"""

from __future__ import annotations

import time

from caching_proxy.policy.origin_budget import backoff_for, retry_after_seconds
from caching_proxy.store.calls import HeldOff, HoldOff
from caching_proxy.store.guarded import GuardedStore

PAUSE_KEY = "origin-backoff"


class Backoff:
    """When a pause ends, one request (the probe) goes first; the others are held as during
    the pause until its answer comes (a new pause, or not), so that an origin that keeps saying
    429 sees one request per pause from this process, not one per waiting client."""

    def __init__(self) -> None:
        self._until = 0.0  # time.monotonic() this process's own pause ends
        self.paused_since_answer = False  # a pause was in effect since the origin last answered
        self.probe: str | None = None  # the id of the flow sent to try the origin again
        self._last = 0.0  # the last pause without Retry-After, doubled by the next
        self.pauses = 0  # answers that started or lengthened a pause
        self.paused_seconds = 0.0  # the seconds of pause they asked for, summed

    def settled(self) -> bool:
        """Whether an ordinary answer changes nothing here (no doubling, pause or probe)."""
        return not self._last and not self.paused_since_answer and self.probe is None

    def local_remaining(self) -> float:
        return max(0.0, self._until - time.monotonic())

    async def remaining(self, store: GuardedStore | None) -> float:
        """Seconds until the origin may be asked again (0: now)."""
        own = self.local_remaining()
        if own > 0 or store is None or not store.shared:
            return own
        shared = await store.call(HeldOff(PAUSE_KEY), 0.0)
        if shared > 0:
            self.paused_since_answer = True
        return shared

    def may_probe(self, flow_id: str) -> bool:
        """Once the pause is over: whether `flow_id` may go (no pause since the last answer,
        or it becomes the one probe); False while another probe is out."""
        if not self.paused_since_answer:
            return True
        if self.probe is None:
            self.probe = flow_id
        return self.probe == flow_id

    def probe_failed(self, flow_id: str) -> None:
        """The probe got no answer (the origin unreachable): the next request probes."""
        if self.probe == flow_id:
            self.probe = None

    async def observe(self, status: int, retry_after: str | None,
                      store: GuardedStore | None) -> float | None:
        """An answer from the origin: start (or lengthen) the pause it asks for; the pause's
        seconds, or None when the answer asks none (an ordinary answer ends the doubling)."""
        now = time.time()
        seconds = backoff_for(status, retry_after, now, self._last)
        self.probe = None
        if seconds is None:
            self._last = 0.0
            self.paused_since_answer = False
            return None
        self.paused_since_answer = True
        if retry_after_seconds(retry_after, now) is None:
            self._last = seconds  # the origin named no time: the next one doubles it
        self.pauses += 1
        self.paused_seconds += seconds
        self._until = max(self._until, time.monotonic() + seconds)
        if store is not None and store.shared:
            await store.call(HoldOff(PAUSE_KEY, seconds), 0.0)
        return seconds
