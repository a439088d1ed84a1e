"""The table of mitmproxy's own addons the lean master loads on demand (mitm/mitmproxy_addons.py)
matches the installed mitmproxy: each addon of mitmdump's set declares exactly the options the
table says, none is missing, and the extras go where `mitmdump -s addons/cache.py` has them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from mitmproxy import master, options
from mitmproxy.addons import default_addons, dumper

from caching_proxy.bundle import addons
from caching_proxy.mitm import mitmproxy_addons as extras
from caching_proxy.mitm.user_scripts import describe

LEAN = {"Core", "Proxyserver", "NextLayer", "TlsConfig"}  # the lean master's own


def declared(addon: Any) -> set[str]:
    async def run() -> set[str]:
        opts = options.Options()
        m = master.Master(opts)
        before = set(opts.keys())
        m.addons.add(addon)
        return set(opts.keys()) - before

    return asyncio.run(run())


def test_the_table_names_every_option_of_mitmdumps_addons() -> None:
    table = {e.name: set(e.options) for e in extras.EXTRAS}
    for addon in [*default_addons(), dumper.Dumper()]:
        name = type(addon).__name__
        options_of = declared(addon)
        if name in LEAN or not options_of:
            assert name not in table
            continue
        assert table.pop(name) == options_of, name
    assert table == {}  # nothing in the table that mitmproxy no longer has


def test_needed_loads_only_what_the_options_name_in_mitmproxys_order() -> None:
    names = extras.option_names(["modify_headers=/~q/X/1", "cache_default_ttl=5", "anticache",
                                 "block_list=:~u x:403", "map_remote=|a|b"])
    assert [e.name for e in extras.needed(names)] == [
        "BlockList", "AntiCache", "MapRemote", "ModifyHeaders"]
    assert extras.needed(["cache_default_ttl", "ssl_insecure"]) == []


def test_extras_go_around_the_cache_and_before_the_lane_and_the_drain() -> None:
    bundle = addons(marks=False)
    chosen = extras.needed(["anticache", "modify_headers", "scripts"])
    last = object()
    chain = [type(a).__name__ for a in extras.around_cache(bundle, chosen, [last])]
    assert chain.index("Guard") < chain.index("AntiCache") < chain.index("CacheAddon")
    assert chain.index("CacheAddon") < chain.index("ScriptLoader") < chain.index("ModifyHeaders")
    assert chain[-4:] == ["ModifyHeaders", "object", "HitLane", "Drain"]
    assert chain[:3] == ["ClientLimits", "ClientTls", "Guard"]


def test_the_lane_is_off_only_with_an_addon_whose_request_hooks_precede_the_lookup() -> None:
    assert extras.lane_conflicts(extras.needed(["anticache", "block_list"])) == [
        "block_list", "anticache"]
    assert extras.lane_conflicts(extras.needed(["scripts", "modify_headers", "block_global"])) == []


@pytest.mark.parametrize(("error", "line"), [
    (SyntaxError("invalid syntax", ("/s/x.py", 4, 1, "x = (")),
     "script x.py: line 4: SyntaxError: invalid syntax"),
    (ValueError("bad\nmore"), "script x.py: ValueError: bad"),
])
def test_a_failed_script_is_described_in_one_line(error: BaseException, line: str) -> None:
    import logging

    record = logging.LogRecord("mitmproxy.addons.script", logging.ERROR, "", 0,
                               "error in script /s/x.py", None, (type(error), error, None))
    assert describe("x.py", "/s/x.py", record) == line
