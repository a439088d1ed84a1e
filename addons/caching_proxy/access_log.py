"""The access log: one line per request on standard output, as text or JSON.

Written with one `write` per line, unbuffered, so that lines of several `--workers` processes on
one terminal or pipe never interleave (a write of under PIPE_BUF bytes is atomic) and a line is
there as soon as its request is answered.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from mitmproxy import ctx, exceptions, http

FORMATS = ("text", "json", "off")


def log_record(flow: http.HTTPFlow, now: float) -> dict[str, Any]:
    request, response = flow.request, flow.response
    if response is not None:
        status: int | None = response.status_code
        size = len(response.raw_content) if response.raw_content is not None else int(
            response.headers.get("content-length", "0") or 0)
        x_cache = response.headers.get("x-cache", "-")
        cache_status = response.headers.get("cache-status", "-")
    else:
        status, size, x_cache, cache_status = None, 0, "-", "-"
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(request.timestamp_start)),
        "method": request.method,
        "path": request.path,
        "status": status,
        "x_cache": x_cache,
        "cache_status": cache_status,
        "bytes": size,
        "ms": round((now - request.timestamp_start) * 1000, 1),
        "error": flow.error.msg if flow.error is not None else None,
    }


def format_text(r: dict[str, Any]) -> str:
    line = (f'{r["time"]} {r["method"]} {r["path"]} {r["status"] or "-"} {r["x_cache"]} '
            f'"{r["cache_status"]}" {r["bytes"]} {r["ms"]}ms')
    return line + (f' error="{r["error"]}"' if r["error"] else "")


class AccessLog:
    def __init__(self) -> None:
        self.format = "text"
        self.fd = sys.stdout.fileno() if sys.stdout is not None else -1

    def configure(self, updated: set[str]) -> None:
        if "cache_access_log" in updated:
            if ctx.options.cache_access_log not in FORMATS:
                raise exceptions.OptionsError(
                    f"cache_access_log must be one of {', '.join(FORMATS)}")
            self.format = ctx.options.cache_access_log

    def response(self, flow: http.HTTPFlow) -> None:
        self._log(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._log(flow)

    def _log(self, flow: http.HTTPFlow) -> None:
        if self.format == "off" or self.fd < 0 or flow.metadata.get("caching_proxy.logged"):
            return
        flow.metadata["caching_proxy.logged"] = True  # a flow failing after its response
        record = log_record(flow, time.time())
        line = json.dumps(record) if self.format == "json" else format_text(record)
        try:
            os.write(self.fd, (line + "\n").encode("utf-8", "replace"))
        except OSError:  # stdout closed: the log is lost, never the request
            self.format = "off"
