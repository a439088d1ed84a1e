"""What to answer when the origin fails: the stored stale response where the response
(stale-if-error), the request or the operator (--use-stale) allows it (RFC 5861 4, nginx
proxy_cache_use_stale), else the failure as it is.
"""

from __future__ import annotations

import math

from mitmproxy import http

from caching_proxy.cache import serve
from caching_proxy.cache.flow_state import TIMEOUT_KEY, FlowState, Phase, state_of
from caching_proxy.cache.settings import Shared
from caching_proxy.cli.options import CACHE_NAME
from caching_proxy.mitm import error_page
from caching_proxy.policy import (
    NO_DIRECTIVES,
    cache_status,
    can_serve_stale_on_error,
    evaluate,
    serve_stale_on_failure,
)


class StaleAnswers:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def answer(self, flow: http.HTTPFlow, state: FlowState, failure: str,
               status: int | None) -> bool:
        """Answer with the stored response instead of `failure` (one of
        policy.USE_STALE_CONDITIONS), where allowed; whether it did."""
        entry = state.stored
        now = self.shared.clock()
        if entry is None or not serve_stale_on_failure(
                entry.meta, state.directives, now, failure, self.shared.settings.use_stale):
            return False
        lookup = evaluate(NO_DIRECTIVES, entry.meta, now)
        # RFC 9211: it went forward (fwd, with the origin's status when there was one); the
        # answer is the stored response, hence X-Cache: HIT.
        serve.answer(flow, state, entry, self.shared, age=lookup.age, outcome="stale",
                     request_headers=state.client_conditionals,
                     status=cache_status(CACHE_NAME, hit=False, fwd=state.fwd,
                                         fwd_status=status, ttl=lookup.ttl,
                                         detail=f"stale-on-{failure.replace('_', '-')}"))
        return True

    def answer_unreached(self, flow: http.HTTPFlow, state: FlowState, detail: str,
                         forced: bool = False) -> bool:
        """Answer with the stored response, however stale, where the proxy does not ask the
        origin at all (origin/gate.py: backing off, down, over budget; `forced` for --offline);
        whether it did. Unless `forced`, never for a response that forbids stale answers (RFC
        9111 4.2.4: must-revalidate and the like get the refusal instead). RFC 9211: a hit, as
        nothing went forward; ttl < 0 says how stale."""
        entry = state.stored
        now = self.shared.clock()
        if entry is None or not (forced or can_serve_stale_on_error(
                entry.meta, state.directives, now, math.inf)):
            return False
        lookup = evaluate(NO_DIRECTIVES, entry.meta, now)
        serve.answer(flow, state, entry, self.shared, age=lookup.age, outcome="stale",
                     request_headers=state.client_conditionals,
                     status=cache_status(CACHE_NAME, hit=True, ttl=lookup.ttl, detail=detail))
        return True

    def on_error(self, flow: http.HTTPFlow) -> None:
        """The error hook: the exchange with the origin failed (refused, reset, timed out)."""
        state = state_of(flow)
        if state is None or state.phase in (Phase.ANSWERED, Phase.PASS) or state.stored is None:
            return
        # A response whose head has not gone to the client yet (its body was being held) can
        # still give way; a streamed one is under way and is cut.
        if flow.response is not None and flow.response.stream:
            return
        failure = "timeout" if flow.metadata.get(TIMEOUT_KEY) else "error"
        if self.answer(flow, state, failure, None):
            assert flow.response is not None
            error_page.answer_instead(flow, flow.response)
