"""Big bodies: responses over cache_max_object_size stream through and are not stored.

mitmproxy streams a body once it is known (Content-Length) or seen (chunked, read to close) to
exceed `stream_large_bodies`, holding at most that much; a streamed response has no body to store
(`CacheAddon` skips it). This addon sets that option from the cache's own.
"""

from __future__ import annotations

from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader
from mitmproxy.utils import human

from caching_proxy.cli import options as opts
from caching_proxy.cli.options import DEFAULTS

# cache_max_object_size is declared with the other cache options (options.CACHE_OPTIONS).
DEFAULT_MAX_OBJECT_SIZE: str = DEFAULTS["cache_max_object_size"]


class BodyLimit:
    def load(self, loader: Loader) -> None:
        opts.declare(loader, self)
        # configure() runs only for options that change: apply the default now (proxyserver,
        # which declares stream_large_bodies, is loaded before this addon).
        if "stream_large_bodies" in loader.master.options:
            loader.master.options.update(stream_large_bodies=DEFAULT_MAX_OBJECT_SIZE)

    def configure(self, updated: set[str]) -> None:
        if "cache_max_object_size" not in updated:
            return
        size = human.parse_size(ctx.options.cache_max_object_size)
        if size is None or size <= 0:
            raise exceptions.OptionsError(
                "cache_max_object_size must be a positive size such as 64m or 1g")
        ctx.options.stream_large_bodies = ctx.options.cache_max_object_size
