"""mitmproxy commands on the store: `cache.clear`, `cache.purge`, `cache.stats`, usable from
mitmweb's and mitmproxy's command prompt (`:cache.purge /api/*`) like mitmproxy's own."""

from __future__ import annotations

import json

from mitmproxy import command, ctx, exceptions

from caching_proxy.cache.addon import CacheAddon
from caching_proxy.edge.purge import counted, remove
from caching_proxy.ops.counters import Counters
from caching_proxy.ops.report import stats_of
from caching_proxy.store import Store


def reverse_origin() -> str | None:
    """`scheme://host:port` of the origin of the first reverse mode, if any."""
    specs: list[str] = ctx.options.mode
    for spec in specs:
        if spec.startswith("reverse:"):
            return spec.removeprefix("reverse:").split("@", 1)[0]
    return None


class CacheCommands:
    def __init__(self, cache: CacheAddon, counters: Counters) -> None:
        self.cache = cache
        self.counters = counters

    def _store(self) -> Store:
        if self.cache.store is None:
            raise exceptions.CommandError("the cache store is not open")
        return self.cache.store

    @command.command("cache.clear")
    def clear(self) -> str:
        """Remove every stored response."""
        removed = self._store().clear()
        return f"cleared {removed.entries} entries ({removed.bytes} bytes)"

    @command.command("cache.purge")
    def purge(self, target: str) -> str:
        """Remove the stored responses of a /path of the origin or a URL (all Vary variants);
        `*` makes it a glob, e.g. /api/*."""
        try:
            removed = remove(self._store(), target, origin=reverse_origin())
        except ValueError as e:
            raise exceptions.CommandError(str(e)) from e
        return f"purged {counted(removed.count)} for {target}"

    @command.command("cache.stats")
    def stats(self) -> str:
        """Entries, bytes, hits, misses, hit ratio, stale served, revalidations, origin errors
        (as JSON)."""
        self.counters.flush()
        return json.dumps(stats_of(self._store()))
