"""Secondary cache key from Vary (RFC 9111 4.1)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .fields import Headers, split_list

# 4.1: "If a header field is absent from a request, it can only match another request if it is
# also absent there" - so absent must differ from present-but-empty ("").
ABSENT = "\x00absent"

# Fields with #list syntax (RFC 9110 5.6.1): whitespace around commas is insignificant there.
# Elsewhere (User-Agent, Authorization, unknown fields) values are kept as sent, only trimmed.
_LIST_FIELDS = frozenset(
    {
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "if-match",
        "if-none-match",
        "pragma",
        "te",
        "upgrade",
        "via",
        "x-forwarded-for",
    }
)
# Fields whose whole value is case-insensitive: content codings (RFC 9110 8.4.1), charsets
# (8.3.2), language ranges (RFC 4647 2), and parameter names/q-values. Not Accept: media type
# parameter values can be case-sensitive.
_CASE_INSENSITIVE = frozenset({"accept-charset", "accept-encoding", "accept-language"})
# RFC 9110 5.6.6: whitespace is allowed around ";" in parameters.
_PARAM_WS = re.compile(r"[ \t]*;[ \t]*")


def _normalize(name: str, lines: list[str]) -> str:
    if name == "cookie":
        # RFC 9113 8.2.3: HTTP/2 may split Cookie into several lines; they join with "; ".
        return "; ".join(line.strip(" \t") for line in lines)
    if name in _LIST_FIELDS:
        elements = [e for line in lines for e in split_list(line)]
        value = ",".join(e if '"' in e else _PARAM_WS.sub(";", e) for e in elements)
    else:
        # RFC 9110 5.3: repeated lines are one comma-separated list.
        value = ", ".join(line.strip(" \t") for line in lines)
    return value.lower() if name in _CASE_INSENSITIVE else value


def vary_key(vary: Sequence[str], request_headers: Headers) -> tuple[str, ...]:
    """For each (lowercase) Vary name, the request's normalized value, or ABSENT."""
    if not vary:
        return ()
    wanted = {n.lower() for n in vary}
    lines: dict[str, list[str]] = {}
    for k, v in request_headers:
        name = k.lower()
        if name in wanted:
            lines.setdefault(name, []).append(v)
    return tuple(
        _normalize(n.lower(), lines[n.lower()]) if n.lower() in lines else ABSENT for n in vary
    )
