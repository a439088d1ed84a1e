"""`caching-proxy`: runs the caching reverse proxy, or a one-shot command on its store."""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from caching_proxy import __version__, workers
from caching_proxy.options import default_cache_dir

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


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: not a number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {port}: must be 1-65535")
    return port


def seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seconds {text!r}: not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid seconds {value}: must not be negative")
    return value


def worker_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid worker count {text!r}: not a number") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"invalid worker count {value}: must be 1-64")
    return value


def object_size(text: str) -> str:
    from mitmproxy.utils import human

    try:
        size = human.parse_size(text)
    except ValueError:
        size = None
    if size is None or size <= 0:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: use e.g. 512k, 64m or 1g")
    return text


def use_stale(text: str) -> str:
    from caching_proxy.policy import parse_use_stale

    try:
        parse_use_stale(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


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


def store_url(text: str) -> str:
    from caching_proxy.store import is_redis_url

    parts = urlsplit(text)
    if not is_redis_url(text):
        raise argparse.ArgumentTypeError(
            f"invalid store {text!r}: must be a Redis URL such as redis://127.0.0.1:6379/0")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid store {text!r}: bad port") from None
    if parts.scheme != "unix" and not parts.hostname:
        raise argparse.ArgumentTypeError(f"invalid store {text!r}: no host")
    return text


def build_parser() -> Parser:
    p = Parser(
        prog="caching-proxy",
        description="An HTTP caching reverse proxy in front of one origin (mitmproxy + diskcache). "
        "Every response carries X-Cache: HIT or MISS and an RFC 9211 Cache-Status.",
    )
    p.add_argument("--config", metavar="FILE",
                   help="TOML file with any of these options (e.g. origin = \"http://...\", "
                   "port = 3000), an [options] table for --set, and [[rule]] tables of per-path "
                   "rules; options given on the command line win (see README)")
    p.add_argument("--origin", type=origin_url, metavar="URL",
                   help="the origin to forward to, e.g. http://dummyjson.com (scheme, host, port "
                   "only). Requests go to this origin and nowhere else.")
    p.add_argument("--port", type=port_number, default=3000,
                   help="port to listen on (default: 3000)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1; 0.0.0.0 for all interfaces)")
    p.add_argument("--cache-dir", metavar="DIR", default=None,
                   help=f"folder of the response store (default: {default_cache_dir()}, "
                   "i.e. $XDG_CACHE_HOME/caching-proxy)")
    p.add_argument("--store", type=store_url, metavar="URL", default=None,
                   help="keep responses in Redis instead of --cache-dir, shared by every proxy "
                   "given the same URL, e.g. redis://127.0.0.1:6379/0 (see README for "
                   "maxmemory-policy); the one-shot commands below work on it too")
    p.add_argument("--cache-size", metavar="SIZE", default=None,
                   help="upper bound of the store on disk, e.g. 500m or 2g (default: 1g); "
                   "least recently used responses are evicted past it")
    p.add_argument("--default-ttl", type=seconds, metavar="SECONDS", default=None,
                   help="freshness lifetime of a response that states none (default: 300); "
                   "0 = never reuse such a response without asking the origin")
    p.add_argument("--max-object-size", metavar="SIZE", type=object_size, default=None,
                   help="largest response stored (default: 64m); larger ones, or ones of "
                   "unknown length that grow past it, are streamed to the client, not stored")
    p.add_argument("--use-stale", metavar="CONDITIONS", type=use_stale, default=None,
                   help="answer with a stored stale response, however stale, when the origin "
                   "fails: any of error, timeout, http_500, http_502, http_503, http_504, comma "
                   "separated, as nginx proxy_cache_use_stale (default: off, i.e. only where "
                   "the response's stale-if-error allows)")
    p.add_argument("--lock-timeout", type=seconds, metavar="SECONDS", default=None,
                   help="how long concurrent requests for a response being fetched wait for it "
                   "instead of asking the origin too (default: 5; 0 = no coalescing)")
    p.add_argument("--connect-timeout", type=seconds, metavar="SECONDS", default=None,
                   help="origin connect timeout; 504 (or stale) past it (default: 10; 0 = none)")
    p.add_argument("--first-byte-timeout", type=seconds, metavar="SECONDS", default=None,
                   help="time for the origin's response headers once connected; 504 (or "
                   "stale) past it (default: 60; 0 = none)")
    p.add_argument("--response-timeout", type=seconds, metavar="SECONDS", default=None,
                   help="time for a whole origin response, body included; past it the "
                   "exchange is cut (default: 0 = no limit)")
    p.add_argument("--set", dest="setoptions", action="append", default=[],
                   metavar="NAME=VALUE",
                   help="set any mitmproxy or cache option (repeatable), e.g. --set "
                   "cache_set_cookie=true or --set ssl_insecure=true; list them with "
                   "`mitmdump -s addons/cache.py --options`")
    p.add_argument("--web", action="store_true",
                   help="run under mitmweb to inspect the traffic in a browser; hits are "
                   "marked and commented 'cache HIT'")
    p.add_argument("--web-port", type=port_number, default=8081,
                   help="port of mitmweb's interface with --web (default: 8081)")
    p.add_argument("--workers", type=worker_count, default=1, metavar="N",
                   help="run N proxy processes on the one port (SO_REUSEPORT), sharing the store, "
                   "to use N cores (default: 1; not with --web)")
    p.add_argument("--quiet", action="store_true",
                   help="no access log (by default one line per request on standard output)")
    p.add_argument("--log-format", choices=("text", "json"), default=None,
                   help="access log lines as text (default) or as JSON objects")
    p.add_argument("--metrics-port", type=port_number, default=None, metavar="PORT",
                   help="serve Prometheus metrics on http://127.0.0.1:PORT/metrics")
    p.add_argument("--purge-secret", default=None, metavar="SECRET",
                   help="allow PURGE requests from any address that send this secret in "
                   "X-Purge-Secret, and only those (default: PURGE from loopback only)")
    ops = p.add_argument_group(
        "commands on the store (run, print, exit; safe while a proxy runs on the same cache)")
    ops.add_argument("--clear-cache", action="store_true",
                     help="remove every stored response and print what was removed")
    ops.add_argument("--purge", action="append", default=[], metavar="TARGET",
                     help="remove the stored responses (all Vary variants) of a URL, or of a "
                     "/path (of --origin if given, else of every origin stored); a * makes it a "
                     "glob, e.g. '/api/*'; repeatable")
    ops.add_argument("--purge-prefix", action="append", default=[], metavar="PREFIX",
                     help="remove the stored responses of every path starting with PREFIX, "
                     "e.g. /api/; repeatable")
    ops.add_argument("--list", action="store_true",
                     help="list the stored responses: URL, status, size, age, time to live "
                     "(negative: stale), variants")
    ops.add_argument("--stats", action="store_true",
                     help="entries, bytes, hits, misses, hit ratio, stale served, "
                     "revalidations, origin errors since the cache was created")
    ops.add_argument("--json", action="store_true",
                     help="print --list, --stats and purge results as JSON")
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
        try:
            s.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                fail(f"port {port} on {host} is already in use")
            fail(f"cannot listen on {host}:{port}: {e.strerror}")


# Commands and meta options that make no sense as lasting settings in a config file.
NOT_IN_CONFIG = frozenset({"config", "help", "version", "clear_cache", "purge", "purge_prefix",
                           "list", "stats", "json"})


def config_argv(parser: Parser, path: str) -> list[str]:
    """The config file as command-line arguments, each checked as the CLI checks it."""
    from caching_proxy.config_file import ConfigError, line_of, load

    try:
        config = load(path)
    except ConfigError as e:
        fail(str(e))
    text = Path(path).read_text(encoding="utf-8")
    flags = {a.dest: a for a in parser._actions if a.option_strings}
    argv: list[str] = []
    for key, value in config.settings.items():
        line = line_of(text, key)
        where = f"{path}, line {line}" if line else path
        action = flags.get(key)
        if action is None or key in NOT_IN_CONFIG:
            fail(f"{where}: unknown option {key!r} (options are the long CLI options, "
                 "with _ for -)")
        flag = action.option_strings[-1]
        values = value if isinstance(value, list) else [value]
        piece: list[str] = []
        for v in values:
            if isinstance(action, argparse._StoreTrueAction):
                if not isinstance(v, bool):
                    fail(f"{where}: {key} must be true or false")
                piece += [flag] if v else []
            else:
                piece += [flag, str(v).lower() if isinstance(v, bool) else str(v)]
        parser.raise_errors = True
        try:
            parser.parse_args(piece)
        except ValueError as e:
            fail(f"{where}: {key}: {e}")
        finally:
            parser.raise_errors = False
        argv += piece
    for name, value in config.options.items():
        shown = str(value).lower() if isinstance(value, bool) else str(value)
        argv += ["--set", f"{name}={shown}"]
    return [*argv, "--set", f"cache_config={os.path.abspath(path)}"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config:
        # The file's options first, so that the command line's win.
        args = parser.parse_args([*config_argv(parser, args.config), *argv])
    if args.clear_cache or args.purge or args.purge_prefix or args.list or args.stats:
        from caching_proxy import operations

        return operations.run(args, args.store or cache_dir_of(args))
    if args.origin is None:
        fail("--origin is required, e.g. --origin http://dummyjson.com")
    path = cache_dir_of(args)
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
    if sys.flags.optimize == 0 and not os.environ.get("CACHING_PROXY_DEBUG"):
        # mitmproxy checks the type of every field of every Request and Response it builds,
        # under `if __debug__` only: the proxy runs without them (measured: +22% hits/s).
        os.execv(sys.executable, [sys.executable, "-O", "-m", "caching_proxy", *argv])
    from caching_proxy import runner

    cache_options: dict[str, object] = {"cache_dir": path}
    if args.store:
        cache_options["cache_store"] = args.store
    if args.cache_size is not None:
        cache_options["cache_size"] = args.cache_size
    for arg, option in (("default_ttl", "cache_default_ttl"),
                        ("max_object_size", "cache_max_object_size"),
                        ("use_stale", "cache_use_stale"),
                        ("lock_timeout", "cache_lock_timeout"),
                        ("connect_timeout", "cache_connect_timeout"),
                        ("first_byte_timeout", "cache_first_byte_timeout"),
                        ("response_timeout", "cache_response_timeout"),
                        ("metrics_port", "cache_metrics_port"),
                        ("purge_secret", "cache_purge_secret")):
        if getattr(args, arg) is not None:
            cache_options[option] = getattr(args, arg)
    if args.quiet or args.log_format:
        cache_options["cache_access_log"] = "off" if args.quiet else args.log_format
    return runner.run(
        origin=args.origin, host=args.host, port=args.port, web=args.web,
        web_port=args.web_port, cache_options=cache_options, setoptions=args.setoptions,
        banner=worker is None or worker[0] == 1, workers=args.workers,
    )


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
