"""What the cache's parts share: the options read once per change, the store, the clock."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mitmproxy.utils import human

from caching_proxy.cli import options as opts
from caching_proxy.policy import CacheConfig, Rule, parse_use_stale
from caching_proxy.policy.encoding import default_codings, parse_codings
from caching_proxy.policy.tags import DEFAULT_TAG_FIELDS
from caching_proxy.store.guarded import GuardedStore


@dataclass(frozen=True, slots=True)
class Settings:
    """The cache options as the request path uses them, parsed once in `configure`."""

    config: CacheConfig = field(default_factory=CacheConfig)
    rules: tuple[Rule, ...] = ()
    use_stale: frozenset[str] = frozenset({"error", "timeout"})  # as the option's default
    lock_timeout: float = 5.0
    keep_stale: float = 86400.0
    max_object_size: int = 64 << 20
    refresh_timeout: float = 60.0  # a background refresh's bound (first-byte timeout, or 60 s)
    tag_fields: tuple[str, ...] = DEFAULT_TAG_FIELDS
    encodings: tuple[str, ...] = field(default_factory=default_codings)
    compress: bool = False
    keep_tag_fields: bool = False

    @classmethod
    def from_options(cls, options: Any) -> Settings:
        """ValueError naming the option when one is invalid."""
        return cls(
            config=opts.config_from(options),
            rules=opts.rules_from(options),
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
