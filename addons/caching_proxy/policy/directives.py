"""Cache directives: Cache-Control (RFC 9111 5.2), Pragma (5.4) and RFC 9213 targeted fields.

Cache-Control is parsed leniently: directive names are case-insensitive, arguments may be a
token or a quoted-string (5.2: recipients accept both forms), unknown directives are ignored.
Bad or repeated values follow RFC 9111 4.2.1: a repeated directive uses its first occurrence,
and an invalid freshness value (max-age=abc, max-age=-1, max-age=1.5) makes the response stale
(lifetime 0), the option 4.2.1 encourages. Conflicts resolve to the most restrictive reading
(4.2.1), e.g. no-cache and no-cache="x" together mean unqualified no-cache.

Targeted fields (RFC 9213 2.2): the first field of `CacheConfig.targeted_fields` that is present,
non-empty and a valid RFC 8941 Dictionary replaces Cache-Control AND Expires for this cache's
storing and freshness decisions; an invalid or empty one is ignored as if absent. A directive
whose value has the wrong structured type (max-age=1.5, max-age="60") is read the same
restrictive way as in Cache-Control (RFC 9213 2.1: such values SHOULD NOT be consumed as is).

What the addon forwards: every field, untouched. Cache-Control and Expires go downstream as the
origin sent them (they are still the policy for the client and any other cache). RFC 9213 3 says
a CDN cache using CDN-Cache-Control "will typically forward" it so downstream CDNs can use it,
and MAY remove it when configured to; targeted fields not on our target list MUST be passed
through (2.2). So the addon forwards CDN-Cache-Control as well; stripping it would be an opt-in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .fields import (
    Headers,
    field_lines,
    field_values,
    parse_delta_seconds,
    split_list,
    unquote,
)
from .structured import SFError, parse_dictionary_lines


@dataclass(frozen=True, slots=True)
class ResponseDirectives:
    """The response directives this (shared) cache acts on, from whichever field won."""

    max_age: float | None = None  # invalid value -> 0.0 (stale)
    s_maxage: float | None = None  # idem
    no_store: bool = False
    no_cache: bool = False  # unqualified
    no_cache_fields: tuple[str, ...] = ()  # lowercase
    private: bool = False  # unqualified
    private_fields: tuple[str, ...] = ()  # lowercase
    public: bool = False
    must_revalidate: bool = False
    proxy_revalidate: bool = False
    must_understand: bool = False
    immutable: bool = False
    stale_while_revalidate: float = 0.0  # RFC 5861; invalid -> 0
    stale_if_error: float = 0.0
    # Field the directives came from: a targeted field name, "cache-control", or "" when neither.
    source: str = ""

    @property
    def targeted(self) -> bool:
        return self.source not in ("", "cache-control")


def _field_names(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n.lower() for n in split_list(value)))


def _merge_fields(old: tuple[str, ...], new: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(old + new))


def parse_cache_control(lines: Sequence[str]) -> ResponseDirectives:
    """Response Cache-Control (RFC 9111 5.2.2) from its field lines."""
    max_age: float | None = None
    s_maxage: float | None = None
    swr: float | None = None
    sie: float | None = None
    no_store = no_cache = private = public = False
    must_revalidate = proxy_revalidate = must_understand = immutable = False
    no_cache_fields: tuple[str, ...] = ()
    private_fields: tuple[str, ...] = ()
    for line in lines:
        for element in split_list(line):
            name, eq, raw = element.partition("=")
            name = name.strip(" \t").lower()
            value = unquote(raw.strip(" \t"))
            if name == "max-age":
                if max_age is None:
                    max_age = _delta_or_stale(value)
            elif name == "s-maxage":
                if s_maxage is None:
                    s_maxage = _delta_or_stale(value)
            elif name == "no-store":
                no_store = True
            elif name == "no-cache":
                names = _field_names(value) if eq else ()
                if names:
                    no_cache_fields = _merge_fields(no_cache_fields, names)
                else:
                    no_cache = True
            elif name == "private":
                names = _field_names(value) if eq else ()
                if names:
                    private_fields = _merge_fields(private_fields, names)
                else:
                    private = True
            elif name == "public":
                public = True
            elif name == "must-revalidate":
                must_revalidate = True
            elif name == "proxy-revalidate":
                proxy_revalidate = True
            elif name == "must-understand":
                must_understand = True
            elif name == "immutable":
                immutable = True
            elif name == "stale-while-revalidate":
                if swr is None:
                    swr = float(parse_delta_seconds(value) or 0)
            elif name == "stale-if-error" and sie is None:
                sie = float(parse_delta_seconds(value) or 0)
    return ResponseDirectives(
        max_age=max_age,
        s_maxage=s_maxage,
        no_store=no_store,
        no_cache=no_cache,
        no_cache_fields=() if no_cache else no_cache_fields,
        private=private,
        private_fields=() if private else private_fields,
        public=public,
        must_revalidate=must_revalidate,
        proxy_revalidate=proxy_revalidate,
        must_understand=must_understand,
        immutable=immutable,
        stale_while_revalidate=swr or 0.0,
        stale_if_error=sie or 0.0,
        source="cache-control" if lines else "",
    )


def _delta_or_stale(value: str) -> float:
    d = parse_delta_seconds(value)
    return 0.0 if d is None else float(d)


def _sf_delta(value: object) -> float | None:
    """An sf-integer >= 0, else None (the caller picks the restrictive reading)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return float(min(value, 2147483648))


