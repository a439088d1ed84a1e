"""Connection-specific fields taken out of every message the proxy forwards, both ways (RFC 9110
7.6.1: an intermediary MUST remove the fields Connection names, and Connection itself or replace
it with its own options), and request fields named with an underscore.

Removed: `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Upgrade` and every field a
`Connection` option names (the classic `Connection: X-Forwarded-For` trick asks a proxy to drop
a field the next hop relies on). `Connection` keeps only `close` and `keep-alive`, the proxy's
own options for the message (mitmproxy reads them off the same message to decide whether to
close either connection). A protocol upgrade (a request with `Upgrade` and `Connection:
upgrade`, its 101 answer) keeps both, or mitmproxy's WebSocket pass-through could not work.
`Transfer-Encoding`, `Content-Length` and `Host` frame or route the message: mitmproxy rewrites
them itself and a Connection option never removes them.

Request fields with `_` in their names are dropped, as nginx does by default
(`underscores_in_headers off`): WSGI and CGI servers read `X_Forwarded_Host` as
X-Forwarded-Host and `Accept_Encoding` as Accept-Encoding, so such a field would change the
answer while the cache key and Vary see a field nobody asked about.
"""

from __future__ import annotations

from mitmproxy import http

HOP_FIELDS = frozenset({b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade"})
OWN_OPTIONS = frozenset({b"close", b"keep-alive"})
# Framing and routing: never removed because a Connection option names them.
NEVER_NAMED = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection"})


def _options(fields: tuple[tuple[bytes, bytes], ...]) -> set[bytes]:
    out: set[bytes] = set()
    for name, value in fields:
        if name.lower() == b"connection":
            out.update(t for t in (o.strip(b" \t").lower() for o in value.split(b",")) if t)
    return out


def strip(headers: http.Headers, upgrade: bool | None = None, underscores: bool = False) -> bool:
    """Remove the connection-specific fields of `headers` in place (and, with `underscores`,
    fields whose names hold `_`); `upgrade`: the message grants a protocol upgrade (None: it
    is a request, which asks for one when it has Upgrade and `Connection: upgrade`). Whether
    anything changed. One pass over the fields when there is nothing to remove."""
    fields = headers.fields
    for name, _ in fields:
        lower = name.lower()
        if lower in HOP_FIELDS or lower == b"connection" or (underscores and b"_" in name):
            break
    else:
        return False
    options = _options(fields)
    if upgrade is None:
        upgrade = _asks_upgrade(options, fields)
    kept_options = OWN_OPTIONS | ({b"upgrade"} if upgrade else set())
    # An option the proxy keeps names no field to drop, but `Keep-Alive` the field still goes.
    drop = (HOP_FIELDS | (options - kept_options)) - NEVER_NAMED
    if upgrade:
        drop = drop - {b"upgrade"}
    own = b", ".join(sorted(options & kept_options))
    out: list[tuple[bytes, bytes]] = []
    placed = False
    for name, value in fields:
        lower = name.lower()
        if lower == b"connection":
            if own and not placed:
                out.append((name, own))
                placed = True
        elif lower not in drop and not (underscores and b"_" in name):
            out.append((name, value))
    changed = len(out) != len(fields) or any(a != b for a, b in zip(out, fields, strict=True))
    if changed:
        headers.fields = tuple(out)
    return changed


def _asks_upgrade(options: set[bytes], fields: tuple[tuple[bytes, bytes], ...]) -> bool:
    """A request asking to switch protocols (RFC 9110 7.8), with both fields in place."""
    return b"upgrade" in options and any(name.lower() == b"upgrade" for name, _ in fields)
