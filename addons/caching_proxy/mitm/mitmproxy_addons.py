"""mitmproxy's own addons for the lean master, loaded only for the options that need them.

The lean master (runner.py) loads the few addons a reverse proxy needs; mitmproxy's others
(modify_headers, block_list, map_remote, scripts, ...) declare their options only once loaded,
so `--set modify_headers=...` would be an unknown option. Each option named (by `--set`, the
config file's [options], or `-s`) loads the addon that declares it, and nothing else: the
default start stays as lean as it was (mitm/lean_imports.py), and an addon such as Block
(block_global, on by default in mitmproxy, refuses public clients) is loaded only when asked for.

Where they go in the chain is where `mitmdump -s addons/cache.py` has them: those mitmproxy
lists before its script loader run before the cache (a block list blocks hits too; anticache
strips the conditionals the cache would read), the rest, and the user's scripts, after it. The
hit lane looks a request up before any hook runs, so it is off while one of the former has a
request hook (`lane_conflicts`); the user's scripts, after the cache, see lane hits.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Extra:
    module: str  # in mitmproxy.addons
    name: str  # its class
    options: tuple[str, ...]  # what it declares
    before_cache: bool


def _before(module: str, name: str, *options: str) -> Extra:
    return Extra(module, name, options, True)


def _after(module: str, name: str, *options: str) -> Extra:
    return Extra(module, name, options, False)


# mitmproxy's default_addons() (mitmproxy/addons/__init__.py) in its order, but those the lean
# master loads anyway (Core, Proxyserver, NextLayer, TlsConfig) and those that declare no
# option; plus mitmdump's Dumper (flow_detail). tests/unit/test_mitmproxy_addons.py checks this
# against the installed mitmproxy. Left out: ReadFile and KeepServing (rfile: replaying a file
# of flows into a cache is not serving).
EXTRAS: tuple[Extra, ...] = (
    _before("block", "Block", "block_global", "block_private"),
    _before("strip_dns_https_records", "StripDnsHttpsRecords", "strip_ech"),
    _before("blocklist", "BlockList", "block_list"),
    _before("anticache", "AntiCache", "anticache"),
    _before("anticomp", "AntiComp", "anticomp"),
    _before("clientplayback", "ClientPlayback", "client_replay", "client_replay_concurrency"),
    _before("command_history", "CommandHistory", "command_history"),
    _before("export", "Export", "export_preserve_original_ip"),
    _before("onboarding", "Onboarding", "onboarding", "onboarding_host"),
    _before("proxyauth", "ProxyAuth", "proxyauth"),
    _before("dns_resolver", "DnsResolver", "dns_name_servers", "dns_use_hosts_file"),
    _after("script", "ScriptLoader", "scripts"),
    _after("serverplayback", "ServerPlayback", "server_replay", "server_replay_extra",
           "server_replay_ignore_content", "server_replay_ignore_host",
           "server_replay_ignore_params", "server_replay_ignore_payload_params",
           "server_replay_ignore_port", "server_replay_kill_extra", "server_replay_nopop",
           "server_replay_refresh", "server_replay_reuse", "server_replay_use_headers"),
    _after("mapremote", "MapRemote", "map_remote"),
    _after("maplocal", "MapLocal", "map_local"),
    _after("modifybody", "ModifyBody", "modify_body"),
    _after("modifyheaders", "ModifyHeaders", "modify_headers"),
    _after("stickyauth", "StickyAuth", "stickyauth"),
    _after("stickycookie", "StickyCookie", "stickycookie"),
    _after("save", "Save", "save_stream_file", "save_stream_filter"),
    _after("savehar", "SaveHar", "hardump"),
    _after("upstream_auth", "UpstreamAuth", "upstream_auth"),
    _after("update_alt_svc", "UpdateAltSvc", "keep_alt_svc_header"),
    _after("dumper", "Dumper", "dumper_default_contentview", "dumper_filter", "flow_detail"),
)
_BY_OPTION = {o: e for e in EXTRAS for o in e.options}


def option_names(settings: Iterable[str]) -> list[str]:
    """The option names of `NAME=VALUE` settings (a bare NAME too)."""
    return [s.partition("=")[0].strip() for s in settings]


def needed(names: Iterable[str]) -> list[Extra]:
    """The extras that declare any of `names`, once each, in mitmproxy's order."""
    wanted = {_BY_OPTION[n] for n in names if n in _BY_OPTION}
    return [e for e in EXTRAS if e in wanted]


def lane_conflicts(extras: Iterable[Extra]) -> list[str]:
    """The options of `extras` whose request hooks must run before the cache's lookup: the hit
    lane looks a request up before any hook, and these read or rewrite it first (anticache
    strips the conditionals the cache would answer, block_list skips a flow with an answer)."""
    return [e.options[0] for e in extras if e.before_cache and any(
        hasattr(_class(e), hook) for hook in ("requestheaders", "request"))]


def _class(extra: Extra) -> Any:
    return getattr(importlib.import_module(f"mitmproxy.addons.{extra.module}"), extra.name)


def instance(extra: Extra) -> Any:
    """A new instance of `extra`; the Dumper writes to standard error, as standard output
    carries the access log alone."""
    import sys

    cls = _class(extra)
    return cls(sys.stderr) if extra.name == "Dumper" else cls()


def around_cache(bundle: list[Any], extras: list[Extra], last: list[Any]) -> list[Any]:
    """`bundle` (bundle.addons) with `extras` in place: those before the cache right after the
    guard (so that ClientLimits, ClientTls and the guard still run first), the others and then
    `last` before the hit lane and the drain, which stay last (bundle.py says why)."""
    names = [type(a).__name__ for a in bundle]
    before = [instance(e) for e in extras if e.before_cache]
    after = [instance(e) for e in extras if not e.before_cache]
    guard = names.index("Guard") + 1
    tail = names.index("HitLane")
    return [*bundle[:guard], *before, *bundle[guard:tail], *after, *last, *bundle[tail:]]
