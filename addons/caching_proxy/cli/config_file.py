"""`--config FILE`: the CLI's options and per-path rules in one TOML file.

    origin = "http://dummyjson.com"      # any long CLI option, - written as _
    port = 3000
    default_ttl = 120
    [options]                            # mitmproxy and cache options, as with --set
    cache_set_cookie = true
    [[rule]]                             # first matching rule applies (see policy/rules.py)
    match = "/api/*"
    ttl = 60
    ignore_query = ["utm_*", "fbclid"]
    key_headers = ["Accept-Language"]
    [[rule]]
    match = "/err*"
    status = [404, "5xx"]                # with ttl: their lifetime when they state none
    ttl = 30
    [[rule]]
    match = "/forced*"
    ignore = ["cache-control"]           # stored despite Cache-Control: no-store
    ttl = 60
    min_uses = 2                         # stored from the second request on
    bypass_header = "X-No-Cache"         # passed when it has a value other than "" or "0"
    bypass_cookie = "nocache"

Every error names the key and its line, so that a bad file is fixed at once.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caching_proxy.policy import IGNORABLE, Rule, parse_statuses

RULE_KEYS = {"match", "ttl", "default_ttl", "never_cache", "ignore_query", "key_headers",
             "status", "ignore", "min_uses", "bypass_header", "bypass_cookie"}
_FIELD_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: header and cookie names


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ConfigFile:
    path: str
    settings: dict[str, Any] = field(default_factory=dict)  # CLI options
    options: dict[str, Any] = field(default_factory=dict)  # mitmproxy options ([options])
    rules: tuple[Rule, ...] = ()


def line_of(text: str, key: str, table: str | None = None, index: int = 0) -> int | None:
    """The line of `key = ...`, inside the index-th `[[table]]` (or `[table]`) when given."""
    lines = text.splitlines()
    start, end = 0, len(lines)
    if table is not None:
        headers = [i for i, line in enumerate(lines)
                   if re.match(rf"\s*\[\[?\s*{re.escape(table)}\s*\]\]?", line)]
        if index >= len(headers):
            return None
        start = headers[index] + 1
        following = [i for i, line in enumerate(lines) if i >= start and re.match(r"\s*\[", line)]
        end = following[0] if following else len(lines)
        if not key:
            return headers[index] + 1
    pattern = re.compile(rf"""\s*["']?{re.escape(key)}["']?\s*=""")
    for i in range(start, end):
        if pattern.match(lines[i]):
            return i + 1
    return None


def load(path: str) -> ConfigFile:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not UTF-8 text") from e
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from e

    def fail(message: str, key: str, table: str | None = None, index: int = 0) -> ConfigError:
        line = line_of(text, key, table, index)
        where = f"{path}, line {line}" if line else path
        return ConfigError(f"{where}: {message}")

    options = data.pop("options", {})
    if not isinstance(options, dict):
        raise fail("options must be a table: [options]", "options")
    raw_rules = data.pop("rule", [])
    if not isinstance(raw_rules, list):
        raise fail("rule must be an array of tables: [[rule]]", "rule")
    rules = []
    for i, raw in enumerate(raw_rules):
        unknown = set(raw) - RULE_KEYS
        if unknown:
            key = sorted(unknown)[0]
            raise fail(f"unknown key {key!r} in rule {i + 1} (known: "
                       f"{', '.join(sorted(RULE_KEYS))})", key, "rule", i)
        rules.append(_rule(raw, i, fail))
    for key, value in data.items():
        if isinstance(value, dict):
            raise fail(f"unknown table [{key}] (known: [options], [[rule]])", "", key)
    return ConfigFile(path, data, options, tuple(rules))


# A reload's file, by absolute path, once the running proxy took it (cli/reload.py): what the
# cache's rules come from, so that a reload rolled back re-reads the rules it had, not the file.
_accepted: dict[str, ConfigFile] = {}


def accepted(path: str) -> ConfigFile:
    """The file at `path` as the running proxy last took it: as read at start, or by the last
    reload applied."""
    held = _accepted.get(os.path.abspath(path))
    return held if held is not None else load(path)


def accept(path: str, config: ConfigFile | None) -> ConfigFile | None:
    """Make `config` the file the rules come from (None: read `path` itself); the one before."""
    key = os.path.abspath(path)
    before = _accepted.pop(key, None)
    if config is not None:
        _accepted[key] = config
    return before


def _rule(raw: dict[str, Any], i: int, fail: Any) -> Rule:
    def check(key: str, ok: bool, what: str) -> None:
        if key in raw and not ok:
            raise fail(f"rule {i + 1}: {key} must be {what}", key, "rule", i)

    match = raw.get("match")
    if not isinstance(match, str) or not match.startswith("/"):
        raise fail(f"rule {i + 1}: match must be a path glob starting with /, e.g. \"/api/*\"",
                   "match" if "match" in raw else "", "rule", i)
    for key in ("ttl", "default_ttl"):
        value = raw.get(key)
        check(key, isinstance(value, int | float) and not isinstance(value, bool) and value >= 0,
              "a number of seconds >= 0")
    check("never_cache", isinstance(raw.get("never_cache"), bool), "true or false")
    for key in ("ignore_query", "key_headers"):
        value = raw.get(key)
        check(key, isinstance(value, list) and all(isinstance(v, str) and v for v in value),
              "a list of names")
    headers = raw.get("key_headers", [])
    for name in headers:
        if not _FIELD_NAME.fullmatch(name):
            raise fail(f"rule {i + 1}: key_headers: {name!r} is not a header name",
                       "key_headers", "rule", i)
    statuses = _statuses(raw, i, fail)
    ignore = raw.get("ignore", [])
    check("ignore", isinstance(ignore, list) and all(isinstance(v, str) for v in ignore),
          f"a list of field names: any of {', '.join(IGNORABLE)}")
    for name in ignore:
        if name.lower() not in IGNORABLE:
            raise fail(f"rule {i + 1}: ignore: {name!r} is not one of {', '.join(IGNORABLE)}",
                       "ignore", "rule", i)
    min_uses = raw.get("min_uses", 1)
    check("min_uses", isinstance(min_uses, int) and not isinstance(min_uses, bool)
          and min_uses >= 1, "a whole number >= 1")
    for key, what in (("bypass_header", 'a header name, e.g. "X-No-Cache"'),
                      ("bypass_cookie", 'a cookie name, e.g. "nocache"')):
        check(key, isinstance(raw.get(key), str) and bool(_FIELD_NAME.fullmatch(raw[key])), what)
    return Rule(
        match=match,
        ttl=float(raw["ttl"]) if "ttl" in raw else None,
        default_ttl=float(raw["default_ttl"]) if "default_ttl" in raw else None,
        never_cache=bool(raw.get("never_cache", False)),
        ignore_query=tuple(raw.get("ignore_query", [])),
        key_headers=tuple(sorted({h.lower() for h in headers})),
        status=statuses,
        ignore=frozenset(name.lower() for name in ignore),
        min_uses=int(min_uses),
        bypass_header=raw["bypass_header"].lower() if "bypass_header" in raw else None,
        bypass_cookie=raw.get("bypass_cookie"),
    )


def _statuses(raw: dict[str, Any], i: int, fail: Any) -> frozenset[int]:
    """`status = [404, "5xx"]`, which needs `ttl`: without it the rule would say nothing about
    those statuses (their lifetime is the point), so the file is wrong."""
    if "status" not in raw:
        return frozenset()
    value = raw["status"]
    if not isinstance(value, list) or not value:
        raise fail(f"rule {i + 1}: status must be a list of statuses, e.g. [404, 410] or "
                   f"[\"5xx\"]", "status", "rule", i)
    try:
        statuses = parse_statuses(value)
    except ValueError as e:
        raise fail(f"rule {i + 1}: status: {e}", "status", "rule", i) from None
    if "ttl" not in raw:
        raise fail(f"rule {i + 1}: status needs ttl = SECONDS, the lifetime of responses of "
                   f"those statuses that state none", "status", "rule", i)
    return statuses
