"""What the cache's parts share: the options read once per change, the store, the clock."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mitmproxy.utils import human

from caching_proxy.cli.option_values import parse_beta
from caching_proxy.policy import CacheConfig, Rule, parse_use_stale
from caching_proxy.policy.encoding import default_codings, parse_codings
from caching_proxy.policy.tags import DEFAULT_TAG_FIELDS
from caching_proxy.store.guarded import GuardedStore


@dataclass(frozen=True, slots=True)
class Settings:
    """The cache options as the request path uses them, parsed once in `configure`."""

    config: CacheConfig = field(default_factory=CacheConfig)
    rules: tuple[Rule, ...] = ()
    use_stale: frozenset[str] = frozenset({"error", "timeout", "http_429"})  # the default
    lock_timeout: float = 5.0
    keep_stale: float = 86400.0
    max_object_size: int = 64 << 20
    refresh_timeout: float = 60.0  # a background refresh's bound (first-byte timeout, or 60 s)
    tag_fields: tuple[str, ...] = DEFAULT_TAG_FIELDS
    encodings: tuple[str, ...] = field(default_factory=default_codings)
    compress: bool = False
    keep_tag_fields: bool = False
    refresh_ahead: float = 1.0  # XFetch's beta (policy/origin_budget.py); 0: off
    slice_size: int = 0  # --slice (cache/slices.py); 0: off

    @classmethod
    def from_options(cls, options: Any) -> Settings:
        """ValueError naming the option when one is invalid."""
        return cls(
            config=config_from(options),
            rules=rules_from(options),
            use_stale=parse_use_stale(options.cache_use_stale),
            lock_timeout=float(options.cache_lock_timeout),
            keep_stale=float(options.cache_keep_stale),
            max_object_size=human.parse_size(options.cache_max_object_size) or 0,
            refresh_timeout=float(options.cache_first_byte_timeout or 60),
            tag_fields=tuple(name.strip() for name in options.cache_tag_headers.split(",")
                             if name.strip()),
            keep_tag_fields=bool(options.cache_keep_tag_header),
            encodings=parse_codings(options.cache_encodings),
            compress=bool(options.cache_compress),
            refresh_ahead=parse_beta(options.cache_refresh_ahead),
            slice_size=human.parse_size(options.cache_slice) or 0,
        )


class TooLarge:
    """The cache keys whose last full response streamed past --max-object-size, most recent
    last, at most LIMIT (this process's own memory: a key forgotten costs one whole fetch)."""

    LIMIT = 10_000

    def __init__(self) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()

    def add(self, key: str) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        if len(self._keys) > self.LIMIT:
            self._keys.popitem(last=False)

    def discard(self, key: str) -> None:
        self._keys.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._keys


@dataclass(slots=True)
class Shared:
    """Held by the addon, read by every part: replaced wholesale when options change."""

    settings: Settings = field(default_factory=Settings)
    store: GuardedStore | None = None
    clock: Callable[[], float] = time.time
    # Large bodies may be sent as memoryviews (no addon reads them as bytes; see serve.sendable).
    send_views: bool = False
    # Keys whose whole response was too large to store: their Range requests pass untouched.
    too_large: TooLarge = field(default_factory=lambda: TooLarge())


# What the cache's options make of its storing policy (read once per change, above).
def config_from(options: Any) -> CacheConfig:
    fraction = float(options.cache_heuristic_fraction)
    if not 0 <= fraction <= 1:
        raise ValueError("cache_heuristic_fraction must be between 0 and 1")
    for name in ("cache_default_ttl", "cache_lock_timeout", "cache_first_byte_timeout"):
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
    from caching_proxy.cli.config_file import accepted

    # The file as last accepted (a reload refused whole keeps the running rules).
    return accepted(options.cache_config).rules


def size_limit(options: Any) -> int:
    size = human.parse_size(options.cache_size)
    if size is None or size <= 0:
        raise ValueError("cache_size must be a positive size such as 500m or 1g")
    return size
