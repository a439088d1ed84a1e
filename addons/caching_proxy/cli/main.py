"""`caching-proxy`: runs the caching reverse proxy, or a one-shot command on its store."""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from caching_proxy import __version__
from caching_proxy.cli.option_types import Flag, Option
from caching_proxy.cli.option_values import port_number, whole_number
from caching_proxy.cli.options import (
    CACHE_OPTIONS,
    default_cache_dir,
    flag_help,
    options_given,
)
from caching_proxy.mitm import workers

USAGE_ERROR = 2


class Parser(argparse.ArgumentParser):
    raise_errors = False  # for checking config-file values one by one

    def error(self, message: str) -> NoReturn:
        if self.raise_errors:
            raise ValueError(message)
        # One line, no usage dump: the message says what to fix.
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def fail(message: str) -> NoReturn:
    print(f"caching-proxy: error: {message}", file=sys.stderr)
    raise SystemExit(USAGE_ERROR)


worker_count = whole_number("worker count", 1, 64)


def origin_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"invalid origin {text!r}: must be http://host[:port] or https://host[:port]"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise argparse.ArgumentTypeError(
            f"invalid origin {text!r}: only scheme, host and port are allowed (no path or query)"
        )
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid origin {text!r}: bad port") from None
    return f"{parts.scheme}://{parts.netloc}"


# The flags that set no cache option; those that do come from options.CACHE_OPTIONS.
RUN_FLAGS: tuple[Flag, ...] = (
    Flag("--config", "TOML file with any of these options (e.g. origin = \"http://...\", "
         "port = 3000), an [options] table for --set, and [[rule]] tables of per-path rules; "
         "options given on the command line win (see README)", metavar="FILE", in_config=False),
    Flag("--origin", "the origin to forward to, e.g. http://dummyjson.com (scheme, host, port "
         "only). Requests go to this origin and nowhere else.", metavar="URL", parse=origin_url),
    Flag("--port", "port to listen on (default: {default})", parse=port_number, default=3000),
    Flag("--host", "address to listen on (default: {default}; 0.0.0.0 for all interfaces)",
         default="127.0.0.1"),
    Flag("--set", "set any mitmproxy or cache option (repeatable), e.g. --set "
         "cache_set_cookie=true, --set ssl_insecure=true or --set modify_headers=/~q/X-A/1; "
         "naming an option of one of mitmproxy's own addons (modify_headers, block_list, "
         "map_remote, proxyauth, ...) loads that addon; list them with "
         "`mitmdump -s addons/cache.py --options`", metavar="NAME=VALUE", repeat=True,
         dest="setoptions"),
    Flag("--script", "(also -s) run a mitmproxy addon script of your own, as `mitmdump -s` "
         "does (repeatable); its hooks see every request, cache hits included; a script that "
         "fails to load stops the start; requests still go to --origin only (see "
         "docs/security.md)", metavar="FILE", repeat=True, dest="scripts"),
    Flag("--web", "run under mitmweb to inspect the traffic in a browser; each flow is marked "
         "and commented with what the cache did ('cache HIT', 'cache MISS (stored)', "
         "'revalidated (304)', ...)", switch=True),
    Flag("--web-port", "port of mitmweb's interface with --web (default: {default})",
         parse=port_number, default=8081),
    Flag("--workers", "run N proxy processes on the one port (SO_REUSEPORT), sharing the store, "
         "to use N cores (default: {default}; not with --web)", metavar="N", parse=worker_count,
         default=1),
    Flag("--verbose", "also log mitmproxy's per-connection lines (client connect, server "
         "disconnect, ...); by default only warnings, errors and the access log",
         switch=True),
    Flag("--uvloop", "run the event loop on uvloop (pip install caching-proxy[fast]): about "
         "1.2x the hits per second of asyncio's own loop on this project's bench",
         switch=True),
    Flag("--error-log", "append the start-up line, warnings and errors to FILE instead of "
         "standard error (standard output stays the access log's); a bad option is still "
         "said on standard error; reopened on SIGHUP, for logrotate", metavar="FILE"),
)
COMMAND_FLAGS: tuple[Flag, ...] = (
    Flag("--clear-cache", "remove every stored response and print what was removed",
         switch=True, in_config=False),
    Flag("--purge", "remove the stored responses (all Vary variants) of a URL, or of a /path (of "
         "--origin if given, else of every origin stored); a * makes it a glob, e.g. '/api/*'; "
         "repeatable", metavar="TARGET", repeat=True, in_config=False),
    Flag("--purge-prefix", "remove the stored responses of every path starting with PREFIX, "
         "e.g. /api/; repeatable", metavar="PREFIX", repeat=True, in_config=False),
    Flag("--purge-tag", "remove the stored responses tagged with any of these tags (by the "
         "origin's Surrogate-Key or Cache-Tag, see --tag-header); repeatable",
         metavar="TAG", repeat=True, many=True, in_config=False),
    Flag("--soft", "with --purge, --purge-prefix, --purge-tag or --clear-cache: mark the "
         "responses stale instead of removing them, so that the next request revalidates "
         "them (a 304 refreshes them without the body) and they can still answer while the "
         "origin is down (Fastly's soft purge)", switch=True, in_config=False),
    Flag("--list", "list the stored responses: URL, status, size, age, time to live (negative: "
         "stale), variants", switch=True, in_config=False),
    Flag("--stats", "entries, bytes, hits, misses, hit ratio, stale served, revalidations, "
         "origin errors since the cache was created", switch=True, in_config=False),
    Flag("--limit", "with --list: the first N rows only (in URL order)", metavar="N",
         parse=whole_number("limit", 0), in_config=False),
    Flag("--json", "print --list, --stats, --warm and purge results as JSON", switch=True,
         in_config=False),
    Flag("--warm", "fetch every path or URL listed in FILE (one a line; # comments), or the "
         "<loc> URLs of a sitemap given as a path on the origin (e.g. /sitemap.xml), through "
         "the proxy running at --host:--port, so that they are stored; prints what was stored, "
         "what could not be and why, and errors", metavar="FILE", in_config=False),
    Flag("--warm-concurrency", "most requests --warm has in flight at once (default: "
         "{default})", metavar="N", parse=whole_number("concurrency", 1, 256), default=4,
         in_config=False),
    Flag("--top", "show a running proxy's figures live, refreshed every second, from its admin "
         "API at --admin-host:--admin-port (with --purge-secret as its bearer token): "
         "requests/s by outcome, hit ratios over 1, 5 and 60 minutes, p50/p99 latencies, "
         "connections, store and memory tier; plain lines when not on a terminal; Ctrl-C ends "
         "it", switch=True, in_config=False),
    Flag("--once", "with --top: print one block of figures (over one second) and exit",
         switch=True, in_config=False),
)


# Short spellings, as mitmdump's.
SHORT: dict[str, tuple[str, ...]] = {"--script": ("-s",)}


def all_flags() -> Iterator[tuple[Option | None, Flag]]:
    """Every flag of the parser with the cache option it sets, if any."""
    yield from ((None, f) for f in RUN_FLAGS)
    yield from ((o, f) for o in CACHE_OPTIONS for f in o.flags)
    yield from ((None, f) for f in COMMAND_FLAGS)


def add_flag(add_argument: Callable[..., object], option: Option | None, flag: Flag) -> None:
    """Add `flag` with `add_argument` (of a parser or of one of its groups)."""
    # argparse %-formats help texts.
    text = flag_help(option, flag).replace("%", "%%")
    if option is not None:
        text += f" [{option.name}]"
    names = (*SHORT.get(flag.name, ()), flag.name)
    if flag.switch:
        add_argument(*names, action="store_true", dest=flag.attribute, help=text)
        return
    add_argument(
        *names, dest=flag.attribute, type=flag.parse, metavar=flag.metavar,
        choices=flag.choices, help=text,
        **({"action": "extend" if flag.many else "append", "default": list(flag.default or ()),
            **({"nargs": "+"} if flag.many else {})} if flag.repeat
           else {"default": flag.default}),
    )


def build_parser() -> Parser:
    p = Parser(
        prog="caching-proxy",
        description="An HTTP caching reverse proxy in front of one origin (mitmproxy + diskcache). "
        "Every response carries X-Cache: HIT or MISS and an RFC 9211 Cache-Status.",
    )
    groups = {
        "run": p,
        "cache": p.add_argument_group(
            "cache options (each sets the mitmproxy option in brackets, also settable with "
            "--set)"),
        "commands": p.add_argument_group(
            "commands on the store (run, print, exit; safe while a proxy runs on the same cache)"),
    }
    for option, flag in all_flags():
        where = "cache" if option is not None else "commands" if flag in COMMAND_FLAGS else "run"
        add_flag(groups[where].add_argument, option, flag)
    p.add_argument("--version", action="version", version=f"caching-proxy {__version__}")
    return p


def cache_dir_of(args: argparse.Namespace) -> str:
    path = os.path.abspath(os.path.expanduser(args.cache_dir or default_cache_dir()))
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        fail(f"cannot create cache folder {path}: {e.strerror or e}")
    if not os.access(path, os.W_OK | os.X_OK):
        fail(f"cannot write to cache folder {path}")
    return path


def check_port_free(host: str, port: int) -> None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        fail(f"cannot listen on {host}: {e.strerror}")
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        # As the listener itself binds (asyncio sets it): the proxy's own connections closed a
        # moment ago (TIME-WAIT) must not make a restart fail for a minute.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                fail(f"port {port} on {host} is already in use")
            fail(f"cannot listen on {host}:{port}: {e.strerror}")


# A `--set NAME=VALUE` the config file's [options] table made -> where in the file it is.
SET_FROM: dict[str, str] = {}


def config_argv(parser: Parser, path: str) -> list[str]:
    """The config file as command-line arguments, each checked as the CLI checks it; a
    ConfigError names what is wrong and where."""
    from caching_proxy.cli.config_file import ConfigError, line_of, load

    config = load(path)
    text = Path(path).read_text(encoding="utf-8")
    flags = {flag.key: flag for _, flag in all_flags() if flag.in_config}
    argv: list[str] = []
    for key, value in config.settings.items():
        line = line_of(text, key)
        where = f"{path}, line {line}" if line else path
        flag = flags.get(key)
        if flag is None:
            raise ConfigError(f"{where}: unknown option {key!r} (options are the long CLI "
                              "options, with _ for -)")
        values = value if isinstance(value, list) else [value]
        piece: list[str] = []
        for v in values:
            if flag.switch:
                if not isinstance(v, bool):
                    raise ConfigError(f"{where}: {key} must be true or false")
                piece += [flag.name] if v else []
            else:
                piece += [flag.name, str(v).lower() if isinstance(v, bool) else str(v)]
        parser.raise_errors = True
        try:
            parser.parse_args(piece)
        except ValueError as e:
            raise ConfigError(f"{where}: {key}: {e}") from None
        finally:
            parser.raise_errors = False
        argv += piece
    for name, value in config.options.items():
        shown = str(value).lower() if isinstance(value, bool) else str(value)
        argv += ["--set", f"{name}={shown}"]
        # mitmproxy checks these only once it runs: its error then names the file and line.
        line = line_of(text, name, "options")
        SET_FROM[f"{name}={shown}"] = f"{path}, line {line}" if line else path
    return [*argv, "--set", f"cache_config={os.path.abspath(path)}"]


def parse_all(parser: Parser, argv: list[str]) -> argparse.Namespace:
    """The command line with its config file's options before it (so that the command line's
    win). Raises ValueError (a ConfigError for the file) instead of exiting: for a reload."""
    parser.raise_errors = True
    try:
        args = parser.parse_args(argv)
        if args.config:
            from_file = config_argv(parser, args.config)
            parser.raise_errors = True  # config_argv lowers it
            args = parser.parse_args([*from_file, *argv])
    finally:
        parser.raise_errors = False
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config:
        from caching_proxy.cli.config_file import ConfigError

        try:  # the file's options first, so that the command line's win
            args = parser.parse_args([*config_argv(parser, args.config), *argv])
        except ConfigError as e:
            fail(str(e))
    if args.top:
        from caching_proxy.ops import top

        return top.run(args)
    if args.once:
        fail("--once goes with --top")
    if args.warm:
        from caching_proxy.ops import warm

        return warm.run(args, cache_dir_of(args) if args.origin else None)
    if (args.clear_cache or args.purge or args.purge_prefix or args.purge_tag or args.list
            or args.stats):
        from caching_proxy.cli import operations

        folder = os.path.abspath(os.path.expanduser(args.cache_dir or default_cache_dir()))
        if (args.list or args.stats) and not args.store and not os.path.isdir(folder):
            # Reading a folder that is not there would create an empty store and report it.
            print(f"caching-proxy: no cache folder at {folder} (--cache-dir)", file=sys.stderr)
            return 1
        return operations.run(args, args.store or cache_dir_of(args))
    if args.soft:
        fail("--soft goes with --purge, --purge-prefix, --purge-tag or --clear-cache")
    if args.origin is None:
        fail("--origin is required, e.g. --origin http://dummyjson.com")
    path = cache_dir_of(args)
    if args.tls_cert or args.tls_key:
        from caching_proxy.edge.client_tls import check_pair

        try:  # before mitmproxy starts, so that a bad pair is one line, not a failed start
            check_pair(args.tls_cert, args.tls_key)
        except ValueError as e:
            fail(str(e))
    worker = workers.worker_number()
    if worker is None:
        check_port_free(args.host, args.port)
        if args.web:
            check_port_free("127.0.0.1", args.web_port)
        if args.workers > 1:
            if args.web:
                fail("--workers cannot be combined with --web (mitmweb is one process)")
            return workers.supervise(argv, args.workers)
    else:
        workers.share_listening_port()
        workers.end_with_supervisor()
    if sys.flags.optimize == 0 and not os.environ.get("CACHING_PROXY_DEBUG"):
        # mitmproxy checks the type of every field of every Request and Response it builds,
        # under `if __debug__` only: the proxy runs without them (measured: +22% hits/s).
        os.execv(sys.executable, [sys.executable, "-O", "-m", "caching_proxy", *argv])
    if not args.web:  # mitmweb needs mitmproxy's whole set of addons
        from caching_proxy.mitm import lean_imports

        lean_imports.skip_default_addons()
    from caching_proxy.mitm import runner

    # The resolved folder, whatever --cache-dir said: every worker must open the same one.
    cache_options: dict[str, object] = {**options_given(args), "cache_dir": path}
    from caching_proxy.cli.reload import Reloader

    # SIGHUP reads the same command line and its config file again (cli/reload.py).
    reloader = Reloader(argv, args, lambda again: parse_all(build_parser(), again))
    return runner.run(
        origin=args.origin, host=args.host, port=args.port, web=args.web,
        web_port=args.web_port, cache_options=cache_options, setoptions=args.setoptions,
        set_from=SET_FROM,
        banner=worker is None or worker[0] == 1, workers=args.workers, verbose=args.verbose,
        on_reload=reloader.reload, scripts=args.scripts, error_log=args.error_log,
        uvloop=args.uvloop,
    )


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
