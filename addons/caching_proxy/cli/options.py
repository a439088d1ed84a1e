"""The cache's options, declared once (what their values may be: option_values.py).

`CACHE_OPTIONS` is the one table: each row is a mitmproxy option (name, type, default, help),
declared through mitmproxy's option system so that `--set`, config.yaml and mitmweb's option
editor all see it, together with the `caching-proxy` flags that set it (flag, metavar, validator,
help). The CLI builds its parser, its `--help`, its config-file keys and its mapping to options
from this table; tests/unit/test_options_table.py holds the README's tables to it. Its rows'
kinds are in option_types.py; the origin gate's rows are kept in origin_options.py, spliced in.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from caching_proxy.cli.option_types import Flag, Option
from caching_proxy.cli.option_values import (
    FD_RESERVE,
    auto_max_connections,
    checked_by,
    connection_limit,
    count,
    encodings,
    log_format,
    object_size,
    parse_timeout,
    port_number,
    seconds,
    size_or_zero,
    store_url,
    use_stale,
)
from caching_proxy.cli.origin_options import ORIGIN_OPTIONS
from caching_proxy.policy.encoding import default_codings
from caching_proxy.policy.forwarded import parse_networks

if TYPE_CHECKING:
    from mitmproxy.addonmanager import Loader

CACHE_NAME = "caching-proxy"


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "caching-proxy")


CACHE_OPTIONS: tuple[Option, ...] = (
    Option("cache_dir", str, default_cache_dir(), "Folder of the response store (diskcache).", (
        Flag("--cache-dir", "folder of the response store (default: {default}, i.e. "
             "$XDG_CACHE_HOME/caching-proxy)", metavar="DIR"),)),
    Option("cache_store", str, "",
           "Where responses are stored: empty for diskcache in cache_dir, or a Redis URL "
           "(redis://host:6379/0, redis+cluster://host:port[,host:port...], "
           "redis+sentinel://host:port[,host:port...]/SERVICE[/DB]; over TLS rediss://, "
           "rediss+cluster://, rediss+sentinel:// with ?ssl_ca_certs=... options) shared by "
           "several proxy instances; its passwords are shown as ***.", (
               Flag("--store", "keep responses in Redis instead of --cache-dir, shared by every "
                    "proxy given the same URL, e.g. redis://127.0.0.1:6379/0, a Redis Cluster "
                    "redis+cluster://n1:6379,n2:6379 or Sentinel "
                    "redis+sentinel://s1:26379,s2:26379/mymaster/0; over TLS rediss://, "
                    "rediss+cluster://user:pass@n1:6379 or rediss+sentinel://... with "
                    "?ssl_ca_certs=FILE (see README for the options and maxmemory-policy); "
                    "the one-shot commands below work on it too",
                    metavar="URL", parse=store_url),)),
    Option("cache_store_timeout", str, "0.25",
           "Seconds a request waits for a network store (Redis) before it passes through to the "
           "origin; its reads and writes never hold up the event loop longer.", (
               Flag("--store-timeout", "how long a request waits for the Redis store before it "
                    "passes through to the origin (default: {default}); lookups and writes run "
                    "off the event loop and the fill lock is asynchronous, so other requests "
                    "and memory-tier hits go on",
                    metavar="SECONDS", parse=checked_by(parse_timeout)),)),
    Option("cache_size", str, "1g",
           "Upper bound of the store on disk (e.g. 500m, 1g); least recently used entries are "
           "evicted past it.", (
               Flag("--cache-size", "upper bound of the store on disk, e.g. 500m or 2g (default: "
                    "{default}); least recently used responses are evicted past it",
                    metavar="SIZE", parse=object_size),)),
    Option("cache_default_ttl", int, 300,
           "Seconds a response without explicit freshness (and without Last-Modified) stays "
           "fresh. 0: such responses are never reused without asking the origin.", (
               Flag("--default-ttl", "freshness lifetime of a response that states none "
                    "(default: {default}); 0 = never reuse such a response without asking the "
                    "origin", metavar="SECONDS", parse=seconds),)),
    Option("cache_memory_size", str, "auto",
           "Bytes of hot responses kept in each proxy process in front of the store (a memory "
           "tier, coherent with every change to the store); auto: 64m with Redis, off with "
           "diskcache (its hits would not keep their entries recent in the disk store's LRU, "
           "see README); 0: off.", (
               Flag("--memory-size", "keep up to SIZE of hot responses in each proxy process, in "
                    "front of the store, e.g. 64m; changes to the store from anywhere are seen "
                    "(default: {default} = 64m with --store redis, off with diskcache, where its hits "
                    "would not keep their entries recent in the disk LRU; 0 = off)",
                    metavar="SIZE", parse=size_or_zero),)),
    Option("cache_max_object_size", str, "64m",
           "Largest response stored (e.g. 64m); larger ones, or ones of unknown length that grow "
           "past it, are streamed to the client and not stored (sets mitmproxy's "
           "stream_large_bodies).", (
               Flag("--max-object-size", "largest response stored (default: {default}); larger "
                    "ones, or ones of unknown length that grow past it, are streamed to the "
                    "client, not stored", metavar="SIZE", parse=object_size),)),
    Option("cache_use_stale", str, "error,timeout,http_429",
           "When to answer with a stored stale response instead of an origin failure, whatever "
           "its stale-if-error (nginx proxy_cache_use_stale): any of error, timeout, http_429, "
           "http_500, http_502, http_503, http_504, comma separated. The default serves stale "
           "when the origin cannot be reached, times out or answers 429 Too Many Requests, as "
           "Squid and Traffic Server do for the first two; never for "
           "must-revalidate, proxy-revalidate, s-maxage or no-cache responses. off: only where "
           "stale-if-error allows.", (
               Flag("--use-stale", "answer with a stored stale response, however stale, when the "
                    "origin fails: any of error, timeout, http_429, http_500, http_502, "
                    "http_503, http_504, comma separated, as nginx proxy_cache_use_stale "
                    "(default: {default}: an unreachable, timed-out or rate-limiting origin; "
                    "off = only where the response's stale-if-error allows)",
                    metavar="CONDITIONS", parse=use_stale),)),
    *ORIGIN_OPTIONS,
    Option("cache_lock_timeout", int, 5,
           "Seconds a request for a response being fetched for another client waits for it "
           "(request coalescing, nginx proxy_cache_lock) before going to the origin itself. "
           "0: no coalescing.", (
               Flag("--lock-timeout", "how long concurrent requests for a response being fetched "
                    "wait for it instead of asking the origin too (default: {default}; 0 = no "
                    "coalescing)", metavar="SECONDS", parse=seconds),)),
    Option("cache_connect_timeout", int, 10,
           "Seconds to connect to the origin before answering 504 (or a stale response). "
           "0: none.", (
               Flag("--connect-timeout", "origin connect timeout; 504 (or stale) past it "
                    "(default: {default}; 0 = none)", metavar="SECONDS", parse=seconds),)),
    Option("cache_first_byte_timeout", int, 60,
           "Seconds from forwarding a request (once connected) to the origin's response headers "
           "before answering 504 (or a stale response). 0: none.", (
               Flag("--first-byte-timeout", "time for the origin's response headers once "
                    "connected; 504 (or stale) past it (default: {default}; 0 = none)",
                    metavar="SECONDS", parse=seconds),)),
    Option("cache_response_timeout", int, 0,
           "Seconds a whole origin response may take, body included; past it the exchange is "
           "cut (504 if nothing was sent yet). 0: no limit.", (
               Flag("--response-timeout", "time for a whole origin response, body included; "
                    "past it the exchange is cut (default: {default} = no limit)",
                    metavar="SECONDS", parse=seconds),)),
    Option("cache_header_timeout", int, 60,
           "Seconds for the whole request head of a client request to arrive, from the "
           "connection's start or the head's first byte (nginx client_header_timeout); past it "
           "the client gets 408 Request Timeout (over TLS: the connection is closed) and the "
           "connection is closed. 0: none.", (
               Flag("--header-timeout", "time for a client's whole request head to arrive, "
                    "from its first byte (a new connection: from accepting it); past it 408 and "
                    "close, as nginx client_header_timeout (default: {default}; 0 = none)",
                    metavar="SECONDS", parse=seconds),)),
    Option("cache_keepalive_timeout", int, 75,
           "Seconds an idle kept-alive client connection (no request in progress, the last "
           "response sent) is kept open (nginx keepalive_timeout). 0: none.", (
               Flag("--keepalive-timeout", "close a kept-alive client connection idle this long, "
                    "as nginx keepalive_timeout (default: {default}; 0 = none)",
                    metavar="SECONDS", parse=seconds),)),
    Option("cache_drain_timeout", int, 10,
           "Seconds a stop (SIGTERM, SIGINT) lets requests in flight finish after the listener "
           "is closed, idle connections at once (nginx worker_shutdown_timeout); past it the "
           "rest are cut. 0: cut at once.", (
               Flag("--drain-timeout", "on SIGTERM: stop accepting, close idle connections, let "
                    "requests in flight finish for up to this long, then cut the rest and exit 0 "
                    "(default: {default}; 0 = cut at once)", metavar="SECONDS",
                    parse=seconds),)),
    Option("cache_web_max_flows", int, 10000,
           "Most flows mitmweb keeps (oldest dropped first), so that a long --web session stays "
           "bounded. 0: no bound.", (
               Flag("--web-max-flows", "with --web: most flows kept in mitmweb, the oldest "
                    "dropped first (default: {default}; 0 = no bound)", metavar="N",
                    parse=count),)),
    Option("cache_max_connections", str, "auto",
           "Most client connections held at once; past it new ones are closed at once, while "
           "those held keep being served. auto: (the soft RLIMIT_NOFILE - "
           f"{FD_RESERVE}) / 2, leaving a descriptor per client for its origin connection and "
           f"{FD_RESERVE} for the store and the rest; 0: no bound.", (
               Flag("--max-connections", "most client connections held at once; past it new "
                    "ones are closed at once (default: {default}: (the soft file-descriptor "
                    f"limit - {FD_RESERVE}) / 2, here {auto_max_connections()}; 0 = no bound)",
                    metavar="N", parse=connection_limit),)),
    Option("cache_hit_lane", bool, True,
           "Answer plain HTTP/1 GET and HEAD hits on cleartext connections from the client "
           "connection's reader, past mitmproxy's protocol layers (the caching-proxy command's "
           "own master only; mitmweb and mitmdump -s always take mitmproxy's path).", (
               Flag("--no-hit-lane", "send every request through mitmproxy's protocol layers, "
                    "hits included (by default plain HTTP/1 hits skip them: the same answers "
                    "for about half the CPU per hit)", switch=True, sets=False),)),
    Option("cache_tls_cert", str, "",
           "PEM file of the certificate (chain, leaf first) served to clients: HTTPS on the "
           "listening port, HTTP/2 by ALPN (mitmproxy's http2), HTTP/1.1 otherwise; needs "
           "cache_tls_key. Sets mitmproxy's certs.", (
               Flag("--tls-cert", "serve HTTPS with this PEM certificate (chain, leaf first), "
                    "HTTP/2 by ALPN, HTTP/1.1 otherwise; needs --tls-key", metavar="FILE"),)),
    Option("cache_tls_key", str, "",
           "PEM file of the private key (unencrypted) of cache_tls_cert.", (
               Flag("--tls-key", "the unencrypted PEM private key of --tls-cert",
                    metavar="FILE"),)),
    Option("cache_access_log", str, "text",
           "Access log, one line per request: text, json, combined (NCSA combined followed by "
           "X-Cache and the quoted Cache-Status), a template of Apache/varnishncsa "
           "%-directives (%h %l %u %t %r %s %b %B %D %T %m %U %q %H %{Name}i %{Name}o %%), "
           "or off (--quiet).", (
               # --quiet first: it wins over --log-format, wherever each was given.
               Flag("--quiet", "no access log (by default one line per request on standard "
                    "output)", switch=True, sets="off"),
               Flag("--log-format", "access log lines: text, json, combined (NCSA combined "
                    "plus X-Cache and Cache-Status, as nginx and varnishncsa log them) or a "
                    "template of Apache-style directives, e.g. '%h %t \"%r\" %s %b "
                    "%{{X-Cache}}o %D' (default: {default})", metavar="FORMAT",
                    parse=log_format))),
    Option("cache_access_log_file", str, "",
           "File the access log is appended to (empty: standard output); reopened on SIGUSR1, "
           "for logrotate.", (
               Flag("--access-log", "append the access log to FILE instead of standard output; "
                    "SIGUSR1 reopens it (logrotate's postrotate, as nginx)", metavar="FILE"),)),
    Option("cache_metrics_port", int, 0,
           "Serve Prometheus metrics on http://127.0.0.1:PORT/metrics (0: off).", (
               Flag("--metrics-port", "serve Prometheus metrics on http://127.0.0.1:PORT/metrics "
                    "(default: off)", metavar="PORT", parse=port_number),)),
    Option("cache_encodings", str, ",".join(default_codings()),
           "Content codings Accept-Encoding is normalized to before it is keyed and forwarded: "
           "the first the client accepts, else none (as Fastly does); comma separated, from br, "
           "gzip, zstd; off: sent as the client wrote it.", (
               Flag("--encodings", "normalize Accept-Encoding to the first of these codings the "
                    "client accepts, else none, so that Vary: Accept-Encoding makes at most that "
                    "many variants plus one; clients that accept none get a stored variant "
                    "decoded (default: {default}; off = as sent)", metavar="LIST",
                    parse=encodings),)),
    Option("cache_compress", bool, False,
           "Compress responses the origin sent uncompressed (text, JSON, JavaScript, XML, SVG) "
           "once, when they are stored, with the coding the request accepts.", (
               Flag("--compress", "compress text, JSON, JavaScript, XML and SVG responses the "
                    "origin sent uncompressed, once, when they are stored (nginx's gzip "
                    "module does it per response; default: off)", switch=True, sets=True),)),
    Option("cache_tag_headers", str, "Surrogate-Key,Cache-Tag",
           "Response fields whose values are cache tags (Fastly's Surrogate-Key, separated by "
           "spaces; Cloudflare's Cache-Tag, by commas), comma separated; tags are stored with "
           "the response for purging by tag. Empty: no tags.", (
               Flag("--tag-header", "a response field that carries cache tags, to purge by; "
                    "repeatable (default: {default})", metavar="NAME", repeat=True),)),
    Option("cache_keep_tag_header", bool, False,
           "Send the tag fields on to clients (by default they are removed, as Fastly does).", (
               Flag("--keep-tag-header", "send the tag fields on to clients (by default the "
                    "cache removes them, as Fastly does)", switch=True, sets=True),)),
    Option("cache_admin_port", int, 0,
           "Serve the admin API (JSON: /stats, /entries, /purge, /clear, /metrics) on "
           "cache_admin_host:PORT (0: off).", (
               Flag("--admin-port", "serve the admin API (JSON stats, entries, purge, clear, "
                    "metrics; see README) on PORT (default: off)", metavar="PORT",
                    parse=port_number),)),
    Option("cache_admin_host", str, "127.0.0.1",
           "Address of the admin API; other than loopback only with cache_purge_secret, which "
           "requests then send as a bearer token.", (
               Flag("--admin-host", "address of the admin API (default: {default}); any other "
                    "than loopback needs --purge-secret, sent as Authorization: Bearer SECRET",
                    metavar="ADDRESS"),)),
    Option("cache_purge_secret", str, "",
           "When set, PURGE requests must carry it in X-Purge-Secret (from any address), and "
           "admin API requests as Authorization: Bearer; when empty, both answer loopback only.", (
               Flag("--purge-secret", "allow PURGE requests from any address that send this "
                    "secret in X-Purge-Secret, and only those; the admin API then requires it "
                    "as a bearer token (default: PURGE and admin API from loopback only)",
                    metavar="SECRET"),)),
    Option("cache_forwarded", str, "on",
           "on: send X-Forwarded-For, X-Forwarded-Proto and Via to the origin and Via on every "
           "answer (as Varnish and Squid); off: none of them.", (
               Flag("--forwarded", "X-Forwarded-For, X-Forwarded-Proto and Via toward the "
                    "origin, Via on answers (default: {default})", metavar="{on,off}",
                    choices=("on", "off")),)),
    Option("cache_trusted_proxies", str, "",
           "Addresses or CIDR blocks (comma separated) whose X-Forwarded-For and "
           "X-Forwarded-Proto are kept (appended to); from any other peer they are replaced.", (
               Flag("--trusted-proxy", "a load balancer's address or CIDR block whose "
                    "X-Forwarded-For is appended to, not replaced; repeatable (default: none)",
                    metavar="CIDR", parse=checked_by(parse_networks), repeat=True),)),
    # Without flags: set with --set, an [options] table or config.yaml.
    Option("cache_lru_interval", int, 300,
           "Seconds within which repeated use of an entry counts once for least-recently-used "
           "eviction (Varnish's lru_interval); saves a disk write on every hit."),
    Option("cache_heuristic_fraction", str, "0.1",
           "Fraction of (Date - Last-Modified) used as the lifetime of a response without "
           "explicit freshness (RFC 9111 4.2.2)."),
    Option("cache_heuristic_max", int, 86400, "Upper bound in seconds of a heuristic lifetime."),
    Option("cache_set_cookie", bool, False,
           "Store responses that carry Set-Cookie (nginx and Varnish do not by default)."),
    Option("cache_cookie_requests", bool, False,
           "Answer and store requests that carry Cookie (Varnish passes them by default)."),
    Option("cache_targeted_fields", str, "CDN-Cache-Control",
           "RFC 9213 targeted cache-control fields this cache obeys over Cache-Control, highest "
           "precedence first, comma separated."),
    Option("cache_config", str, "",
           "TOML file of per-path rules ([[rule]]: match, ttl, default_ttl, never_cache, "
           "ignore_query, key_headers, status, ignore, min_uses, bypass_header, "
           "bypass_cookie); see README."),
    Option("cache_keep_stale", int, 86400,
           "Seconds a stale response is kept past its freshness: to be revalidated with a "
           "conditional request instead of fetched again, or served where max-stale or "
           "stale-if-error allow."),
)

DEFAULTS: Mapping[str, Any] = {o.name: o.default for o in CACHE_OPTIONS}

# Which addon reads which option: each declares those it reads in its `load` (and acts on them
# in `configure` only when they change). An option two addons read is declared by both; the
# CLI, --help and the option reference are built from CACHE_OPTIONS above, the one table.
# tests/unit/test_option_owners.py loads each addon alone and fails on any it reads undeclared.
READ_BY: Mapping[str, tuple[str, ...]] = {
    "CacheAddon": (
        "cache_dir", "cache_store", "cache_store_timeout", "cache_size", "cache_lru_interval",
        "cache_memory_size", "cache_default_ttl", "cache_heuristic_fraction",
        "cache_heuristic_max", "cache_cookie_requests", "cache_set_cookie",
        "cache_targeted_fields", "cache_config", "cache_compress", "cache_encodings",
        "cache_first_byte_timeout", "cache_keep_stale", "cache_keep_tag_header",
        "cache_lock_timeout", "cache_max_object_size", "cache_tag_headers", "cache_use_stale",
        "cache_refresh_ahead", "cache_slice"),
    "ClientLimits": ("cache_header_timeout", "cache_keepalive_timeout", "cache_max_connections"),
    "ClientTls": ("cache_tls_cert", "cache_tls_key"),
    "BodyLimit": ("cache_max_object_size",),
    "OriginTimeouts": ("cache_connect_timeout", "cache_first_byte_timeout",
                       "cache_response_timeout"),
    "Purge": ("cache_purge_secret",),
    "Admin": ("cache_admin_host", "cache_admin_port", "cache_purge_secret"),
    "AccessLog": ("cache_access_log", "cache_access_log_file"),
    "Metrics": ("cache_metrics_port", "cache_admin_port"),
    "HitLane": ("cache_hit_lane", "cache_tls_cert"),
    "Drain": ("cache_drain_timeout",),
    "FlowCap": ("cache_web_max_flows",),
    "Forwarded": ("cache_forwarded", "cache_trusted_proxies"),
    "OriginGate": ("cache_origin_concurrency", "cache_origin_rate", "cache_origin_burst",
                   "cache_origin_queue_timeout", "cache_offline", "cache_health_check",
                   "cache_health_interval", "cache_health_fails"),
}
_BY_NAME = {o.name: o for o in CACHE_OPTIONS}


def read_by(addon: object) -> frozenset[str]:
    """The cache options `addon` (an instance) reads."""
    return frozenset(READ_BY[type(addon).__name__])


def declare(loader: Loader, addon: object) -> None:
    """Declare with mitmproxy the cache options `addon` reads (READ_BY). Safe to call more than
    once and from several addons: mitmproxy ignores a declaration identical to an existing one."""
    for name in READ_BY[type(addon).__name__]:
        o = _BY_NAME[name]
        loader.add_option(o.name, o.type, o.default, o.help)


def flag_help(option: Option | None, flag: Flag) -> str:
    """The flag's `--help` text, its `{default}` filled in."""
    default = flag.default if option is None else option.default
    return flag.help.format(default=default)


def options_given(args: argparse.Namespace) -> dict[str, Any]:
    """The cache options set by the flags given in `args` (parsed by a parser built from this
    table); options whose flags were not given are left out, so that their defaults and `--set`
    apply."""
    given: dict[str, Any] = {}
    for option in CACHE_OPTIONS:
        for flag in option.flags:
            value = getattr(args, flag.attribute)
            if flag.switch and value:
                given[option.name] = flag.sets
                break
            if flag.repeat and value:  # a list option kept as one comma-separated string
                given[option.name] = ",".join(value)
                break
            if not flag.switch and not flag.repeat and value is not None:
                given[option.name] = value
                break
    return given
