"""When a request whose origin connection died may be sent again (nginx `proxy_next_upstream
error`): pure decisions, no I/O, no mitmproxy.

The keep-alive race: the proxy sends a request on a kept-alive origin connection at the moment the
origin closes it for idleness (nginx `keepalive_timeout`, Apache `KeepAliveTimeout`). The origin
never read the request, so sending it again on a new connection is what the client would have got
had the proxy opened one in the first place. RFC 9110 9.2.2 lets a client retry idempotent
requests this way; a proxy does it only where nothing can have been consumed twice:

- the method is idempotent (RFC 9110 9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE);
- the request has no body (nothing that needs buffering again; a POST is never retried);
- its body was not streamed (a streamed body is gone once sent);
- the connection had already carried an exchange (a fresh connection that closes is the origin's
  answer, not a race), and the origin closed it, not this proxy (a timeout cut is final);
- no byte of the response arrived (not even an interim 1xx), so nothing reached the client;
- at most once per request.
"""

from __future__ import annotations

from dataclasses import dataclass

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
MAX_RETRIES = 1


@dataclass(frozen=True)
class DeadConnection:
    """What the origin side knew when the connection closed with the request unanswered."""

    reused: bool  # the connection had carried a whole exchange before this request
    closed_by_origin: bool  # the origin closed (FIN/RST), not this proxy (a timeout, a client gone)
    response_started: bool  # some bytes of a response (an interim 1xx included) had arrived


def may_retry(method: str, *, has_body: bool, streamed: bool, dead: DeadConnection,
              retries: int, timed_out: bool = False) -> bool:
    """True when the request may be sent once more on a new connection. Guarantees: never a
    non-idempotent method, a request with a body or a streamed one, never after response bytes,
    never after an origin timeout, never more than MAX_RETRIES times."""
    return (
        method.upper() in IDEMPOTENT_METHODS
        and not has_body
        and not streamed
        and dead.reused
        and dead.closed_by_origin
        and not dead.response_started
        and not timed_out
        and retries < MAX_RETRIES
    )
