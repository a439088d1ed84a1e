"""Turning a whole 200 into the answer to the client's Range (policy/ranges.py decides which):
a 206 with one range, a multipart/byteranges 206 with several, or a 416.

The body is sliced, never re-read: a hit slices the stored body it has, a miss the body it just
fetched, and a body too large to hold is sliced as it streams (one range only).
"""

from __future__ import annotations

import secrets

from mitmproxy import http

from caching_proxy.policy.ranges import ByteRange, RangeKind, RangePlan, range_plan
from caching_proxy.store.entry import decode_headers

Headers = list[tuple[str, str]] | tuple[tuple[str, str], ...]


def wants_range(request_headers: Headers) -> bool:
    return any(k.lower() == "range" for k, _ in request_headers)


def plan_for(request_headers: Headers, response: http.Response, length: int) -> RangePlan:
    """The plan for answering a GET's Range from `response` (a whole response, `length` bytes)."""
    return range_plan("GET", list(request_headers), response.status_code,
                      decode_headers(response.headers.fields), length)


def apply(response: http.Response, body: bytes | memoryview, plan: RangePlan) -> None:
    """Make `response` (a whole 200 whose body is `body`) the answer `plan` says."""
    if plan.kind is RangeKind.FULL:
        return
    complete = len(body)
    if plan.kind is RangeKind.UNSATISFIABLE:
        response.status_code, response.reason = 416, "Range Not Satisfiable"
        response.headers["Content-Range"] = f"bytes */{complete}"
        response.headers.pop("Content-Type", None)
        response.headers["Content-Length"] = "0"
        response.raw_content = b""
        return
    response.status_code, response.reason = 206, "Partial Content"
    if len(plan.ranges) == 1:
        (one,) = plan.ranges
        response.headers["Content-Range"] = one.content_range(complete)
        response.headers["Content-Length"] = str(one.length)
        response.raw_content = bytes(body[one.first:one.last + 1])
        return
    content_type = response.headers.get("Content-Type")
    boundary = secrets.token_hex(12)
    parts = []
    for r in plan.ranges:
        head = f"\r\n--{boundary}\r\n"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        head += f"Content-Range: {r.content_range(complete)}\r\n\r\n"
        parts += [head.encode("latin-1"), bytes(body[r.first:r.last + 1])]
    parts.append(f"\r\n--{boundary}--\r\n".encode())
    multipart = b"".join(parts)
    response.headers["Content-Type"] = f"multipart/byteranges; boundary={boundary}"
    response.headers["Content-Length"] = str(len(multipart))
    response.raw_content = multipart


class RangeStream:
    """`Response.stream` for a whole body too large to hold: passes on only the bytes of one
    range as they go by."""

    def __init__(self, wanted: ByteRange) -> None:
        self.wanted = wanted
        self.offset = 0

    def __call__(self, data: bytes) -> list[bytes]:
        start, self.offset = self.offset, self.offset + len(data)
        low = max(self.wanted.first - start, 0)
        high = min(self.wanted.last + 1 - start, len(data))
        # A list, never b"": an empty chunk would end a chunked body.
        return [data[low:high]] if low < high else []


def stream_range(response: http.Response, request_headers: Headers) -> None:
    """For a streamed whole 200 of known length: a 206 of its one satisfiable range, sliced as
    it streams; anything else (several ranges, unknown length, 416) is left the whole 200,
    which RFC 9110 14.2 allows."""
    length = response.headers.get("Content-Length", "")
    if not length.isdigit():
        return
    plan = plan_for(request_headers, response, int(length))
    if plan.kind is not RangeKind.PARTIAL or len(plan.ranges) != 1:
        return
    (one,) = plan.ranges
    response.status_code, response.reason = 206, "Partial Content"
    response.headers["Content-Range"] = one.content_range(int(length))
    response.headers["Content-Length"] = str(one.length)
    response.stream = RangeStream(one)
