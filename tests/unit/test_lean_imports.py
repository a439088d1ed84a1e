"""The lean master's start-up skips mitmproxy's default addons (caching_proxy.mitm.lean_imports): in a
fresh interpreter, as a proxy process starts."""

from __future__ import annotations

import subprocess
import sys

from support.proxy import ROOT

PROBE = """
import sys
from caching_proxy.mitm import lean_imports
assert lean_imports.skip_default_addons()
assert not lean_imports.skip_default_addons()  # once only
from caching_proxy.mitm import runner
from mitmproxy.addons import proxyserver
heavy = sorted(m for m in ("flask", "ldap3", "mitmproxy.addons.onboarding",
                           "mitmproxy.addons.proxyauth", "mitmproxy.flowfilter") if m in sys.modules)
print("heavy", heavy)
import asyncio
async def build():
    from mitmproxy import options
    master = runner.LeanMaster(options.Options())
    print("addons", len(master.addons.chain))
asyncio.run(build())
"""


def test_the_lean_master_starts_without_the_default_addons() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT / "addons")}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "heavy []" in done.stdout
    assert "addons 6" in done.stdout


def test_once_mitmproxys_addons_are_imported_nothing_changes() -> None:
    probe = ("import mitmproxy.addons, sys\nfrom caching_proxy.mitm import lean_imports\n"
             "assert not lean_imports.skip_default_addons()\n"
             "assert hasattr(sys.modules['mitmproxy.addons'], 'default_addons')\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT / "addons")}, timeout=60)
    assert done.returncode == 0, done.stderr
