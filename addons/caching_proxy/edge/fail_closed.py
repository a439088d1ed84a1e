"""Hooks that check or refuse something fail closed: an exception inside one refuses.

mitmproxy (and the lean master's HookTable) logs an exception raised by a hook and carries on
with the flow as it stands, so an error inside a check meant "allowed": a PURGE whose secret
could not be compared went on to the origin. Decorated hooks instead answer the flow with the
proxy's own 500 (the request goes nowhere; a response from the origin is not passed on), or
refuse the client connection. The first failure of each hook is logged with its traceback, the
rest in one line, so a client cannot fill the log by repeating it.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from mitmproxy import connection, http

from caching_proxy.edge.refusals import refusal_response

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
_logged: set[str] = set()


def refuse(subject: object, where: str, error: BaseException) -> None:
    """Refuse `subject` (a flow or a client connection) after `error` in the hook `where`."""
    first = where not in _logged
    _logged.add(where)
    log.error(f"caching-proxy: {where} failed ({error!r}); refused", exc_info=first)
    if isinstance(subject, http.HTTPFlow):
        subject.response = refusal_response(500, "internal error in a request check",
                                            detail="proxy-error")
    elif isinstance(subject, connection.Client):
        subject.error = f"internal error in {where}"


def fail_closed(hook: F) -> F:
    """Decorate a hook method `(self, flow_or_client, ...)`; a coroutine hook stays one."""
    where = hook.__qualname__
    if inspect.iscoroutinefunction(hook):
        @functools.wraps(hook)
        async def guarded_async(self: Any, subject: Any, *args: Any) -> Any:
            try:
                return await hook(self, subject, *args)
            except Exception as e:
                refuse(subject, where, e)
                return None

        return guarded_async  # type: ignore[return-value]

    @functools.wraps(hook)
    def guarded(self: Any, subject: Any, *args: Any) -> Any:
        try:
            result = hook(self, subject, *args)
        except Exception as e:
            refuse(subject, where, e)
            return None
        # (Most hooks return None: isawaitable only for the rest, it costs more than the hook.)
        if result is not None and inspect.isawaitable(result):
            return _awaited(result, subject, where)
        return result

    return guarded  # type: ignore[return-value]


async def _awaited(result: Any, subject: Any, where: str) -> Any:
    try:
        return await result
    except Exception as e:
        refuse(subject, where, e)
        return None
