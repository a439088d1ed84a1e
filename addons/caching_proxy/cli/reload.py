"""SIGHUP: read the config file again and apply it to the running proxy, as nginx's reload does,
without its new processes: the listener, the store and every open connection are kept.

What a reload does, in order: parse the command line and the config file as at start (the
command line still wins); compare every option with its running value; apply those that changed
and can change live in one mitmproxy options update (which reads the rules again); reopen the
access log. Guarantees:

- a file that does not parse, or values mitmproxy refuses, change nothing (mitmproxy rolls an
  update back whole): one line says why and the running configuration goes on;
- an option that cannot change without a restart (NOT_LIVE: the port, the origin, the store,
  the workers, mitmweb's) is named in one warning and keeps its running value;
- the store is reopened only when its options change, which are not live: never by a reload.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from typing import Any

from mitmproxy import exceptions, master, optmanager

from caching_proxy.cli.config_file import ConfigFile, accept, load
from caching_proxy.cli.options import CACHE_OPTIONS, default_cache_dir, options_given

log = logging.getLogger(__name__)

# Options whose change needs a restart: what the listener, the store and mitmweb are made of.
NOT_LIVE = frozenset({
    "listen_host", "listen_port", "mode", "server", "web_host", "web_port",
    "cache_dir", "cache_store", "cache_size", "cache_memory_size", "cache_lru_interval",
    "cache_store_timeout",
})
# Run flags that set no option but shape the process.
NOT_LIVE_FLAGS = ("workers", "web")
FLAG_OF = {o.name: o.flags[0].name for o in CACHE_OPTIONS if o.flags} | {
    "listen_host": "--host", "listen_port": "--port", "mode": "--origin",
    "web_port": "--web-port", "workers": "--workers", "web": "--web"}


def wanted(args: argparse.Namespace, m: master.Master) -> dict[str, Any]:
    """Every option the command line and config file of `args` set, with its value, and every
    other cache option at its default (a line removed from the file undoes what it set)."""
    values: dict[str, Any] = {o.name: o.default for o in CACHE_OPTIONS}
    values.update(options_given(args))
    values["cache_dir"] = os.path.abspath(os.path.expanduser(args.cache_dir or default_cache_dir()))
    values.update(mode=[f"reverse:{args.origin}"], listen_host=args.host, listen_port=args.port)
    if args.web:
        values["web_port"] = args.web_port
    values.update(parsed_sets(args.setoptions, m.options))
    return values


def parsed_sets(settings: list[str], running: optmanager.OptManager) -> dict[str, Any]:
    """`--set NAME=VALUE` values as mitmproxy parses them, not applied: set on a scratch
    manager holding the same declarations (`set` is mitmproxy's only public parse)."""
    declared = dict(running.items())
    scratch = optmanager.OptManager()
    for setting in settings:
        name = setting.partition("=")[0]
        if name not in declared:
            raise exceptions.OptionsError(f"--set {name}: no such option")
        if name not in scratch:
            o = declared[name]
            scratch.add_option(name, o.typespec, o.default, o.help, o.choices)
    scratch.set(*settings)
    return {name: getattr(scratch, name) for name in {s.partition("=")[0] for s in settings}}


class Reloader:
    """Made at start with what the process was started with; `reload` is SIGHUP's handler."""

    def __init__(self, argv: list[str], args: argparse.Namespace,
                 parse: Callable[[list[str]], argparse.Namespace]) -> None:
        self.argv = argv
        self.running = args
        self.parse = parse
        # Options a --set or [options] line gave: back to their default once that line goes.
        self.set_names = {s.partition("=")[0] for s in args.setoptions}
        # The file as read at start: what a refused first reload goes back to.
        self.started_with: ConfigFile | None = load(args.config) if args.config else None

    def reload(self, m: master.Master) -> bool:
        """Apply the config file again; False when it was refused (nothing changed)."""
        try:
            applied = self._apply(m)
        except (ValueError, exceptions.OptionsError, OSError) as e:  # ConfigError is a ValueError
            log.warning(f"caching-proxy: reload refused, running configuration kept: "
                        f"{' '.join(str(e).split())}")
            applied = False
        except Exception as e:  # a bug must not end a running proxy: said, and nothing changed
            log.exception(f"caching-proxy: reload failed, running configuration kept: {e!r}")
            applied = False
        access_log = m.addons.get("accesslog")
        if access_log is not None:  # reopened either way, as SIGUSR1 does (logrotate)
            access_log.reopen()
        return applied

    def _apply(self, m: master.Master) -> bool:
        args = self.parse(self.argv)
        values = wanted(args, m)
        now_set = {s.partition("=")[0] for s in args.setoptions}
        for name in self.set_names - now_set:
            if name in m.options and name not in values:
                values[name] = m.options.default(name)
        changes = {k: v for k, v in values.items()
                   if k in m.options and getattr(m.options, k) != v}
        kept = sorted({FLAG_OF.get(k, k) for k in changes if k in NOT_LIVE} | {
            FLAG_OF[f] for f in NOT_LIVE_FLAGS
            if getattr(args, f) != getattr(self.running, f)})
        if kept:
            log.warning(f"caching-proxy: reload: {', '.join(kept)} cannot change without a "
                        "restart; kept the running value")
        live = {k: v for k, v in changes.items() if k not in NOT_LIVE}
        path = values.get("cache_config") or ""
        before, rules = None, ""
        if path:
            # Given even when unchanged: the cache reads its rules again, from what was parsed.
            live.setdefault("cache_config", path)
            taken = load(path)
            rules = f" ({len(taken.rules)} rule{'s' if len(taken.rules) != 1 else ''})"
            before = accept(path, taken)
        try:
            # One update, rolled back whole by mitmproxy if any addon refuses a value.
            m.options.update(**live)
        except exceptions.OptionsError:
            if path:
                # mitmproxy's rollback read the rules with the old options: read the old ones.
                accept(path, before if before is not None else self.started_with)
                m.options.update(cache_config=m.options.cache_config)
            raise
        self.set_names = now_set
        names = sorted(k for k in live if k != "cache_config" or k in changes)
        log.info(f"caching-proxy: reloaded {args.config or 'the command line'}{rules}"
                 + (f": {', '.join(FLAG_OF.get(k, k) for k in names)} changed" if names
                    else ": no option changed"))
        return True
