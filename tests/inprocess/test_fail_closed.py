"""A check that raises refuses (fail_closed): through mitmproxy's own flow and connection
objects, for a plain hook, a coroutine hook and a hook that returns an awaitable."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from mitmproxy import connection, http
from mitmproxy.test import tflow

from caching_proxy.edge.fail_closed import fail_closed


class Checks:
    @fail_closed
    def request(self, flow: http.HTTPFlow) -> None:
        flow.request.headers["X-Checked"] = "1"
        raise UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed")

    @fail_closed
    async def responseheaders(self, flow: http.HTTPFlow) -> None:
        await asyncio.sleep(0)
        raise KeyError("x")

    @fail_closed
    def response(self, flow: http.HTTPFlow) -> Awaitable[None]:
        async def later() -> None:
            raise RuntimeError("late")

        return later()

    @fail_closed
    def client_connected(self, client: connection.Client) -> None:
        raise ValueError("bad")

    @fail_closed
    def error(self, flow: http.HTTPFlow) -> str:
        return "no error, no change"


def refused(flow: http.HTTPFlow) -> bool:
    r = flow.response
    return (r is not None and r.status_code == 500 and r.headers["Connection"] == "close"
            and r.headers["X-Cache"] == "MISS" and "detail=proxy-error" in r.headers["Cache-Status"])


def test_a_raising_check_answers_500_so_the_request_goes_nowhere() -> None:
    flow = tflow.tflow()
    Checks().request(flow)
    assert refused(flow)


def test_coroutine_hooks_and_returned_awaitables_fail_closed_too() -> None:
    checks = Checks()
    first, second = tflow.tflow(resp=True), tflow.tflow(resp=True)
    asyncio.run(checks.responseheaders(first))
    asyncio.run(checks.response(second))
    assert refused(first) and refused(second)


def test_a_raising_connection_check_refuses_the_connection() -> None:
    client = tflow.tclient_conn()
    client.error = None
    Checks().client_connected(client)
    assert client.error and "client_connected" in client.error


def test_a_check_that_does_not_raise_is_untouched() -> None:
    flow = tflow.tflow()
    assert Checks().error(flow) == "no error, no change"
    assert flow.response is None
