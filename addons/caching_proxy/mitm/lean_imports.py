"""Start-up without importing the default addons that the lean master (runner.py) never loads.

Importing any of mitmproxy's addon modules runs `mitmproxy/addons/__init__.py`, which imports
all of its ~40 default addons (Flask for the onboarding app, ldap3 for proxy auth, the flow
filters, ...): measured, most of a proxy process's start-up. Registering the package as a bare
module first, with its real search path, makes `from mitmproxy.addons import core` load only
the modules named. Only `mitmproxy.addons.default_addons` is then missing, which mitmweb and
mitmdump use; hence only for the lean master, before anything imports the package. An option
of another of mitmproxy's addons (`--set block_list=...`, `-s`) imports that addon's module
alone (mitmproxy_addons.py), so only a start that names one pays for it.
"""

from __future__ import annotations

import importlib.util
import sys

PACKAGE = "mitmproxy.addons"


def skip_default_addons() -> bool:
    """Register the bare package; False, changing nothing, once it is imported (or not found)."""
    if PACKAGE in sys.modules:
        return False
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.submodule_search_locations is None:
        return False
    package = importlib.util.module_from_spec(spec)  # its __init__ is not run
    sys.modules[PACKAGE] = package
    setattr(sys.modules["mitmproxy"], "addons", package)  # noqa: B010 - what import sets
    return True
