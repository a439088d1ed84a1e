"""The store URL of a Redis store: what it names, checked, and how it may be shown.

- `redis://host:6379/0`, `rediss://...`, `unix:///path?db=0`: one server (redis-py's from_url).
- `redis+cluster://host:port[,host:port...]`: a Redis Cluster, found from any of these nodes
  (redis-py's RedisCluster: it follows MOVED and ASK, and reloads the slot map after a node
  fails, so requests reach a promoted replica once the cluster has failed over). A cluster has
  database 0 only: no /DB.
- `redis+sentinel://host:port[,host:port...]/SERVICE[/DB]`: the master Sentinel names for
  SERVICE (redis-py's Sentinel.master_for: each new connection asks the sentinels where the
  master is, so after a failover connections go to the promoted replica).
`rediss+cluster://` and `rediss+sentinel://`: the same over TLS, to every node (for Sentinel: to
the sentinels and to the master they name). `user:password@` (or `:password@`) before the hosts
is passed to the data nodes (not to the sentinels). Ports default to 6379 (26379 for sentinels).
A cluster or Sentinel URL takes these `?options` only (OPTIONS; any other is a one-line error):
`ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile` (files), `ssl_cert_reqs` (none|optional|required),
`ssl_check_hostname` (true|false), each TLS only (a rediss+ scheme), passed as redis-py's own
SSLConnection parameters to every connection; and for Sentinel `sentinel_username` and
`sentinel_password`, the sentinels' own AUTH (redis-py's `sentinel_kwargs`). A one-server URL
is read by redis-py's from_url, which takes the same TLS options (with `rediss://`) and `db`,
`username`, `password`, `client_name` (PLAIN_OPTIONS: any other would reach redis-py's
connection as an unknown argument, a TypeError on first use, or override the store's
timeouts). `redact_store_url` is a URL to show: its passwords replaced by `***`.

Only the standard library is imported here: option checks use it without redis-py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

PLAIN_SCHEMES = ("redis://", "rediss://", "unix://")
CLUSTER, SENTINEL = "redis+cluster://", "redis+sentinel://"
TLS_CLUSTER, TLS_SENTINEL = "rediss+cluster://", "rediss+sentinel://"
SCHEMES = (*PLAIN_SCHEMES, CLUSTER, SENTINEL, TLS_CLUSTER, TLS_SENTINEL)
CLUSTER_FORM = "redis+cluster://host:6379[,host:port...]"
SENTINEL_FORM = "redis+sentinel://host:26379[,host:port...]/SERVICE[/DB]"

# A cluster or Sentinel URL's ?options: TLS ones (redis-py's SSLConnection parameters, the
# same names as its from_url reads), and the sentinels' own AUTH (Sentinel only).
TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs",
               "ssl_check_hostname")
SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")
OPTIONS = (*TLS_OPTIONS, *SENTINEL_OPTIONS)
# A one-server URL's, which redis-py's from_url reads (unix://: its password and db are here).
# Not its timeouts or retries: those are --store-timeout's and none, whatever the URL says.
PLAIN_OPTIONS = ("db", "username", "password", "client_name", *TLS_OPTIONS)
CERT_REQS = ("none", "optional", "required")
BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
REDACTED = "***"


@dataclass(frozen=True)
class StoreAddress:
    # repr=False: the URL and the passwords are never shown (a repr may end up in a log).
    url: str = field(repr=False)
    kind: str  # "redis" (one server, redis-py reads the URL itself), "cluster" or "sentinel"
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False  # rediss+cluster:// or rediss+sentinel://
    # redis-py's SSLConnection keyword arguments from the URL's ?options (TLS_OPTIONS).
    tls_options: tuple[tuple[str, str | bool], ...] = ()
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)

    @property
    def over_tls(self) -> bool:
        """Whether its connections are TLS: a rediss+ scheme, or a one-server rediss:// URL."""
        return self.tls or self.url.startswith("rediss://")

    def tls_kwargs(self) -> dict[str, Any]:
        """The TLS keyword arguments of every connection (none without TLS)."""
        return {"ssl": True, **dict(self.tls_options)} if self.tls else {}