def _sf_fields(value: object) -> tuple[str, ...] | None:
    """Field names of a qualified no-cache/private: an sf-string (or a lone token); else None."""
    if isinstance(value, str):
        return _field_names(value) or None
    return None


def _from_targeted(members: dict[str, object], source: str) -> ResponseDirectives:
    def delta(key: str) -> float | None:
        if key not in members:
            return None
        d = _sf_delta(members[key])
        return 0.0 if d is None else d

    no_cache = private = False
    no_cache_fields: tuple[str, ...] = ()
    private_fields: tuple[str, ...] = ()
    if "no-cache" in members:
        names = _sf_fields(members["no-cache"])
        no_cache = names is None
        no_cache_fields = names or ()
    if "private" in members:
        names = _sf_fields(members["private"])
        private = names is None
        private_fields = names or ()
    return ResponseDirectives(
        max_age=delta("max-age"),
        s_maxage=delta("s-maxage"),
        # Presence with any value counts for the restrictive directives, only True for public.
        no_store="no-store" in members,
        no_cache=no_cache,
        no_cache_fields=no_cache_fields,
        private=private,
        private_fields=private_fields,
        public=members.get("public") is True,
        must_revalidate="must-revalidate" in members,
        proxy_revalidate="proxy-revalidate" in members,
        must_understand="must-understand" in members,
        immutable=members.get("immutable") is True,
        stale_while_revalidate=_sf_delta(members.get("stale-while-revalidate")) or 0.0,
        stale_if_error=_sf_delta(members.get("stale-if-error")) or 0.0,
        source=source,
    )


def targeted_directives(
    headers: Headers, targeted_fields: Sequence[str]
) -> ResponseDirectives | None:
    """RFC 9213 2.2: directives of the first present, non-empty, valid targeted field, else None."""
    for name in targeted_fields:
        lines = field_lines(headers, name)
        if not lines or not any(line.strip(" \t") for line in lines):
            continue
        try:
            members = parse_dictionary_lines(lines)
        except SFError:
            continue
        if members:
            return _from_targeted(dict(members), name.lower())
    return None


def response_directives(headers: Headers, targeted_fields: Sequence[str]) -> ResponseDirectives:
    """Effective directives for this cache: a targeted field if one applies, else Cache-Control.

    Check `.targeted` to know whether Expires must be ignored (RFC 9213 2.2).
    """
    if targeted_fields:
        found = targeted_directives(headers, targeted_fields)
        if found is not None:
            return found
    return parse_cache_control(field_lines(headers, "cache-control"))


@dataclass(frozen=True, slots=True)
class RequestDirectives:
    """RFC 9111 5.2.1 request directives, plus RFC 5861 4 stale-if-error."""

    no_store: bool = False
    no_cache: bool = False
    max_age: float | None = None  # invalid value -> 0.0 (the restrictive reading)
    max_stale: float | None = None  # max-stale without a value = math.inf; invalid -> None
    min_fresh: float | None = None  # invalid -> None
    only_if_cached: bool = False
    stale_if_error: float | None = None  # invalid -> None


# The common case (no Cache-Control, no Pragma): the hit path can skip parsing.
NO_DIRECTIVES = RequestDirectives()


def parse_request_directives(request_headers: Headers) -> RequestDirectives:
    cc_lines = field_lines(request_headers, "cache-control")
    if not cc_lines:
        # RFC 9111 5.4: Pragma: no-cache means Cache-Control: no-cache only without Cache-Control.
        if any(v.lower() == "no-cache" for v in field_values(request_headers, "pragma")):
            return RequestDirectives(no_cache=True)
        return NO_DIRECTIVES
    no_store = no_cache = only_if_cached = False
    max_age: float | None = None
    max_stale: float | None = None
    min_fresh: float | None = None
    sie: float | None = None
    seen: set[str] = set()
    for line in cc_lines:
        for element in split_list(line):
            name, eq, raw = element.partition("=")
            name = name.strip(" \t").lower()
            value = unquote(raw.strip(" \t"))
            first = name not in seen  # RFC 9111 4.2.1 spirit: the first occurrence is used
            seen.add(name)
            if name == "no-store":
                no_store = True
            elif name == "no-cache":
                no_cache = True
            elif name == "only-if-cached":
                only_if_cached = True
            elif not first:
                continue
            elif name == "max-age":
                max_age = _delta_or_stale(value)
            elif name == "max-stale":
                if not eq:
                    max_stale = math.inf
                else:
                    d = parse_delta_seconds(value)
                    max_stale = None if d is None else float(d)
            elif name == "min-fresh":
                d = parse_delta_seconds(value)
                min_fresh = None if d is None else float(d)
            elif name == "stale-if-error":
                d = parse_delta_seconds(value)
                sie = None if d is None else float(d)
    return RequestDirectives(
        no_store=no_store,
        no_cache=no_cache,
        max_age=max_age,
        max_stale=max_stale,
        min_fresh=min_fresh,
        only_if_cached=only_if_cached,
        stale_if_error=sie,
    )
