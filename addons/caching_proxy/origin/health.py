"""Active health checks of the origin (HAProxy's `check inter fall rise 1`, nginx Plus's
`health_check`): GET a path every interval; after N failures in a row the origin is down.

While it is down, misses are answered at once (stale, else 503) instead of waiting for
timeouts, and the checks go on, one in flight at a time: the first that succeeds marks it up.
A check succeeds when the origin answers with a status below 500 within the interval (at most
10 s). Per process: each worker checks for itself (one request per interval each).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from mitmproxy import http

from caching_proxy.cache.refresh import fetch, tls_context

log = logging.getLogger(__name__)

CHECK_TIMEOUT_LONGEST = 10.0


@dataclass(frozen=True, slots=True)
class HealthSettings:
    url: str = ""  # the origin's URL of the checked path; "": no checks
    interval: float = 5.0
    fails: int = 3


class Health:
    def __init__(self, fetcher: Callable[..., http.Response | None] = fetch) -> None:
        self.settings = HealthSettings()
        self.up = True
        self.failed_in_a_row = 0
        self.checks = 0
        self.down_since: float | None = None  # time.monotonic() it went down
        self.down_seconds = 0.0  # summed over the past downs
        self._fetch = fetcher
        self.suspended: Callable[[], bool] = lambda: False  # no checks meanwhile (offline)
        self._task: asyncio.Task[None] | None = None

    @property
    def state(self) -> str:
        if not self.settings.url:
            return "unchecked"
        return "up" if self.up else "down"

    def seconds_down(self) -> float:
        ongoing = 0.0 if self.down_since is None else time.monotonic() - self.down_since
        return self.down_seconds + ongoing

    def start(self, settings: HealthSettings) -> None:
        """Check with `settings` from now on (none when its url is empty)."""
        self.stop()
        self.settings = settings
        self.mark(True)
        if settings.url:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            if not self.suspended():
                await self.check_once()
            await asyncio.sleep(self.settings.interval)

    async def check_once(self) -> bool:
        """One check; whether it succeeded (the state follows the rule above)."""
        settings = self.settings
        request = http.Request.make("GET", settings.url, b"", http.Headers(
            host=urlsplit(settings.url).netloc, user_agent="caching-proxy health check"))
        timeout = min(settings.interval, CHECK_TIMEOUT_LONGEST)
        context = tls_context() if request.scheme == "https" else None
        try:
            answer = await asyncio.to_thread(self._fetch, request, timeout, 1 << 20, context)
            ok = answer is not None and answer.status_code < 500
        except Exception as e:  # any failure to get an answer is a failed check
            log.debug(f"caching-proxy: health check of {settings.url} failed: {e!r}")
            ok = False
        self.checks += 1
        self.failed_in_a_row = 0 if ok else self.failed_in_a_row + 1
        if ok and not self.up:
            self.mark(True)
            log.warning(f"caching-proxy: origin is up again ({settings.url} answered)")
        elif not ok and self.up and self.failed_in_a_row >= settings.fails:
            self.mark(False)
            log.warning(f"caching-proxy: origin is down ({self.failed_in_a_row} failed checks "
                        f"of {settings.url}); misses get stale or 503 until a check succeeds")
        return ok

    def mark(self, up: bool) -> None:
        if up and self.down_since is not None:
            self.down_seconds += time.monotonic() - self.down_since
            self.down_since = None
        elif not up and self.down_since is None:
            self.down_since = time.monotonic()
        self.up = up
