"""Per-path rules from the config file, like nginx `location` blocks or requests-cache's
`urls_expire_after`: the first rule whose glob matches the request's path applies.

A rule can override the freshness lifetime of the responses it stores (as nginx
`proxy_cache_valid` with `proxy_ignore_headers Cache-Control Expires`), set the lifetime of
responses without explicit freshness (`proxy_cache_valid` alone), keep a path out of the cache,
leave query parameters out of the key (the origin still gets them), and add request fields to
the key (as if the origin had named them in Vary).

Operator overrides (nginx `proxy_cache_valid STATUS`, `proxy_ignore_headers`,
`proxy_cache_min_uses`, `proxy_cache_bypass`; Squid's `refresh_pattern` override-expire,
ignore-no-store, ignore-private): a rule can give a lifetime to responses of listed statuses
that state no freshness (`status` with `ttl`), make the storing decision ignore response fields
(`ignore`), admit a response only after N requests (`min_uses`, counted by the store) and pass
requests that carry a header or cookie (`bypass_header`, `bypass_cookie`). Only `ignore` makes
the cache store what the origin forbids; it is per rule and shows in Cache-Status.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from urllib.parse import parse_qsl, urlencode

from .config import CacheConfig
from .fields import Headers, field_lines, field_values

# Response fields a rule may make the storing decision ignore. "cache-control" covers the
# targeted fields too (CDN-Cache-Control, RFC 9213): they are this cache's Cache-Control.
IGNORABLE = ("cache-control", "expires", "set-cookie", "vary")
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")
# Never stored whatever a rule says: partial content and 304 (RFC 9111 3, 3.3).
_NEVER_STORED = frozenset({206, 304})


@dataclass(frozen=True, slots=True)
class Rule:
    match: str  # glob over the path without its query (fnmatch: *, ?, [...]; * spans slashes)
    ttl: float | None = None
    default_ttl: float | None = None
    never_cache: bool = False
    ignore_query: tuple[str, ...] = ()  # globs of parameter names
    key_headers: tuple[str, ...] = ()  # lowercase field names
    # With `status`, `ttl` is the lifetime of responses of these statuses that state no
    # freshness (and only theirs), instead of replacing every response's lifetime.
    status: frozenset[int] = frozenset()
    ignore: frozenset[str] = frozenset()  # of IGNORABLE
    min_uses: int = 1
    bypass_header: str | None = None  # lowercase field name
    bypass_cookie: str | None = None  # cookie name, case-sensitive


def parse_statuses(values: list[object]) -> frozenset[int]:
    """The statuses `status = [404, "5xx"]` names; ValueError naming a bad member. 206 and 304
    are never stored, so a class leaves them out and naming one is an error."""
    found: set[int] = set()
    for value in values:
        if isinstance(value, str) and value.lower() in STATUS_CLASSES:
            base = int(value[0]) * 100
            found.update(s for s in range(base, base + 100) if s not in _NEVER_STORED)
        elif (isinstance(value, int) and not isinstance(value, bool) and 200 <= value <= 599
              and value not in _NEVER_STORED):
            found.add(value)
        else:
            raise ValueError(f"{value!r} is not a status 200-599 (but 206, 304) nor one of "
                             f"{', '.join(STATUS_CLASSES)}")
    return frozenset(found)


def find_rule(rules: tuple[Rule, ...], target: str) -> Rule | None:
    path = target.split("?", 1)[0]
    for rule in rules:
        if fnmatchcase(path, rule.match):
            return rule
    return None


def key_target(target: str, rule: Rule) -> str:
    """The request target as the key sees it: the rule's ignored query parameters removed, the
    others kept in their order (so that the key of a target without them is unchanged)."""
    path, sep, query = target.partition("?")
    if not sep or not rule.ignore_query:
        return target
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True)
            if not any(fnmatchcase(k, pattern) for pattern in rule.ignore_query)]
    if len(kept) == len(parse_qsl(query, keep_blank_values=True)):
        return target  # nothing ignored: the target exactly as sent, no re-encoding
    return f"{path}?{urlencode(kept)}" if kept else path


def rule_config(config: CacheConfig, rule: Rule) -> CacheConfig:
    """The storing configuration for a response under `rule`."""
    return replace(
        config,
        default_ttl=config.default_ttl if rule.default_ttl is None else rule.default_ttl,
        ttl_override=None if rule.status else rule.ttl,
        status_ttl=rule.ttl if rule.status else None,
        statuses=rule.status,
        ignore=rule.ignore,
        min_uses=rule.min_uses,
        key_headers=rule.key_headers,
    )


def rule_bypass(rule: Rule, request_headers: Headers) -> str | None:
    """"bypass-header" or "bypass-cookie" when the request carries the rule's bypass field or
    cookie with a value other than empty or "0" (as nginx's proxy_cache_bypass reads its
    variables); None otherwise."""
    if rule.bypass_header is not None and any(
            v.strip() not in ("", "0") for v in field_lines(request_headers, rule.bypass_header)):
        return "bypass-header"
    if rule.bypass_cookie is not None:
        for line in field_lines(request_headers, "cookie"):
            for pair in line.split(";"):
                name, _, value = pair.strip().partition("=")
                if name.strip() == rule.bypass_cookie and value.strip().strip('"') not in ("", "0"):
                    return "bypass-cookie"
    return None


def ignored_fields(config: CacheConfig) -> frozenset[str]:
    """The lowercase response field names the storing decision under `config` leaves out."""
    if not config.ignore:
        return frozenset()
    names = set(config.ignore) - {"vary"}
    if "cache-control" in config.ignore:
        names.update(config.targeted_fields)
    return frozenset(names)


def decision_headers(headers: Headers, config: CacheConfig) -> Headers:
    """The response fields the storing decision reads under `config`: its ignored fields left
    out; an ignored Vary keeps only Accept-Encoding, which the proxy normalizes, so that a
    compressed body never reaches a client that cannot decode it."""
    if not config.ignore:
        return headers
    drop = ignored_fields(config)
    kept = [(k, v) for k, v in headers if k.lower() not in drop and k.lower() != "vary"]
    if "vary" not in config.ignore:
        kept += [(k, v) for k, v in headers if k.lower() == "vary"]
    elif any(v.lower() == "accept-encoding" for v in field_values(headers, "vary")):
        kept.append(("Vary", "Accept-Encoding"))
    return kept


def stripped_fields(config: CacheConfig) -> frozenset[str]:
    """Fields left out of the stored copy under `config`: a Set-Cookie the rule ignored (as
    Varnish's `unset beresp.http.Set-Cookie`), so one client's cookie never reaches another.
    The client whose request filled the cache still gets it."""
    return frozenset({"set-cookie"}) & config.ignore


def overridden(headers: Headers, config: CacheConfig) -> tuple[str, ...]:
    """Which of the rule's ignored fields the response carries (in IGNORABLE's order): what the
    override changed, for Cache-Status."""
    if not config.ignore:
        return ()
    present = {k.lower() for k, _ in headers}
    found = []
    for name in IGNORABLE:
        if name not in config.ignore:
            continue
        if name == "cache-control":
            hit = bool(present & ({"cache-control"} | set(config.targeted_fields)))
        elif name == "vary":
            hit = any(v.lower() != "accept-encoding" for v in field_values(headers, "vary"))
        else:
            hit = name in present
        if hit:
            found.append(name)
    return tuple(found)


def override_detail(headers: Headers, config: CacheConfig) -> str | None:
    """The Cache-Status detail naming what a rule's `ignore` overrode, e.g.
    "ignored:cache-control+set-cookie" (an sf-token); None when it overrode nothing."""
    names = overridden(headers, config)
    return "ignored:" + "+".join(names) if names else None
