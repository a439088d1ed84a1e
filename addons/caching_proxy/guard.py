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
"""

from __future__ import annotations

import logging
import re

from mitmproxy import http
from mitmproxy.net.http import status_codes, url

from caching_proxy.options import CACHE_NAME
from caching_proxy.policy import cache_status

log = logging.getLogger(__name__)

MAX_TARGET = 8192
MAX_FIELD_LINE = 8192
MAX_FIELDS = 100
MAX_FIELDS_SIZE = 65536
# mitmproxy's table lacks 431 (RFC 6585).
REASONS = {431: "Request Header Fields Too Large"}
HTTP1 = frozenset({"HTTP/1.0", "HTTP/1.1"})
# Bytes that never appear in a valid target (RFC 3986: no controls, space or DEL).
BAD_TARGET = re.compile(rb"[\x00-\x20\x7f]")
# Controls other than HTAB in a field value (RFC 9110 5.5); CR/LF also catch obs-fold.
BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def refusal(request: http.Request, http1: bool) -> tuple[int, str] | None:
    """The status and reason to refuse `request` with, or None to let it through; `http1`: the
    client speaks HTTP/1 (no h2/h3 negotiated)."""
    if http1 and request.http_version not in HTTP1:
        return 505, "HTTP version not supported"
    target = request.data.path
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
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        request = flow.request
        http1 = flow.client_conn.alpn in (None, b"", b"http/1.1", b"http/1.0")
        refused = refusal(request, http1)
        if refused is None and http1 and request.authority:
            refused = self._absolute_form(request)
        if refused is not None:
            status, reason = refused
            response = http.Response.make(
                status, f"{status} {reason}\n".encode(),
                {"Content-Type": "text/plain; charset=utf-8", "Connection": "close",
                 "X-Cache": "MISS",
                 "Cache-Status": cache_status(CACHE_NAME, hit=False, fwd="bypass",
                                              detail="client-error")},
            )
            response.reason = REASONS.get(status) or status_codes.RESPONSES.get(status, "Error")
            flow.response = response
            log.info(f"caching-proxy: refused {request.method} ({status}): {reason}")

    def request(self, flow: http.HTTPFlow) -> None:
        request = flow.request
        # The raw fields, not `in request.headers` (mitmproxy's multidict): 0.3 us, not 1.5.
        if flow.response is None and request.method in ("GET", "HEAD") and (
            request.raw_content or any(name.lower() == b"transfer-encoding"
                                       for name, _ in request.headers.fields)
        ):
            request.headers.pop("transfer-encoding", None)
            request.headers.pop("content-length", None)
            request.raw_content = b""

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