def parse_store_url(text: str) -> StoreAddress:
    """The address in a store URL; ValueError with a one-line reason for a bad one."""
    if text.startswith(PLAIN_SCHEMES):
        parts = urlsplit(text)
        _port(parts)
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("no host")
        _options(parts.query, parts.scheme == "rediss", PLAIN_OPTIONS)
        return StoreAddress(text, "redis")
    if not text.startswith((CLUSTER, SENTINEL, TLS_CLUSTER, TLS_SENTINEL)):
        raise ValueError("must be a Redis URL such as redis://127.0.0.1:6379/0, "
                         f"{CLUSTER_FORM} or {SENTINEL_FORM} (rediss+...: over TLS)")
    parts = urlsplit(text)
    if parts.fragment:
        raise ValueError("no #fragment in a cluster or sentinel URL")
    cluster = text.startswith((CLUSTER, TLS_CLUSTER))
    tls = text.startswith((TLS_CLUSTER, TLS_SENTINEL))
    options = _options(parts.query, tls, TLS_OPTIONS if cluster else OPTIONS)
    if "sentinel_username" in options and "sentinel_password" not in options:
        raise ValueError("option 'sentinel_username' needs 'sentinel_password'")
    tls_options = tuple((k, v) for k, v in options.items() if k in TLS_OPTIONS)
    sentinel_user, sentinel_secret = (options.get(k) for k in SENTINEL_OPTIONS)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    nodes = tuple(_node(item, 6379 if cluster else 26379) for item in hosts.split(","))
    path = [piece for piece in parts.path.split("/") if piece]
    user, secret = unquote(username) or None, unquote(password) or None
    if cluster:
        if path:
            raise ValueError(f"a cluster has database 0 only, so no /DB: use {CLUSTER_FORM}")
        return StoreAddress(text, "cluster", nodes, username=user, password=secret, tls=tls,
                            tls_options=tls_options)
    if not path or len(path) > 2:
        raise ValueError(f"no SERVICE: use {SENTINEL_FORM}")
    db = path[1] if len(path) == 2 else "0"
    if not db.isdigit():
        raise ValueError(f"bad DB {db!r}: a whole number")
    return StoreAddress(text, "sentinel", nodes, unquote(path[0]), int(db), user, secret, tls,
                        tls_options, _str(sentinel_user), _str(sentinel_secret))


def _options(query: str, tls: bool, allowed: tuple[str, ...]) -> dict[str, str | bool]:
    """A URL's ?options, checked (`allowed` names, TLS ones only with `tls`, values, each given
    once) and as redis-py takes them."""
    found: dict[str, str | bool] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ValueError("bad ?options: use name=value&name=value") from None
    for name, value in pairs:
        if name not in allowed:
            raise ValueError(f"unknown option {name!r}: one of {', '.join(allowed)}")
        if name in found:
            raise ValueError(f"option {name!r} given twice")
        if name in TLS_OPTIONS and not tls:
            raise ValueError(f"option {name!r} is for TLS: use a rediss://, rediss+cluster:// "
                             "or rediss+sentinel:// URL")
        if not value:
            raise ValueError(f"option {name!r} has no value")
        found[name] = _option_value(name, value)
    return found


def _option_value(name: str, value: str) -> str | bool:
    if name == "ssl_cert_reqs":
        if value.lower() not in CERT_REQS:
            raise ValueError(f"bad ssl_cert_reqs {value!r}: one of {'|'.join(CERT_REQS)}")
        return value.lower()
    if name == "ssl_check_hostname":
        if value.lower() not in BOOLEANS:
            raise ValueError(f"bad ssl_check_hostname {value!r}: true or false")
        return BOOLEANS[value.lower()]
    return value


def _str(value: str | bool | None) -> str | None:
    return value if isinstance(value, str) else None


# A netloc's password: after the user name's ":", up to the text's last "@" (greedy: a password
# with a stray "/", "?" or "@" in it is still covered; at worst more than the password goes);
# and a query option with "password" in its name.
_NETLOC_SECRET = re.compile(r"^(?P<head>[^:/?#]+://[^:@/?#]*:).*@", re.DOTALL)
_SECRET_PARAM = re.compile(r"(?P<name>[?&;][^=&;#]*password[^=&;#]*=)[^&;#]*", re.IGNORECASE)


def redact_store_url(text: str) -> str:
    """`text` (a store URL, or any store location) as it may be shown: the password in its
    netloc (`user:***@`, `:***@`) and the value of every query option whose name has
    "password" in it (`password=`, `sentinel_password=`, `ssl_password=`) replaced by `***`.
    For any text with a `scheme://`, a valid URL or not (the error about a bad URL shows it
    too); anything else (a diskcache folder) is returned as it is."""
    if "://" not in text:
        return text
    text = _NETLOC_SECRET.sub(lambda m: m["head"] + REDACTED + "@", text, count=1)
    return _SECRET_PARAM.sub(lambda m: m["name"] + REDACTED, text)


def _node(item: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit("//" + item)
    port = _port(parts)
    if not parts.hostname:
        raise ValueError("no host" if not item else f"no host in {item!r}")
    return parts.hostname, port or default_port


def _port(parts: SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError:
        raise ValueError("bad port") from None
