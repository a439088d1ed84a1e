"""A user's addon script (`-s`) whose hooks do nothing: the hitscript row's cost of a loaded
script on every hit, the hit lane's included."""

from mitmproxy import http


def request(flow: http.HTTPFlow) -> None:
    return None


def response(flow: http.HTTPFlow) -> None:
    return None
