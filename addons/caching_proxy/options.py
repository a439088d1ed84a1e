"""The addon's mitmproxy options: declared once, read into the policy's configuration."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mitmproxy.utils import human

from caching_proxy.policy import CacheConfig, Rule, parse_use_stale

CACHE_NAME = "caching-proxy"


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "caching-proxy")


# name, type, default, help. Declared through mitmproxy's option system so `--set`, mitmproxy's
# config.yaml and mitmweb's option editor all see them.
OPTIONS: tuple[tuple[str, type, Any, str], ...] = (
    ("cache_dir", str, default_cache_dir(), "Folder of the response store (diskcache)."),
    (
        "cache_store",
        str,
        "",
        "Where responses are stored: empty for diskcache in cache_dir, or a Redis URL "
        "(redis://host:6379/0) shared by several proxy instances.",
    ),
    (
        "cache_size",
        str,
        "1g",
        "Upper bound of the store on disk (e.g. 500m, 1g); least recently used entries are "
        "evicted past it.",
    ),
    (
        "cache_default_ttl",
        int,
        300,
        "Seconds a response without explicit freshness (and without Last-Modified) stays fresh. "
        "0: such responses are never reused without asking the origin.",
    ),
    (
        "cache_lru_interval",
        int,
        300,
        "Seconds within which repeated use of an entry counts once for least-recently-used "
        "eviction (Varnish's lru_interval); saves a disk write on every hit.",
    ),
    (
        "cache_heuristic_fraction",
        str,
        "0.1",
        "Fraction of (Date - Last-Modified) used as the lifetime of a response without explicit "
        "freshness (RFC 9111 4.2.2).",
    ),
    (
        "cache_heuristic_max",
        int,
        86400,
        "Upper bound in seconds of a heuristic lifetime.",
    ),
    (
        "cache_set_cookie",
        bool,
        False,
        "Store responses that carry Set-Cookie (nginx and Varnish do not by default).",
    ),
    (
        "cache_cookie_requests",
        bool,
        False,
        "Answer and store requests that carry Cookie (Varnish passes them by default).",
    ),
    (
        "cache_targeted_fields",
        str,
        "CDN-Cache-Control",
        "RFC 9213 targeted cache-control fields this cache obeys over Cache-Control, highest "
        "precedence first, comma separated.",
    ),
    (
        "cache_config",
        str,
        "",
        "TOML file of per-path rules ([[rule]]: match, ttl, default_ttl, never_cache, "
        "ignore_query, key_headers); see README.",
    ),
    (
        "cache_keep_stale",
        int,
        86400,
        "Seconds a stale response is kept past its freshness: to be revalidated with a conditional "
        "request instead of fetched again, or served where max-stale or stale-if-error allow.",
    ),
    (
        "cache_lock_timeout",
        int,
        5,
        "Seconds a request for a response being fetched for another client waits for it "
        "(request coalescing, nginx proxy_cache_lock) before going to the origin itself. "
        "0: no coalescing.",
    ),
    (
        "cache_use_stale",
        str,
        "off",
        "When to answer with a stored stale response instead of an origin failure, whatever its "
        "stale-if-error (nginx proxy_cache_use_stale): any of error, timeout, http_500, "
        "http_502, http_503, http_504, comma separated; off: only where stale-if-error allows.",
    ),
    (
        "cache_connect_timeout",
        int,
        10,
        "Seconds to connect to the origin before answering 504 (or a stale response). 0: none.",
    ),
    (
        "cache_first_byte_timeout",
        int,
        60,
        "Seconds from forwarding a request (once connected) to the origin's response headers "
        "before answering 504 (or a stale response). 0: none.",
    ),
    (
        "cache_response_timeout",
        int,
        0,
        "Seconds a whole origin response may take, body included; past it the exchange is cut "
        "(504 if nothing was sent yet). 0: no limit.",
    ),
)


def config_from(options: Any) -> CacheConfig:
    fraction = float(options.cache_heuristic_fraction)
    if not 0 <= fraction <= 1:
        raise ValueError("cache_heuristic_fraction must be between 0 and 1")
    for name in ("cache_default_ttl", "cache_lock_timeout", "cache_connect_timeout",
                 "cache_first_byte_timeout", "cache_response_timeout"):
        if getattr(options, name) < 0:
            raise ValueError(f"{name} must not be negative")
    parse_use_stale(options.cache_use_stale)
    fields = tuple(
        name.strip().lower() for name in options.cache_targeted_fields.split(",") if name.strip()
    )
    return CacheConfig(
        default_ttl=float(options.cache_default_ttl),
        heuristic_fraction=fraction,
        heuristic_max=float(options.cache_heuristic_max),
        cache_set_cookie=options.cache_set_cookie,
        targeted_fields=fields,
        cache_cookie_requests=options.cache_cookie_requests,
    )


def rules_from(options: Any) -> tuple[Rule, ...]:
    if not options.cache_config:
        return ()
    from caching_proxy.config_file import load

    return load(options.cache_config).rules


def size_limit(options: Any) -> int:
    size = human.parse_size(options.cache_size)
    if size is None or size <= 0:
        raise ValueError("cache_size must be a positive size such as 500m or 1g")
    return size
