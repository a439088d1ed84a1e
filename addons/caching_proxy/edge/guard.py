"""Refuses requests a reverse cache must not forward: the shapes mitmproxy's HTTP/1 parser lets
through but an origin (or the cache key) could read differently.

mitmproxy itself already answers 400 to CONNECT, authority-form targets, bare CR/LF in the
request line, Content-Length with Transfer-Encoding, conflicting Content-Length, unknown
transfer codings and malformed header lines. What it forwards, and this addon refuses before the
cache looks anything up (it runs in `requestheaders`, so no body is read):

* an absolute-form target (`GET http://other/x`): mitmproxy's reverse mode sends it on as it
  came, so the origin may answer for the named host while the cache stores the answer under the
  plain path (poisoning). Naming the origin itself is rewritten to origin-form; anything else 400.
* control characters in the target or in a header value, including obs-fold (mitmproxy keeps the
  folded CRLF inside the value and forwards it): 400, as RFC 9112 5.2 allows and nginx does.
* a request line over 8 KiB (414), a header line over 8 KiB, more than 100 fields or 64 KiB of
  fields (431): nginx's `large_client_header_buffers 4 8k` and Apache's LimitRequestFields.
* a body on GET or HEAD is dropped before forwarding, as Varnish does: it has no defined meaning
  (RFC 9110 9.3.1) and is not in the cache key, so an answer that depended on it would be
  stored for every plain GET of that URL.
* a version other than HTTP/1.0 or 1.1 on an HTTP/1 connection (`PRI * HTTP/2.0` included,
  which mitmproxy would forward): 505, as nginx answers.
* a method not in upper case (`get`): a method is case-sensitive (RFC 9110 9.1), mitmproxy
  upper-cases what the cache reads but forwards the bytes as sent, so `get` was looked up and
  stored as GET while the origin answered an unknown method (501, stored for everyone): 400,
  as nginx answers.
* the asterisk-form target on any method but OPTIONS (RFC 9112 3.2.4): 400.
* on HTTP/1.1, no Host, more than one, or an empty one (RFC 9112 3.2: a server MUST answer 400);
  checked on the head as parsed (`head_refusal`), before mitmproxy writes the origin's Host in.

What it changes on a request that goes on (`request`) and on every response from the origin
(`responseheaders`), so the cache and the origin read the same message: the fields hop_by_hop.py
names are removed both ways, request fields named with `_` dropped (nginx's
`underscores_in_headers off`), and a response without `Date` gets one (RFC 9110 6.6.1: a
recipient with a clock MUST add it to a message it caches or forwards).

Every check fails closed: an exception inside one answers 500 and the request goes nowhere.
"""

from __future__ import annotations

import logging
import re
import time

from mitmproxy import http
from mitmproxy.net.http import url

from caching_proxy.edge import hop_by_hop
from caching_proxy.edge.fail_closed import fail_closed
from caching_proxy.edge.refusals import refusal_response
from caching_proxy.policy.fields import format_http_date

log = logging.getLogger(__name__)

MAX_TARGET = 8192
MAX_FIELD_LINE = 8192
MAX_FIELDS = 100
MAX_FIELDS_SIZE = 65536
HTTP1 = frozenset({"HTTP/1.0", "HTTP/1.1"})
# Bytes that never appear in a valid target (RFC 3986: no controls, space or DEL).
BAD_TARGET = re.compile(rb"[\x00-\x20\x7f]")
# Controls other than HTAB in a field value (RFC 9110 5.5); CR/LF also catch obs-fold.
BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def head_refusal(request: http.Request) -> tuple[int, str] | None:
    """What refuses an HTTP/1 request's head as parsed, before mitmproxy or the lane writes the
    origin's Host in: its Host fields (RFC 9112 3.2). None to let it through."""
    host = None
    for name, value in request.headers.fields:
        if len(name) == 4 and name.lower() == b"host":
            if host is not None:
                return 400, "more than one Host field"
            host = value
    if request.data.http_version == b"HTTP/1.1":
        if host is None:
            return 400, "no Host field in an HTTP/1.1 request"
        if not host.strip(b" \t"):
            return 400, "empty Host field"
    return None


def refusal(request: http.Request, http1: bool) -> tuple[int, str] | None:
    """The status and reason to refuse `request` with, or None to let it through; `http1`: the
    client speaks HTTP/1 (no h2/h3 negotiated)."""
    if http1 and request.http_version not in HTTP1:
        return 505, "HTTP version not supported"
    method = request.data.method
    if method != method.upper():
        return 400, "method not in upper case (methods are case-sensitive)"
    target = request.data.path
    if target == b"*" and method != b"OPTIONS":
        return 400, "asterisk-form target on a method other than OPTIONS"
    if len(target) > MAX_TARGET:
        return 414, "request target too long"
    if BAD_TARGET.search(target):
        return 400, "control character or space in the request target"
    fields = request.headers.fields
    if len(fields) > MAX_FIELDS:
        return 431, "too many header fields"
    size = 0
    for name, value in fields:
        line = len(name) + len(value) + 4
        if line > MAX_FIELD_LINE:
            return 431, "header field too large"
        size += line
        if BAD_VALUE.search(value):
            return 400, "control character or folded line in a header value"
    if size > MAX_FIELDS_SIZE:
        return 431, "header fields too large"
    return None


class Guard:
    @fail_closed
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        request = flow.request
        http1 = flow.client_conn.alpn in (None, b"", b"http/1.1", b"http/1.0")
        refused = refusal(request, http1)
        if refused is None and http1 and request.authority:
            refused = self._absolute_form(request)
        if refused is not None:
            status, reason = refused
            flow.response = refusal_response(status, reason)
            log.info(f"caching-proxy: refused {request.method} ({status}): {reason}")

    @fail_closed
    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        request = flow.request
        hop_by_hop.strip(request.headers, underscores=True)
        # The raw fields, not `in request.headers` (mitmproxy's multidict): 0.3 us, not 1.5.
        if request.method in ("GET", "HEAD") and (
            request.raw_content or any(name.lower() == b"transfer-encoding"
                                       for name, _ in request.headers.fields)
        ):
            request.headers.pop("transfer-encoding", None)
            request.headers.pop("content-length", None)
            request.raw_content = b""

    @fail_closed
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is None or flow.server_conn.timestamp_start is None:
            return  # the proxy's own answer (a hit, a refusal): nothing of the origin's
        hop_by_hop.strip(response.headers, upgrade=response.status_code == 101)
        if not any(name.lower() == b"date" for name, _ in response.headers.fields):
            response.headers["Date"] = format_http_date(response.timestamp_start or time.time())

    @staticmethod
    def _absolute_form(request: http.Request) -> tuple[int, str] | None:
        # In reverse mode request.host/port are already the origin's address.
        try:
            host, port = url.parse_authority(request.authority, check=True)
        except ValueError:
            return 400, "malformed authority in the request target"
        if port is None:
            port = url.default_port(request.scheme) or 80
        if (host.lower(), port) != (request.host.lower(), request.port):
            return 400, "absolute-form target naming another host"
        # Sent on in origin-form, so the origin answers exactly what the cache key names.
        request.authority = ""
        return None
