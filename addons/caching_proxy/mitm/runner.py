"""Starts mitmproxy in reverse mode toward the origin with the caching addon loaded.

The default proxy runs under a lean master: mitmdump dispatches every event to ~35 default
addons, which costs more CPU than a cache hit itself (measured: a hit path twice as fast with only
the addons a reverse proxy needs). `--web` runs mitmweb with its full set, since inspection needs it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from mitmproxy import exceptions, master, options
from mitmproxy.addons import core, errorcheck, next_layer, proxyserver, termlog, tlsconfig

from caching_proxy.bundle import addons
from caching_proxy.mitm import error_page
from caching_proxy.mitm.hook_table import HookTable


class LeanMaster(master.Master):
    """Only what a TLS-capable reverse proxy needs, plus the terminal log."""

    def __init__(self, opts: options.Options) -> None:
        super().__init__(opts)
        self.addons = HookTable(self)
        # Standard output carries the access log alone (a pipe to a log shipper, `> access.log`):
        # mitmproxy's and the proxy's own messages go to standard error.
        self._termlog_addon = termlog.TermLog(out=sys.stderr)
        self.addons.add(
            self._termlog_addon,
            core.Core(),
            proxyserver.Proxyserver(),
            next_layer.NextLayer(),
            tlsconfig.TlsConfig(),
            errorcheck.ErrorCheck(repeat_errors_on_stderr=True),
        )


class FreezeStartup:
    """Moves what start-up created out of the garbage collector's sight, once running.

    mitmproxy, its options and this package live as long as the process; frozen, a full
    collection no longer scans them (measured: ~30 ms per full collection otherwise, a stall for
    every connection). Process-wide, hence here and not in the addon a plain mitmdump loads.
    """

    def running(self) -> None:
        gc.freeze()


class Banner:
    """Says once, when the listener is up, where the proxy listens and what it caches. The line
    is made then: mitmweb's URL is known only once its options are configured."""

    def __init__(self, line: Callable[[], str]) -> None:
        self.line = line

    def running(self) -> None:
        print(self.line(), file=sys.stderr, flush=True)


def web_url(m: master.Master) -> str:
    """The address a person opens mitmweb at. mitmproxy 12's mitmweb requires a token and
    gives its URL with it (`?token=`; none when `web_password` is set: its login page asks for
    that); mitmproxy 11's needs none and has no such property: built as it prints it."""
    url = getattr(m, "web_url", None)
    if isinstance(url, str):
        return url
    host = m.options.web_host
    return f"http://{f'[{host}]' if ':' in host else host}:{m.options.web_port}/"


def run(
    *,
    origin: str,
    host: str,
    port: int,
    web: bool,
    web_port: int,
    cache_options: dict[str, Any],
    setoptions: list[str],
    set_from: dict[str, str] | None = None,
    banner: bool = True,
    workers: int = 1,
    verbose: bool = False,
) -> int:
    error_page.install()

    async def main() -> int:
        logging.getLogger().setLevel(logging.INFO)
        for noisy in ("tornado", "asyncio", "hpack"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # mitmproxy's connection handler logs every client and server connect and disconnect
        # at INFO (most of the output, and a record per connection); the access log says what
        # operators need. A logger level, so those records are not even made (mitmweb's event
        # list too). `--verbose` keeps them.
        logging.getLogger("mitmproxy.proxy.server").setLevel(
            logging.INFO if verbose else logging.WARNING)
        opts = options.Options()
        m: master.Master
        if web:
            from mitmproxy.tools.web.master import WebMaster

            m = WebMaster(opts)
        else:
            m = LeanMaster(opts)
        m.addons.add(*addons(marks=web))
        from caching_proxy.store.redis.urls import redact_store_url

        # The store as shown: a Redis URL's passwords as ***.
        store = redact_store_url(cache_options.get("cache_store") or cache_options["cache_dir"])

        def line() -> str:
            text = (
                f"caching-proxy: listening on {'https' if cache_options.get('cache_tls_cert') else 'http'}"
                f"://{host}:{port}, origin {origin}, cache {store}"
            )
            if web:
                text += f", inspect at {web_url(m)}"
            if workers > 1:
                text += f", {workers} workers"
            return text

        if banner:
            m.addons.add(Banner(line))
        m.addons.add(FreezeStartup())
        try:
            opts.update(
                mode=[f"reverse:{origin}"],
                # mitmproxy's reverse mode connects to the origin as soon as a client connects
                # ("eager"); a cache must not: a hit needs no origin, and a dead origin would
                # drop every client. Before `setoptions`, which may still override it.
                connection_strategy="lazy",
                listen_host=host,
                listen_port=port,
                **cache_options,
            )
            if web:
                opts.update(web_port=web_port, web_open_browser=False)
            for setting in setoptions:
                try:
                    opts.set(setting)
                except exceptions.OptionsError as e:  # mitmproxy's words name only the value
                    where = (set_from or {}).get(setting)
                    name = setting.partition("=")[0]
                    # The name only: a value may hold a password (a Redis URL's).
                    raise exceptions.OptionsError(
                        f"{where}: [options] {name}: {e}" if where else f"--set {name}: {e}"
                    ) from e
        except exceptions.OptionsError as e:
            print(f"caching-proxy: error: {e}", file=sys.stderr)
            return 2
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, m.shutdown)
        await m.run()
        return 0

    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    return asyncio.run(main())
