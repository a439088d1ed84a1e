"""`--error-log FILE`: where the proxy's own messages go instead of standard error."""

from __future__ import annotations

import contextlib
from typing import IO


def _opened(path: str) -> IO[str]:
    # Held for the process's life (reopened on SIGHUP), not a with-block's.
    return open(path, "a", buffering=1, encoding="utf-8", errors="replace")


class ErrorLog:
    """--error-log FILE: a text stream appending whole lines to FILE (line buffered), reopened
    on SIGHUP so that logrotate's move gets a fresh file. Writes never raise into the proxy: a
    message that cannot be written (disk full) is lost, the request is not."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = _opened(path)

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError, ValueError):
            self._file.write(text)
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._file.flush()

    def isatty(self) -> bool:
        return False

    def reopen(self) -> None:
        with contextlib.suppress(OSError):
            fresh = _opened(self.path)
            old, self._file = self._file, fresh
            old.close()
