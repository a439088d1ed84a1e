"""Every use of mitmproxy's internals, each behind one module: the hit lane, the lean master's
hook table and runner, the HTTP/1 and HTTP/2 adapters, the error page, the workers.

Nothing outside this package imports `mitmproxy.proxy` (checked by import-linter).
"""
