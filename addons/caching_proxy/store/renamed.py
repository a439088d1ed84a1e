"""Stores written before the package was laid out in subpackages hold pickles that name the old
module of the stored response class (`caching_proxy.entry.Entry`). That name is registered as an
alias of the class's module now, so such entries still load, at no cost per read."""

from __future__ import annotations

import sys

from caching_proxy.store import entry

# old module name -> the module that holds its classes now
OLD_MODULES = {"caching_proxy.entry": entry}
for _name, _module in OLD_MODULES.items():
    sys.modules.setdefault(_name, _module)
