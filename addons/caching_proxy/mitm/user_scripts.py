"""The user's scripts (`-s FILE`, `--set scripts=FILE`) checked at start: one that fails to load
stops the proxy with one line naming it, before it listens.

mitmproxy's ScriptLoader loads each script in a task of its own, soon after the options are
set, and logs a failure (with its traceback) without stopping: a proxy would then serve without
the script its operator relies on. `ScriptCheck` holds back the loader's error records while
the scripts load and waits (a bounded number of loop turns) until each has been tried; once
started, a script changed on disk is reloaded by mitmproxy, and a failure then is logged as
mitmproxy logs it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import traceback
from typing import Any

SCRIPT_LOGGER = "mitmproxy.addons.script"
# Loop turns to wait for the loader's tasks: each needs two (mitmproxy/addons/script.py).
MAX_TURNS = 1000


class ScriptCheck(logging.Filter):
    """Install before the options that name scripts are set; `failure` once they are."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self._logger = logging.getLogger(SCRIPT_LOGGER)
        self._logger.addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            self.records.append(record)
            return False  # said in one line by `failure`
        return True

    def _failed(self, path: str) -> logging.LogRecord | None:
        return next((r for r in self.records if r.getMessage() == f"error in script {path}"),
                    None)

    async def failure(self, m: Any) -> str | None:
        """One line for the first script that failed to load, None when all loaded; the filter
        is removed either way."""
        try:
            loader = m.addons.get("scriptloader")
            scripts = list(getattr(loader, "addons", []) if loader is not None else [])
            for _ in range(MAX_TURNS):
                if all(s.ns is not None or self._failed(s.fullpath) for s in scripts):
                    break
                await asyncio.sleep(0)
            for s in scripts:
                record = self._failed(s.fullpath)
                if record is not None:
                    return describe(s.path, s.fullpath, record)
            return next((f"script: {r.getMessage()}" for r in self.records), None)
        finally:
            self._logger.removeFilter(self)


def describe(shown: str, path: str, record: logging.LogRecord) -> str:
    """`script FILE: line N: ExcType: message` from the loader's record."""
    if not record.exc_info or record.exc_info[1] is None:
        return f"script {shown}: {record.getMessage()}"
    error = record.exc_info[1]
    line = getattr(error, "lineno", None) if isinstance(error, SyntaxError) else None
    if line is None:
        frames = [f for f in traceback.extract_tb(error.__traceback__)
                  if os.path.abspath(f.filename) == os.path.abspath(path)]
        line = frames[-1].lineno if frames else None
    where = f"line {line}: " if line else ""
    words = error.msg if isinstance(error, SyntaxError) else str(error)
    text = words.splitlines()[0] if words else ""
    return f"script {shown}: {where}{type(error).__name__}{': ' + text if text else ''}"
