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

from caching_proxy.cache.flow_state import TIMEOUT_KEY
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


# What a failed exchange's message says went wrong (mitmproxy's and the OS's words), first match.
CAUSES = (
    ("client disconnected", "client-closed"),
    ("name or service not known", "origin-dns"),
    ("temporary failure in name resolution", "origin-dns"),
    ("no address associated", "origin-dns"),
    ("connection refused", "origin-refused"),
    ("connect call failed", "origin-refused"),  # asyncio's words for ECONNREFUSED
    ("[errno 111]", "origin-refused"),
    ("[errno 104]", "origin-reset"),
    ("[errno 110]", "origin-timeout"),
    ("tls", "origin-tls"),
    ("certificate", "origin-tls"),
    ("connection reset", "origin-reset"),
    ("server closed connection", "origin-closed"),
    ("timed out", "origin-timeout"),
)


DNS_WORDS = tuple(words for words, cause in CAUSES if cause == "origin-dns")


def with_host(message: str, host: str | None) -> str:
    """A name-resolution failure's message with the host that failed, which the OS's words
    (`[Errno -2] Name or service not known`) leave out; any other message as it is."""
    lowered = message.lower()
    if not host or not any(words in lowered for words in DNS_WORDS):
        return message
    return f"{message} (resolving the origin's host {host})"


def _origin_host() -> str | None:
    """The host of the one reverse mode the proxy runs in, None when there is no such mode."""
    from mitmproxy import ctx
    from mitmproxy.proxy.mode_specs import ProxyMode, ReverseMode

    try:
        modes = [ProxyMode.parse(m) for m in ctx.options.mode]
    except Exception:  # no master (a page made outside a proxy), a mode it cannot read
        return None
    if len(modes) == 1 and isinstance(modes[0], ReverseMode):
        return str(modes[0].address[0])
    return None


def failure_of(flow: http.HTTPFlow) -> tuple[int | None, str]:
    """For a flow that failed without a response on it: the status its client gets (the answer
    the error hook chose, else this proxy's 502 page; None when nothing is sent, the client
    having gone) and a cause for logs: origin-timeout, origin-refused, origin-dns, origin-tls,
    origin-reset, origin-closed, client-closed, or origin-error."""
    message = flow.error.msg if flow.error is not None else ""
    if flow.metadata.get(TIMEOUT_KEY):
        cause = "origin-timeout"
    else:
        lowered = message.lower()
        cause = next((c for words, c in CAUSES if words in lowered), "origin-error")
    pending = _instead.get(id(message))
    if pending is not None and pending.message is message:
        return pending.response.status_code, cause
    return (None if cause == "client-closed" else 502), cause


def pending_response(flow: http.HTTPFlow) -> http.Response | None:
    """What the client of a failed flow gets, before it is written: the answer the error hook
    chose, else this proxy's 502 page; None when nothing is sent (the client is gone)."""
    status, _ = failure_of(flow)
    if status is None or flow.error is None:
        return None
    message = flow.error.msg
    pending = _instead.get(id(message))
    if pending is not None and pending.message is message:
        return pending.response
    return error_response(status, message)


def take_answer(message: str) -> Answer | None:
    """The answer chosen for the flow whose error message is `message` (that very string),
    taken out of the table; None when none was."""
    pending = _instead.pop(id(message), None)
    return pending if pending is not None and pending.message is message else None


def error_response(status_code: int, message: str = "") -> http.Response:
    """This proxy's own error answer: plain text, marked as a MISS (serve.own_answer)."""
    reason = status_codes.RESPONSES.get(status_code, "Error")
    message = with_host(message, _origin_host()) if message else message
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
