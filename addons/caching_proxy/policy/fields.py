"""Header field access shared by the policy modules: list splitting, HTTP-dates, delta-seconds."""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Sequence

# Field name and value as sent (bytes decoded latin-1), order kept, repeated fields repeated.
Headers = Sequence[tuple[str, str]]

# RFC 9111 1.2.2: a delta-seconds too large to represent is taken as 2^31.
DELTA_SECONDS_MAX = 2147483648

# RFC 9110 7.6.1 connection-specific fields, plus Proxy-Connection (obsolete but still sent) and
# Trailer (it describes this message's framing, which the cache does not replay).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
        "trailer",
    }
)
# RFC 9111 3.1: fields specific to the proxy used to forward the request MUST NOT be stored.
PROXY_SPECIFIC = frozenset(
    {"proxy-authenticate", "proxy-authentication-info", "proxy-authorization"}
)


def field_lines(headers: Headers, name: str) -> list[str]:
    """Every line of field `name` (case-insensitive), values as sent."""
    name = name.lower()
    return [v for k, v in headers if k.lower() == name]


def has_field(headers: Headers, name: str) -> bool:
    name = name.lower()
    return any(k.lower() == name for k, _ in headers)


def first_value(headers: Headers, name: str) -> str | None:
    """The first line of a singleton field, trimmed (RFC 9111 4.2.1: duplicates -> first)."""
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v.strip(" \t")
    return None


def split_list(value: str) -> list[str]:
    """Split an RFC 9110 5.6.1 #list on commas outside quoted strings; empty elements dropped."""
    if '"' not in value:
        # Fast path: the overwhelmingly common case has no quoted strings.
        return [p for p in (s.strip(" \t") for s in value.split(",")) if p]
    out: list[str] = []
    start = 0
    quoted = False
    escaped = False
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif quoted:
            if ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == ",":
            part = value[start:i].strip(" \t")
            if part:
                out.append(part)
            start = i + 1
    part = value[start:].strip(" \t")
    if part:
        out.append(part)
    return out


def field_values(headers: Headers, name: str) -> list[str]:
    """All list elements of field `name` over all its lines (RFC 9110 5.3 combines them)."""
    out: list[str] = []
    for line in field_lines(headers, name):
        out.extend(split_list(line))
    return out


def unquote(value: str) -> str:
    """The content of an RFC 9110 5.6.4 quoted-string; other values are returned as they are."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_delta_seconds(value: str) -> int | None:
    """RFC 9111 1.2.2 delta-seconds (1*DIGIT); None when invalid, clamped to 2^31."""
    if not value or not value.isascii() or not value.isdigit():
        return None
    # Bound the work on absurdly long digit strings before int().
    if len(value) > 10:
        return DELTA_SECONDS_MAX
    return min(int(value), DELTA_SECONDS_MAX)


_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
_DAY = r"(?:mon|tue|wed|thu|fri|sat|sun)"
_DAY_L = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_MON = r"([a-z]{3})"
_TIME = r"(\d{2}):(\d{2}):(\d{2})"
# RFC 9110 5.6.7: IMF-fixdate, then the obsolete rfc850-date and asctime-date that recipients
# MUST accept, exactly as the grammar has them: single spaces, two-digit day and hour, a comma
# after the day name. Anything else is invalid (for Expires: already expired, RFC 9111 5.3),
# as the HTTP cache tests expect (freshness-expires-invalid-*). The grammar is case-sensitive,
# but letter case is the one leniency kept ("gmt", "THU", "AUG"): it is unambiguous, and the
# suite counts reusing such responses as optimal. Day names are not checked against the date.
_IMF = re.compile(_DAY + r", (\d{2}) " + _MON + r" (\d{4}) " + _TIME + r" gmt", re.ASCII | re.I)
_RFC850 = re.compile(
    _DAY_L + r", (\d{2})-" + _MON + r"-(\d{2}) " + _TIME + r" gmt", re.ASCII | re.I
)
# date3 = month SP ( 2DIGIT / ( SP DIGIT ) ): "Nov  6" or "Nov 16".
_ASCTIME = re.compile(
    _DAY + r" " + _MON + r" (\d{2}| \d) " + _TIME + r" (\d{4})", re.ASCII | re.I
)


def parse_http_date(value: str | None) -> float | None:
    """Epoch seconds of an RFC 9110 HTTP-date, or None when absent or invalid."""
    if not value:
        return None
    value = value.strip(" \t")
    m = _IMF.fullmatch(value)
    if m:
        day, mon, year, hh, mm, ss = m.groups()
    else:
        m = _RFC850.fullmatch(value)
        if m:
            day, mon, yy, hh, mm, ss = m.groups()
            # RFC 9110 5.6.7 wants "more than 50 years in the future" resolved against the
            # current year; a pure function has no clock, so use a fixed 1970..2069 window.
            year = str((2000 if int(yy) < 70 else 1900) + int(yy))
        else:
            m = _ASCTIME.fullmatch(value)
            if not m:
                return None
            mon, day, hh, mm, ss, year = m.groups()
    month = _MONTHS.get(mon.lower())
    if month is None:
        return None
    d, y, h, mi, s = int(day), int(year), int(hh), int(mm), int(ss)
    # Year 0000 fits the grammar but not the calendar (datetime raises on it).
    if y < 1 or not (1 <= d <= calendar.monthrange(y, month)[1] and h < 24 and mi < 60 and s <= 60):
        return None
    # RFC 9110 5.6.7 allows second 60 (leap second); fold it into the next minute.
    return float(calendar.timegm((y, month, d, h, mi, 0, 0, 0, 0)) + s)


_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_NAMES = tuple(m.title() for m in _MONTHS)


def format_http_date(epoch: float) -> str:
    """IMF-fixdate (RFC 9110 5.6.7), the only format a sender may generate; locale-independent."""
    t = time.gmtime(max(0, int(epoch)))
    return (
        f"{_DAY_NAMES[t.tm_wday]}, {t.tm_mday:02d} {_MONTH_NAMES[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )
