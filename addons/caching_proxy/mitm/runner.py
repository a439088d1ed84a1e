"""Starts mitmproxy in reverse mode toward the origin with the caching addon loaded.

The default proxy runs under a lean master: mitmdump dispatches every event to ~35 default
addons, which costs more CPU than a cache hit itself (measured: a hit path twice as fast with only
the addons a reverse proxy needs). `--web` runs mitmweb with its full set, since inspection needs it.
A mitmproxy option named with `--set` (or a script, `-s`) loads the mitmproxy addon that reads it
(mitm/mitmproxy_addons.py), and then mitm/origin_only.py keeps every request on the origin.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable
from typing import IO, Any, cast

from mitmproxy import exceptions, master, options
from mitmproxy.addons import core, errorcheck, next_layer, proxyserver, termlog, tlsconfig

from caching_proxy.bundle import addons
from caching_proxy.mitm import error_page, mitmproxy_addons, startup_warnings
from caching_proxy.mitm.error_log import ErrorLog
from caching_proxy.mitm.hook_table import HookTable
from caching_proxy.mitm.origin_only import OriginOnly
from caching_proxy.mitm.user_scripts import ScriptCheck


class LeanMaster(master.Master):
    """Only what a TLS-capable reverse proxy needs, plus the terminal log."""

    def __init__(self, opts: options.Options, messages: IO[str] | None = None) -> None:
        super().__init__(opts)
        self.addons = HookTable(self)
        # Standard output carries the access log alone (a pipe to a log shipper, `> access.log`):
        # mitmproxy's and the proxy's own messages go to standard error, or --error-log.
        self._termlog_addon = termlog.TermLog(out=messages or sys.stderr)
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

    def __init__(self, line: Callable[[], str], out: IO[str] | None = None) -> None:
        self.line = line
        self.out = out

    def running(self) -> None:
        print(self.line(), file=self.out or sys.stderr, flush=True)


def web_url(m: master.Master) -> str:
    """The address a person opens mitmweb at. mitmproxy 12's mitmweb requires a token and
    gives its URL with it (`?token=`; none when `web_password` is set: its login page asks for
    that); mitmproxy 11's needs none and has no such property: built as it prints it."""
    url = getattr(m, "web_url", None)
    if isinstance(url, str):
        return url
    host = m.options.web_host
    return f"http://{f'[{host}]' if ':' in host else host}:{m.options.web_port}/"


def service_addresses(o: options.Options) -> str:
    """The admin API and metrics listeners that are on, for the start-up line."""
    parts = []
    admin = getattr(o, "cache_admin_port", 0)
    if admin:
        host = o.cache_admin_host
        parts.append(f"admin http://{f'[{host}]' if ':' in host else host}:{admin}/")
    metrics = getattr(o, "cache_metrics_port", 0)
    if metrics:  # ops/metrics.py serves on loopback
        parts.append(f"metrics http://127.0.0.1:{metrics}/metrics")
    return "".join(f", {p}" for p in parts)


# What the flow list's markers mean (mitmweb shows the emoji, and the comment column in words).
WEB_LEGEND = ("flow markers: \N{FLOPPY DISK} hit, \N{GLOBE WITH MERIDIANS} miss, "
              "\N{ANTICLOCKWISE DOWNWARDS AND UPWARDS OPEN CIRCLE ARROWS} revalidated, "
              "\N{HOURGLASS} stale, \N{BLACK RIGHTWARDS ARROW} passed, \N{NO ENTRY} unavailable; "
              "the comment column says it in words")


def show_comments(o: options.Options) -> None:
    """mitmweb's flow list with its comment column (the cache's outcome in words, readable
    without an emoji font), unless the columns were chosen already."""
    columns = list(getattr(o, "web_columns", None) or [])
    if columns and "comment" not in columns:  # before --set, which may choose them
        o.update(web_columns=[*columns, "comment"])


def grouped(opts: options.Options, setoptions: list[str]) -> list[list[str]]:
    """Each `NAME=VALUE` alone (a later one wins), but those of a list option together, at the
    place of the first: as mitmdump's, `--set map_remote=A --set map_remote=B` sets both."""
    groups: list[list[str]] = []
    lists: dict[str, list[str]] = {}
    for setting in setoptions:
        name = setting.partition("=")[0]
        if name in opts and isinstance(getattr(opts, name), list | tuple):
            if name not in lists:
                lists[name] = []
                groups.append(lists[name])
            lists[name].append(setting)
        else:
            groups.append([setting])
    return groups


def install_signals(m: master.Master, on_reload: Callable[[master.Master], object] | None
                    ) -> None:
    """SIGTERM and SIGINT drain (mitm/drain.py); SIGINT while draining stops at once, a second
    SIGTERM does not (systemd's default KillMode sends it to every process of the unit, a
    --workers supervisor's workers too, besides the one the supervisor passes on). SIGHUP
    reloads."""
    loop = asyncio.get_running_loop()

    def stop(signum: int) -> None:
        drain = m.addons.get("drain")
        if drain is None or not m.options.cache_drain_timeout:
            m.shutdown()
        elif drain.task is None:
            drain.begin(m)
        elif signum == signal.SIGINT:
            m.shutdown()
        else:
            logging.getLogger(__name__).info(
                "caching-proxy: already stopping (SIGINT stops at once)")

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig)
    if hasattr(signal, "SIGHUP"):
        loop.add_signal_handler(signal.SIGHUP, lambda: on_reload(m) if on_reload else None)
        # `python -m caching_proxy` blocks it until now (see __main__): one sent while the
        # process started is held pending, handled here, not the end of the process.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})


def with_reopen(reload: Callable[[master.Master], object] | None,
                messages: ErrorLog | None) -> Callable[[master.Master], object] | None:
    """SIGHUP's action: the reload, with --error-log reopened first (logrotate moved it)."""
    if messages is None or reload is None:
        return reload
    chained = reload

    def reopen_and_reload(m: master.Master) -> object:
        messages.reopen()
        return chained(m)

    return reopen_and_reload


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
    on_reload: Callable[[master.Master], object] | None = None,
    scripts: tuple[str, ...] | list[str] = (),
    error_log: str | None = None,
    uvloop: bool = False,
) -> int:
    """Run the proxy until stopped: 0, or 2 for a bad option or a script that fails to load
    (one line on standard error, before anything listens), or an --error-log that cannot be
    opened."""
    error_page.install()
    messages: ErrorLog | None = None
    if error_log:
        try:
            messages = ErrorLog(error_log)
        except OSError as e:
            print(f"caching-proxy: error: --error-log {error_log}: {e.strerror or e}",
                  file=sys.stderr)
            return 2

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
            m = LeanMaster(opts, cast(IO[str], messages))
        named = mitmproxy_addons.option_names(setoptions) + (["scripts"] if scripts else [])
        # mitmweb has every mitmproxy addon already; the lean master gets those named.
        extras = [] if web else mitmproxy_addons.needed(named)
        bundle = addons(marks=web)
        if web or extras:
            bundle = mitmproxy_addons.around_cache(bundle, extras, [OriginOnly()])
        m.addons.add(*bundle)
        from caching_proxy.store.redis.urls import redact_store_url

        # The store as shown: a Redis URL's passwords as ***.
        store = redact_store_url(cache_options.get("cache_store") or cache_options["cache_dir"])

        def line() -> str:
            text = (
                f"caching-proxy: listening on {'https' if cache_options.get('cache_tls_cert') else 'http'}"
                f"://{host}:{port}, origin {origin}, cache {store}"
            )
            text += service_addresses(m.options)
            if web:
                text += f", inspect at {web_url(m)}"
            if workers > 1:
                text += f", {workers} workers"
            if uvloop:
                text += f", on {type(asyncio.get_running_loop()).__module__.split('.')[0]}"
            return text

        if banner:
            m.addons.add(Banner(line, cast(IO[str], messages)))
        m.addons.add(FreezeStartup())
        # mitmweb's bound: the lean master keeps no flows, and no addon of it declares it.
        given = {k: v for k, v in cache_options.items() if web or k != "cache_web_max_flows"}
        if scripts:  # as mitmdump's -s: before --set, which may still replace them
            given["scripts"] = list(scripts)
        conflicts = mitmproxy_addons.lane_conflicts(extras)
        if conflicts and given.get("cache_hit_lane", True):
            given["cache_hit_lane"] = False  # the lane would look up what they have not rewritten
            logging.getLogger(__name__).info(
                f"caching-proxy: the hit lane is off with {', '.join(conflicts)}")
        check = ScriptCheck()
        try:
            opts.update(
                mode=[f"reverse:{origin}"],
                # mitmproxy's reverse mode connects to the origin as soon as a client connects
                # ("eager"); a cache must not: a hit needs no origin, and a dead origin would
                # drop every client. Before `setoptions`, which may still override it.
                connection_strategy="lazy",
                listen_host=host,
                listen_port=port,
                **given,
            )
            if web:
                opts.update(web_port=web_port, web_open_browser=False)
                show_comments(opts)
            for settings in grouped(opts, setoptions):
                try:
                    opts.set(*settings)
                except exceptions.OptionsError as e:  # mitmproxy's words name only the value
                    where = next((w for s in settings if (w := (set_from or {}).get(s))), None)
                    name = settings[0].partition("=")[0]
                    # The name only: a value may hold a password (a Redis URL's).
                    raise exceptions.OptionsError(
                        f"{where}: [options] {name}: {e}" if where else f"--set {name}: {e}"
                    ) from e
        except exceptions.OptionsError as e:
            print(f"caching-proxy: error: {e}", file=sys.stderr)
            return 2
        failed = await check.failure(m)
        if failed:
            print(f"caching-proxy: error: {failed}", file=sys.stderr)
            return 2
        install_signals(m, with_reopen(on_reload, messages))
        checks: list[asyncio.Task[None]] = []  # held while the proxy runs
        if banner:  # once, not per worker
            warning = startup_warnings.size_warning(opts)
            if warning:
                logging.getLogger(__name__).warning(f"caching-proxy: warning: {warning}")
            # Resolved off the loop and not waited for: the listener starts as it would.
            checks.append(asyncio.create_task(startup_warnings.warn_unresolved(origin)))
        if web and banner:
            logging.getLogger(__name__).info(f"caching-proxy: {WEB_LEGEND}")
        await m.run()
        return 0

    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    loop_factory = None
    if uvloop:
        try:
            import uvloop as uv
        except ImportError:
            print("caching-proxy: error: --uvloop needs uvloop: pip install "
                  "'caching-proxy[fast]'", file=sys.stderr)
            return 2
        loop_factory = uv.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())
