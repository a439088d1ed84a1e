"""The access log: one line per request, on standard output or in `cache_access_log_file`.

Formats are log_formats.py's: text, JSON, NCSA combined or a template. Each line is written with
one unbuffered `write`, so that lines of several `--workers` processes never interleave (on a
pipe a write of under PIPE_BUF bytes is atomic; a file is opened with O_APPEND, so each write
lands whole at its end) and a line is there as soon as its request is answered. SIGUSR1 reopens
the file (logrotate's postrotate, as nginx does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader

from caching_proxy.cli import options as opts
from caching_proxy.ops.log_formats import Formatter, format_text, parse_format

log = logging.getLogger(__name__)


def open_log(path: str) -> int:
    """A descriptor appending to `path`, created 0644 if missing."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0),
                   0o644)


class AccessLog:
    def __init__(self) -> None:
        self.off = False
        self.formatter: Formatter = format_text
        self.stdout = sys.stdout.fileno() if sys.stdout is not None else -1
        self.fd = self.stdout
        self.path = ""

    def load(self, loader: Loader) -> None:
        opts.declare(loader, self)

    def configure(self, updated: set[str]) -> None:
        if "cache_access_log" in updated:
            value = ctx.options.cache_access_log
            if value != "off":
                try:
                    self.formatter = parse_format(value)
                except ValueError as e:
                    raise exceptions.OptionsError(
                        f"cache_access_log: {e} (or off)") from None
            self.off = value == "off"
        if "cache_access_log_file" in updated:
            path = ctx.options.cache_access_log_file
            if path != self.path:
                fd = self.stdout
                if path:
                    try:
                        fd = open_log(path)
                    except OSError as e:
                        raise exceptions.OptionsError(
                            f"cannot open access log {path}: {e.strerror or e}") from None
                self._replace(fd)
                self.path = path

    def running(self) -> None:
        # Always handled, also without a file: SIGUSR1's default action would end the process
        # that a logrotate configured for the file sends it to.
        if hasattr(signal, "SIGUSR1"):
            # Not the main thread (RuntimeError, ValueError): the host handles signals.
            with contextlib.suppress(RuntimeError, ValueError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, self.reopen)
                # `python -m caching_proxy` blocks it until now (see __main__): one sent while
                # the process started was held pending, and is handled here.
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})

    def reopen(self) -> None:
        """Open the log file again by its name (logrotate moved the old one away)."""
        if not self.path:
            return
        try:
            fd = open_log(self.path)
        except OSError as e:  # keep writing to the old file rather than lose lines
            log.warning(f"caching-proxy: cannot reopen access log {self.path}: {e}")
            return
        self._replace(fd)

    def _replace(self, fd: int) -> None:
        old, self.fd = self.fd, fd
        if old not in (fd, self.stdout, -1):
            os.close(old)

    def response(self, flow: http.HTTPFlow) -> None:
        self._log(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._log(flow)

    def done(self) -> None:
        self._replace(self.stdout)

    def _log(self, flow: http.HTTPFlow) -> None:
        if self.off or self.fd < 0 or flow.metadata.get("caching_proxy.logged"):
            return
        flow.metadata["caching_proxy.logged"] = True  # a flow failing after its response
        line = self.formatter(flow, time.time())
        # stdout closed or disk full: the line is lost, never the request.
        with contextlib.suppress(OSError):
            os.write(self.fd, (line + "\n").encode("utf-8", "replace"))
