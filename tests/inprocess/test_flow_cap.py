"""--web-max-flows (ops/flow_cap.py) on mitmproxy's own view, the store mitmweb shows."""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.addons.view import View
from mitmproxy.test import taddons, tflow

from caching_proxy.ops.flow_cap import DROP_BATCH, FlowCap


def flows(view: View, count: int, live: bool = False) -> list[http.HTTPFlow]:
    made = []
    for _ in range(count):
        f = tflow.tflow(resp=True)
        f.live = live
        view.add([f])
        made.append(f)
    return made


def test_the_oldest_finished_flows_go_past_the_bound() -> None:
    view, cap = View(), FlowCap()
    with taddons.context(view, cap) as tctx:
        tctx.configure(cap, cache_web_max_flows=3)
        made = flows(view, 5)
        cap.request(made[-1])
        assert view.store_count() == 3
        assert list(view.resolve("@all")) == made[2:]  # the newest kept, in order


def test_a_live_flow_is_never_dropped() -> None:
    view, cap = View(), FlowCap()
    with taddons.context(view, cap) as tctx:
        tctx.configure(cap, cache_web_max_flows=2)
        live = flows(view, 2, live=True)
        done = flows(view, 2)
        cap.request(done[-1])
        assert list(view.resolve("@all")) == live
        assert not any(f.error for f in live)  # none killed


def test_large_bounds_drop_a_batch_at_once_and_zero_is_no_bound() -> None:
    view, cap = View(), FlowCap()
    with taddons.context(view, cap) as tctx:
        tctx.configure(cap, cache_web_max_flows=DROP_BATCH * 3)
        made = flows(view, DROP_BATCH * 3 + 1)
        cap.request(made[-1])
        assert view.store_count() == DROP_BATCH * 2
        tctx.configure(cap, cache_web_max_flows=0)
        cap.request(flows(view, DROP_BATCH * 2)[-1])
        assert view.store_count() == DROP_BATCH * 4
