"""`caching-proxy`: runs the caching reverse proxy, or a one-shot command on its store."""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from typing import NoReturn
from urllib.parse import urlsplit

from caching_proxy import __version__, workers
from caching_proxy.options import default_cache_dir

USAGE_ERROR = 2


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
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


def build_parser() -> Parser:
    p = Parser(
        prog="caching-proxy",
        description="An HTTP caching reverse proxy in front of one origin (mitmproxy + diskcache). "
        "Every response carries X-Cache: HIT or MISS and an RFC 9211 Cache-Status.",
    )
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
    p.add_argument("--clear-cache", action="store_true",
                   help="remove every stored response, print what was removed, and exit "
                   "(safe while a proxy runs on the same cache)")
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


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def clear_cache(path: str) -> int:
    from caching_proxy.store import open_store

    store = open_store(path)
    try:
        removed = store.clear()
    finally:
        store.close()
    print(f"caching-proxy: cleared {removed.entries} entries ({human_size(removed.bytes)}) "
          f"from {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.clear_cache:
        return clear_cache(cache_dir_of(args))
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
    if args.cache_size is not None:
        cache_options["cache_size"] = args.cache_size
    for arg, option in (("default_ttl", "cache_default_ttl"),
                        ("max_object_size", "cache_max_object_size"),
                        ("use_stale", "cache_use_stale"),
                        ("lock_timeout", "cache_lock_timeout"),
                        ("connect_timeout", "cache_connect_timeout"),
                        ("first_byte_timeout", "cache_first_byte_timeout"),
                        ("response_timeout", "cache_response_timeout")):
        if getattr(args, arg) is not None:
            cache_options[option] = getattr(args, arg)
    return runner.run(
        origin=args.origin, host=args.host, port=args.port, web=args.web,
        web_port=args.web_port, cache_options=cache_options, setoptions=args.setoptions,
        banner=worker is None or worker[0] == 1, workers=args.workers,
    )


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
