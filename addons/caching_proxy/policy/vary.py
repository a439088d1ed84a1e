"""Secondary cache key from Vary (RFC 9111 4.1)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .fields import Headers, split_list

# 4.1: "If a header field is absent from a request, it can only match another request if it is
# also absent there" - so absent must differ from present-but-empty ("").
ABSENT = "\x00absent"

# Fields whose whole value is case-insensitive: content codings (RFC 9110 8.4.1), charsets
# (8.3.2), language ranges (RFC 4647 2), and parameter names/q-values. Not Accept: media type
# parameter values can be case-sensitive.
_CASE_INSENSITIVE = frozenset({"accept-charset", "accept-encoding", "accept-language"})
# Fields whose elements are weighted (RFC 9110 12.4.2): sorted by weight, the weight written
# one way. Within one weight, the order of content codings says nothing (RFC 9110 12.5.3), so
# they are sorted by value too; the order of languages and charsets is the client's
# preference (RFC 4647 2.3: `fr, de` is not `de, fr`), so it is kept.
_WEIGHTED = frozenset({"accept-charset", "accept-encoding", "accept-language"})
_UNORDERED = frozenset({"accept-encoding"})
# Fields that are not #lists although their values may contain commas.
_NOT_LISTS = frozenset({"cookie", "content-type", "date", "if-modified-since", "if-range",
                        "if-unmodified-since", "referer", "user-agent"})
# RFC 9110 5.6.6: whitespace is allowed around ";" in parameters.
_PARAM_WS = re.compile(r"[ \t]*;[ \t]*")
_QVALUE = re.compile(r";q=([0-9.]+)$")


def _normalize(name: str, lines: list[str]) -> str:
    if name == "cookie":
        # RFC 9113 8.2.3: HTTP/2 may split Cookie into several lines; they join with "; ".
        return "; ".join(line.strip(" \t") for line in lines)
    if name in _NOT_LISTS:
        return ", ".join(line.strip(" \t") for line in lines)
    # RFC 9110 5.3: repeated lines are one comma-separated list, and RFC 9111 4.1 lets a cache
    # normalize whitespace around its commas, in unknown fields too (the caching tests'
    # vary-normalise-space and -combine): `1, 2`, `1,2` and two lines `1` and `2` select alike.
    elements = [e if '"' in e else _PARAM_WS.sub(";", e)
                for line in lines for e in split_list(line)]
    if name in _CASE_INSENSITIVE:
        elements = [e.lower() for e in elements]
    if name in _WEIGHTED:
        elements = _by_weight(elements, by_value=name in _UNORDERED)
    return ",".join(elements)


def _by_weight(elements: list[str], by_value: bool) -> list[str]:
    """Elements sorted by weight (highest first), then by value where `by_value` (else in the
    order sent: the sort is stable); `q=1` dropped, others written without trailing zeros
    (`q=0.50` is `q=0.5`)."""
    weighted: list[tuple[float, str]] = []
    for element in elements:
        match = _QVALUE.search(element)
        if match is None:
            weighted.append((1.0, element))
            continue
        try:
            q = float(match.group(1))
        except ValueError:
            weighted.append((1.0, element))  # not a qvalue: kept as sent
            continue
        bare = element[:match.start()]
        weighted.append((q, bare if q == 1 else f"{bare};q={q:.3f}".rstrip("0").rstrip(".")))
    if by_value:
        return [e for _, e in sorted(weighted, key=lambda w: (-w[0], w[1]))]
    return [e for _, e in sorted(weighted, key=lambda w: -w[0])]


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
