"""A user's addon (`-s`) for the tests: marks every response it sees with how many requests
its `request` hook saw, and with which path answered: the hit lane reads the whole head before
any hook (so the request's end is stamped by `requestheaders`), mitmproxy's HTTP/1 server
stamps it only once the (empty) body is read, after that hook."""

from mitmproxy import http

seen = {"request": 0}


def requestheaders(flow: http.HTTPFlow) -> None:
    flow.metadata["test_path"] = "lane" if flow.request.timestamp_end is not None else "mitmproxy"


def request(flow: http.HTTPFlow) -> None:
    seen["request"] += 1


def response(flow: http.HTTPFlow) -> None:
    assert flow.response is not None
    flow.response.headers["X-Script"] = (
        f"requests={seen['request']}; path={flow.metadata.get('test_path')}")
