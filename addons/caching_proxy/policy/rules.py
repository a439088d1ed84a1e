"""Per-path rules from the config file, like nginx `location` blocks or requests-cache's
`urls_expire_after`: the first rule whose glob matches the request's path applies.

A rule can override the freshness lifetime of the responses it stores (as nginx
`proxy_cache_valid` with `proxy_ignore_headers Cache-Control Expires`), set the lifetime of
responses without explicit freshness (`proxy_cache_valid` alone), keep a path out of the cache,
leave query parameters out of the key (the origin still gets them), and add request fields to
the key (as if the origin had named them in Vary).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from urllib.parse import parse_qsl, urlencode

from .config import CacheConfig


@dataclass(frozen=True, slots=True)
class Rule:
    match: str  # glob over the path without its query (fnmatch: *, ?, [...]; * spans slashes)
    ttl: float | None = None
    default_ttl: float | None = None
    never_cache: bool = False
    ignore_query: tuple[str, ...] = ()  # globs of parameter names
    key_headers: tuple[str, ...] = ()  # lowercase field names


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
        ttl_override=rule.ttl,
        key_headers=rule.key_headers,
    )
