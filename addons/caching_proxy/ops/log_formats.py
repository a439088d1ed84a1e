"""Access log line formats: `text`, `json`, NCSA `combined`, and templates of Apache
(mod_log_config) / varnishncsa directives such as `%h %t "%r" %s %b %{X-Cache}o %D`.

`parse_format` checks a format once (an unknown directive is a ValueError naming it) and returns
the function that makes a line of a flow. Every value taken from the request or the response is
escaped as Apache does (`"`, `\\` and non-printable bytes), so a line is always one line.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable
from typing import Any

from mitmproxy import http

from caching_proxy.cache.flow_state import asked_method
from caching_proxy.mitm import error_page

Formatter = Callable[[http.HTTPFlow, float], str]
NAMED = ("text", "json", "combined")
# NCSA combined (nginx's `combined`, Apache's `%h %l %u %t "%r" %>s %b "%{Referer}i"
# "%{User-agent}i"`) followed by the cache's verdict, as nginx with $upstream_cache_status and
# varnishncsa's `%{Varnish:hitmiss}x` add it.
COMBINED = ('%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %{X-Cache}o '
            '"%{Cache-Status}o"')
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DIRECTIVE = re.compile(r"%(?:\{([^}]*)\})?([<>]?)(.?)", re.DOTALL)
_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\]|[^\x00-\x7f]')


def escape(text: str) -> str:
    """`text` as Apache writes a request-supplied string: `\\"`, `\\\\`, `\\xhh` (UTF-8 bytes of
    anything outside printable ASCII), so a client cannot forge or break a log line."""
    def one(m: re.Match[str]) -> str:
        c = m.group()
        if c in '"\\':
            return "\\" + c
        return "".join(f"\\x{b:02x}" for b in c.encode("utf-8", "surrogateescape"))

    return _UNSAFE.sub(one, text)


def body_size(flow: http.HTTPFlow) -> int:
    """Bytes of the response body sent (its Content-Length when it was streamed)."""
    response = flow.response
    if response is None:
        return 0
    if response.raw_content is not None:
        return len(response.raw_content)
    try:
        return int(response.headers.get("content-length", "0") or 0)
    except ValueError:
        return 0


def method_of(flow: http.HTTPFlow) -> str:
    """The method the client sent: a HEAD miss is forwarded as GET (flow_state.forward_as_get)."""
    return asked_method(flow)


def status_and_cause(flow: http.HTTPFlow) -> tuple[int | None, str | None]:
    """The status the client got (for a failed exchange, the proxy's own answer: the 502, or
    the 504 of an origin timeout; None when nothing was sent) and, for a failure, its cause."""
    if flow.response is not None:
        return flow.response.status_code, None
    if flow.error is None:
        return None, None
    return error_page.failure_of(flow)


def log_record(flow: http.HTTPFlow, now: float) -> dict[str, Any]:
    request = flow.request
    status, cause = status_and_cause(flow)
    marked = answered_with(flow)
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(request.timestamp_start)),
        "method": method_of(flow),
        "path": request.path,
        "status": status,
        "cause": cause,
        "x_cache": marked.headers.get("x-cache", "-") if marked is not None else "-",
        "cache_status": (marked.headers.get("cache-status", "-") if marked is not None
                         else "-"),
        "bytes": body_size(flow),
        "ms": round((now - request.timestamp_start) * 1000, 1),
        "error": (error_page.with_host(flow.error.msg, request.host) if flow.error is not None
                  else None),
    }


def format_text(flow: http.HTTPFlow, now: float) -> str:
    r = log_record(flow, now)
    line = (f'{r["time"]} {r["method"]} {escape(r["path"])} {r["status"] or "-"} {r["x_cache"]} '
            f'"{escape(r["cache_status"])}" {r["bytes"]} {r["ms"]}ms')
    if r["cause"]:
        line += f' cause={r["cause"]}'
    return line + (f' error="{escape(r["error"])}"' if r["error"] else "")


def format_json(flow: http.HTTPFlow, now: float) -> str:
    return json.dumps(log_record(flow, now))


def clf_time(timestamp: float) -> str:
    """`[01/Dec/2026:20:04:31 +0000]`, in UTC and English whatever the locale."""
    t = time.gmtime(timestamp)
    return (f"[{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:"
            f"{t.tm_min:02d}:{t.tm_sec:02d} +0000]")


def remote_user(flow: http.HTTPFlow) -> str:
    """The user name of a Basic Authorization, as varnishncsa's %u; else -."""
    scheme, _, credentials = flow.request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return "-"
    try:
        user = base64.b64decode(credentials.strip(), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return "-"
    return escape(user.partition(":")[0]) or "-"


def _request_header(name: str) -> Formatter:
    return lambda f, now: escape(f.request.headers.get(name, "")) or "-"


def answered_with(flow: http.HTTPFlow) -> http.Response | None:
    """The response its client got: the flow's, or for a failed exchange the proxy's own."""
    return flow.response if flow.response is not None else error_page.pending_response(flow)


def _response_header(name: str) -> Formatter:
    def field(f: http.HTTPFlow, now: float) -> str:
        response = answered_with(f)
        return escape(response.headers.get(name, "")) or "-" if response is not None else "-"

    return field


def _status(f: http.HTTPFlow, now: float) -> str:
    status, _ = status_and_cause(f)
    return "-" if status is None else str(status)


def _query(f: http.HTTPFlow, now: float) -> str:
    _, mark, query = f.request.path.partition("?")
    return escape(mark + query)


SIMPLE: dict[str, Formatter] = {
    "h": lambda f, now: (str(f.client_conn.peername[0]) if f.client_conn.peername else "-"),
    "l": lambda f, now: "-",
    "u": lambda f, now: remote_user(f),
    "t": lambda f, now: clf_time(f.request.timestamp_start),
    "r": lambda f, now: escape(f"{method_of(f)} {f.request.path} {f.request.http_version}"),
    "s": _status,
    "b": lambda f, now: str(body_size(f) or "-"),
    "B": lambda f, now: str(body_size(f)),
    "D": lambda f, now: str(max(0, int((now - f.request.timestamp_start) * 1_000_000))),
    "T": lambda f, now: str(max(0, int(now - f.request.timestamp_start))),
    "m": lambda f, now: method_of(f),
    "U": lambda f, now: escape(f.request.path.partition("?")[0]),
    "q": _query,
    "H": lambda f, now: f.request.http_version,
}
HEADERS: dict[str, Callable[[str], Formatter]] = {"i": _request_header, "o": _response_header}


def parse_template(template: str) -> Formatter:
    """The line maker of an Apache-style template; ValueError names the first bad directive.
    `%>s` and `%<s` are read as `%s` (this proxy has no internal redirects)."""
    pieces: list[str | Formatter] = []
    position = 0
    for m in _DIRECTIVE.finditer(template):
        pieces.append(template[position:m.start()])
        position = m.end()
        name, letter = m.group(1), m.group(3)
        if name is None and letter == "%":
            pieces.append("%")
        elif name is not None and letter in HEADERS and name.strip():
            pieces.append(HEADERS[letter](name.strip()))
        elif name is None and letter in SIMPLE:
            pieces.append(SIMPLE[letter])
        else:
            raise ValueError(
                f"invalid log format {template!r}: unknown directive {m.group()!r} (known: "
                f"%h %l %u %t %r %s %b %B %D %T %m %U %q %H %{{Name}}i %{{Name}}o %%)")
    pieces.append(template[position:])
    parts = tuple(p for p in pieces if p != "")

    def line(flow: http.HTTPFlow, now: float) -> str:
        return "".join(p if isinstance(p, str) else p(flow, now) for p in parts)

    return line


def parse_format(value: str) -> Formatter:
    """`text`, `json`, `combined`, or a template with at least one %-directive."""
    if value == "text":
        return format_text
    if value == "json":
        return format_json
    if value == "combined":
        return parse_template(COMBINED)
    if "%" not in value:
        raise ValueError(f"invalid log format {value!r}: text, json, combined or a template "
                         "of %-directives such as '%h %t \"%r\" %s %b %{X-Cache}o'")
    return parse_template(value)
