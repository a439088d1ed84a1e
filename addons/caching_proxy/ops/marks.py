"""Marks each flow with what the cache did, for mitmweb's (and mitmproxy's console) flow list.

One marker per outcome, so hits, misses, revalidations, stale answers and passes are told apart
at a glance, and a comment saying it in words ("cache MISS (stored)"). Both are read from the
flow's FlowState and the cache's own Cache-Status entry once the answer is known; nothing on the
request path depends on them.
"""

from __future__ import annotations

from mitmproxy import http

from caching_proxy.cache.flow_state import state_of
from caching_proxy.cli.options import CACHE_NAME
from caching_proxy.mitm import error_page

# mitmproxy's emoji names (mitmproxy/utils/emoji.py), shown as the emoji by mitmweb 11.
MARKERS = {
    "hit": ":floppy_disk:",
    "collapsed": ":floppy_disk:",
    "miss": ":globe_with_meridians:",
    "revalidated": ":arrows_counterclockwise:",
    "stale": ":hourglass:",
    "pass": ":arrow_right:",
    "unavailable": ":no_entry:",
}


def own_params(values: list[str]) -> dict[str, str]:
    """The parameters of this cache's entry among Cache-Status field values (the last entry it
    added): `hit`, `fwd`, `stored`, `detail`, ... -> value ("" for a bare key)."""
    entries = [e for value in values for e in value.split(",")]
    for entry in reversed(entries):
        name, *params = (p.strip() for p in entry.split(";"))
        if name == CACHE_NAME:
            return {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in params)}
    return {}


def own_status(response: http.Response) -> dict[str, str]:
    return own_params(response.headers.get_all("Cache-Status"))


def comment_for(outcome: str, response: http.Response | None) -> str:
    status = own_status(response) if response is not None else {}
    detail = status.get("detail", "")
    if outcome == "hit":
        return "cache HIT" + (f" ({detail})" if detail else "")
    if outcome == "collapsed":
        return "cache HIT (collapsed)"
    if outcome == "miss":
        return f"cache MISS ({'stored' if 'stored' in status else 'not stored'})"
    if outcome == "revalidated":
        return f"revalidated ({status.get('fwd-status', '304')})"
    if outcome == "stale":
        return f"stale ({detail})" if detail else "stale"
    if outcome == "pass":
        return f"pass ({status.get('fwd', 'bypass')})"
    return "unavailable (only-if-cached)"


class WebMarks:
    """Comes after the cache in the chain: in its hooks the answer is final."""

    def response(self, flow: http.HTTPFlow) -> None:
        self._mark(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        # A stale answer to a failed origin is chosen in the error hook.
        self._mark(flow)

    def _mark(self, flow: http.HTTPFlow) -> None:
        state = state_of(flow)
        if flow.response is None and flow.error is not None:
            # Failed with no stored answer: say what the client got and why (mitmweb shows
            # the flow's error, e.g. "server closed connection", not the 502 or 504 it was).
            status, cause = error_page.failure_of(flow)
            flow.comment = f"{status or 'no answer'} ({cause})"
            return
        if state is None or state.outcome not in MARKERS:
            return
        flow.marked = MARKERS[state.outcome]
        flow.comment = comment_for(state.outcome, flow.response)
