"""A short plain-text answer, marked as a cache MISS, when the origin cannot be reached.

mitmproxy writes its own HTML error page when the connection to the origin fails or breaks; no
addon hook can replace that page (the `error` hook runs before it and cannot set a response). Its
HTTP/1 server builds the page with one module-level function, which `install` swaps (through
internals.py) for one that answers in the form every other response of this proxy has: X-Cache
and Cache-Status present.

The same function lets the `error` hook choose the answer after all (`answer_instead`): a stored
stale response (stale-if-error) or a 504 for an origin timeout. mitmproxy passes the page
function the very message string it put in `flow.error.msg`, which identifies the flow.
HTTP/2 clients get the same answers: http2_server.py wraps mitmproxy's HTTP/2 server where it
would write its page and asks `answer_for` with that same message.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from mitmproxy import http
from mitmproxy.net.http import status_codes

from caching_proxy.cache.serve import own_answer


class Answer(NamedTuple):
    message: str  # the flow's error message, kept so that its id is not reused meanwhile
    response: http.Response  # for an HTTP/2 client
    http1: bytes  # for an HTTP/1 client: assembled when chosen, as mitmproxy's page would be


# id(message) -> the answer; bounded in case a client left before its answer.
_instead: OrderedDict[int, Answer] = OrderedDict()
_MAX_PENDING = 1024


def answer_instead(flow: http.HTTPFlow, response: http.Response) -> None:
    """Send `response` instead of the error page of the failed `flow` (an HTTP/1 client's
    connection is then closed, as after any error page). Call from the `error` hook."""
    from mitmproxy.net.http import http1

    if flow.error is None:
        return
    response.headers["Connection"] = "close"
    message = flow.error.msg
    _instead[id(message)] = Answer(message, response, bytes(http1.assemble_response(response)))
    while len(_instead) > _MAX_PENDING:
        _instead.popitem(last=False)


def has_answer(flow: http.HTTPFlow) -> bool:
    return flow.error is not None and id(flow.error.msg) in _instead


def take_answer(message: str) -> Answer | None:
    """The answer chosen for the flow whose error message is `message` (that very string),
    taken out of the table; None when none was."""
    pending = _instead.pop(id(message), None)
    return pending if pending is not None and pending.message is message else None


def error_response(status_code: int, message: str = "") -> http.Response:
    """This proxy's own error answer: plain text, marked as a MISS (serve.own_answer)."""
    reason = status_codes.RESPONSES.get(status_code, "Error")
    text = f"{status_code} {reason}: {message.strip()}\n" if message else f"{status_code} {reason}\n"
    detail = "origin-error" if status_code in (502, 504) else "client-error"
    return own_answer(status_code, text, fwd="miss", detail=detail)


def answer_for(status_code: int, message: str = "") -> http.Response:
    """What an HTTP/2 client gets where mitmproxy would write its error page: the answer the
    `error` hook chose, else this proxy's own."""
    pending = take_answer(message)
    return pending.response if pending is not None else error_response(status_code, message)


def make_error_response(status_code: int, message: str = "") -> bytes:
    """mitmproxy's HTTP/1 page function, replaced: a whole HTTP/1 response."""
    from mitmproxy.net.http import http1

    pending = take_answer(message)
    if pending is not None:
        return pending.http1
    return bytes(http1.assemble_response(error_response(status_code, message)))


def install() -> bool:
    """Idempotent; a mitmproxy without the hook point keeps its own page (False)."""
    from caching_proxy.mitm import internals

    return internals.install_error_page(make_error_response)
