"""A user's addon (`-s`) for the tests: sends each request to the host its X-Target names,
which would make the proxy an open one."""

from mitmproxy import http


def request(flow: http.HTTPFlow) -> None:
    target = flow.request.headers.get("X-Target")
    if target:
        host, _, port = target.partition(":")
        flow.request.host = host
        flow.request.port = int(port or 80)
