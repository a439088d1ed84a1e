"""Each addon declares the cache options it reads (cli/options.READ_BY), so that it works loaded
alone (mitmdump -s with a subset, a test harness), and every option has a reader."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mitmproxy.test import taddons

from caching_proxy.bundle import addons
from caching_proxy.cache.addon import CacheAddon
from caching_proxy.cli import options as opts
from caching_proxy.mitm.hit_lane import HitLane

PACKAGE = Path(opts.__file__).resolve().parents[1]
READ = re.compile(r"options\.(cache_\w+)|\"(cache_\w+)\" (?:not )?in updated")
# The modules whose option reads are the addon's (the cache's settings are read for it).
MODULES = {
    "CacheAddon": ("cache/addon.py", "cache/settings.py"),
    "ClientLimits": ("edge/client_limits.py",), "ClientTls": ("edge/client_tls.py",),
    "BodyLimit": ("edge/body_limit.py",), "OriginTimeouts": ("edge/origin_timeouts.py",),
    "Purge": ("edge/purge.py",), "Admin": ("ops/admin.py",), "AccessLog": ("ops/access_log.py",),
    "Metrics": ("ops/metrics.py",), "HitLane": ("mitm/hit_lane.py",),
    "Forwarded": ("edge/forwarded.py",), "OriginGate": ("origin/gate.py",),
    "Drain": ("mitm/drain.py",), "FlowCap": ("ops/flow_cap.py",),
}


def read_in(name: str) -> set[str]:
    found: set[str] = set()
    for module in MODULES[name]:
        for match in READ.finditer((PACKAGE / module).read_text()):
            found.add(match.group(1) or match.group(2))
    return found


def test_every_option_is_read_by_some_addon_and_every_reader_is_loaded() -> None:
    declared = {name for names in opts.READ_BY.values() for name in names}
    assert declared == {o.name for o in opts.CACHE_OPTIONS}
    loaded = {type(a).__name__ for a in [*addons(), HitLane()]}
    assert set(opts.READ_BY) <= loaded
    assert set(MODULES) == set(opts.READ_BY)


@pytest.mark.parametrize("name", sorted(opts.READ_BY))
def test_what_an_addons_modules_read_it_declares(name: str) -> None:
    assert read_in(name) <= set(opts.READ_BY[name]), read_in(name) - set(opts.READ_BY[name])


@pytest.mark.parametrize("addon", [a for a in addons() if type(a).__name__ in opts.READ_BY
                                   and not isinstance(a, CacheAddon)] + [HitLane()],
                         ids=lambda a: type(a).__name__)
def test_each_addon_loads_and_configures_alone(addon: object) -> None:
    # Loaded by itself in a fresh mitmproxy: an option it reads but does not declare would be
    # "no such option" here. (The cache addon alone is what tests/inprocess runs.)
    with taddons.context(addon) as tctx:
        for name in opts.READ_BY[type(addon).__name__]:
            assert name in tctx.options
