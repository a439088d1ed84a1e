"""Load the caching addon into mitmproxy: `mitmdump -s addons/cache.py --mode reverse:URL`.

mitmproxy puts this file's folder on sys.path while loading it, so the package beside it imports
without installation. Options: `--set cache_dir=...`, `--set cache_default_ttl=...` (see
`mitmdump -s addons/cache.py --options`).
"""

from caching_proxy.bundle import addons as caching_proxy_addons
from caching_proxy.mitm import error_page

error_page.install()

addons = caching_proxy_addons()
