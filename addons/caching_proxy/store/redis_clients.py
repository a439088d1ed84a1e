"""The store URL of a Redis store, and the redis-py client it names.

- `redis://host:6379/0`, `rediss://...`, `unix:///path?db=0`: one server (redis-py's from_url).
- `redis+cluster://host:port[,host:port...]`: a Redis Cluster, found from any of these nodes
  (redis-py's RedisCluster: it follows MOVED and ASK, and reloads the slot map after a node
  fails, so requests reach a promoted replica once the cluster has failed over). A cluster has
  database 0 only: no /DB.
- `redis+sentinel://host:port[,host:port...]/SERVICE[/DB]`: the master Sentinel names for
  SERVICE (redis-py's Sentinel.master_for: each new connection asks the sentinels where the
  master is, so after a failover connections go to the promoted replica).
`user:password@` before the hosts is passed to the data nodes (not to the sentinels). Ports
default to 6379 (26379 for sentinels).

Each client has short socket timeouts and no retries of its own (redis-py's Retry with 0
retries), so during an outage a request fails at once and passes through to the origin. The
memory tier's change subscriptions (store/generations.py) are on the store's client, or on a
cluster one plain connection per primary (`Clients.change_nodes`, `Clients.pubsub`).

Only what parses URLs is imported here at module level: option checks use it without redis-py.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

PLAIN_SCHEMES = ("redis://", "rediss://", "unix://")
CLUSTER, SENTINEL = "redis+cluster://", "redis+sentinel://"
SCHEMES = (*PLAIN_SCHEMES, CLUSTER, SENTINEL)
CLUSTER_FORM = "redis+cluster://host:6379[,host:port...]"
SENTINEL_FORM = "redis+sentinel://host:26379[,host:port...]/SERVICE[/DB]"


@dataclass(frozen=True)
class StoreAddress:
    url: str
    kind: str  # "redis" (one server, redis-py reads the URL itself), "cluster" or "sentinel"
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse_store_url(text: str) -> StoreAddress:
    """The address in a store URL; ValueError with a one-line reason for a bad one."""
    if text.startswith(PLAIN_SCHEMES):
        parts = urlsplit(text)
        _port(parts)
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("no host")
        return StoreAddress(text, "redis")
    if not text.startswith((CLUSTER, SENTINEL)):
        raise ValueError("must be a Redis URL such as redis://127.0.0.1:6379/0, "
                         f"{CLUSTER_FORM} or {SENTINEL_FORM}")
    parts = urlsplit(text)
    if parts.query or parts.fragment:
        raise ValueError("no ?options or #fragment in a cluster or sentinel URL")
    cluster = text.startswith(CLUSTER)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    nodes = tuple(_node(item, 6379 if cluster else 26379) for item in hosts.split(","))
    path = [piece for piece in parts.path.split("/") if piece]
    user, secret = unquote(username) or None, unquote(password) or None
    if cluster:
        if path:
            raise ValueError(f"a cluster has database 0 only, so no /DB: use {CLUSTER_FORM}")
        return StoreAddress(text, "cluster", nodes, username=user, password=secret)
    if not path or len(path) > 2:
        raise ValueError(f"no SERVICE: use {SENTINEL_FORM}")
    db = path[1] if len(path) == 2 else "0"
    if not db.isdigit():
        raise ValueError(f"bad DB {db!r}: a whole number")
    return StoreAddress(text, "sentinel", nodes, unquote(path[0]), int(db), user, secret)


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


class Clients:
    """The client of one store address, made on first use (a cluster client reads the slot map
    when it is made, and a proxy must start while the cluster is down), and made afresh after
    a failure of the cluster client's own (`failed`): redis-py drops each node it could not
    reach from the nodes it rediscovers the cluster from, so once every node has been down at
    once only a new client, from the URL's nodes, finds the cluster again."""

    def __init__(self, address: StoreAddress, timeout: float) -> None:
        import redis

        self.address = address
        self.timeout = timeout
        # Any: redis-py's annotations mix its sync and async return types.
        self._client: Any = None
        self._lock = threading.Lock()
        self._primaries: list[tuple[str, int]] = []  # as change_nodes() last read them
        self._async: tuple[object, Any] | None = None  # (its event loop, the asyncio client)
        self.errors: tuple[type[Exception], ...] = (
            redis.RedisError, redis.exceptions.RedisClusterException)

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._make()
            return self._client

    def _make(self, asynchronous: bool = False) -> Any:
        """The client (`asynchronous`: redis-py's asyncio one, the same classes under
        `redis.asyncio`), with the same options either way."""
        import redis
        import redis.asyncio

        lib: Any = redis.asyncio if asynchronous else redis
        a = self.address
        if a.kind == "redis":
            return lib.Redis.from_url(a.url, **self._options(lib, auth=False))
        if a.kind == "cluster":
            # retry: none on errors; MOVED and ASK are still followed (not retries to redis-py).
            return lib.cluster.RedisCluster(
                startup_nodes=[lib.cluster.ClusterNode(h, p) for h, p in a.nodes],
                **self._options(lib))
        sentinels = lib.sentinel.Sentinel(
            list(a.nodes), sentinel_kwargs=self._options(lib, auth=False, health=0))
        return sentinels.master_for(a.service, db=a.db, **self._options(lib))

    def _options(self, lib: Any = None, auth: bool = True, health: int = 30) -> dict[str, Any]:
        """A connection's short timeouts and no retries (`lib`'s Retry with 0 retries: redis or
        redis.asyncio); `auth`: the URL's user and password (a plain URL's are in the URL)."""
        import redis  # its package and redis.asyncio load their retry, cluster, sentinel
        from redis.backoff import NoBackoff

        retry = (lib or redis).retry.Retry
        options: dict[str, Any] = {"socket_timeout": self.timeout,
                                   "socket_connect_timeout": self.timeout,
                                   "retry": retry(NoBackoff(), 0)}
        if health:
            options["health_check_interval"] = health
        if auth:
            options.update(username=self.address.username, password=self.address.password)
        return options

    def failed(self, error: Exception) -> None:
        """After `error` from a call: a cluster client that failed on its own bookkeeping (no
        reachable node, no agreement on the slot map) is made anew on the next call."""
        import redis

        if isinstance(error, redis.exceptions.RedisClusterException):
            with self._lock:
                old, self._client = self._client, None
            if old is not None:
                old.close()

    def change_nodes(self) -> list[str]:
        """Where to hear the change channel: on a cluster, every primary as "host:port", from
        CLUSTER SLOTS on the first node that answers (the primaries last seen, then the URL's
        nodes; each on a connection of its own, so this is a fresh view, never the slot map
        the store's client cached); else [""], the store's own server or Sentinel's master."""
        if self.address.kind != "cluster":
            return [""]
        error: Exception = ConnectionError("no node of the cluster answered")
        for host, port in dict.fromkeys([*self._primaries, *self.address.nodes]):
            try:
                with self._node(host, port) as node:
                    slots = node.execute_command("CLUSTER SLOTS")
            except self.errors as e:
                error = e
                continue
            # An empty host is the node asked (a one-node cluster reports no address).
            primaries = sorted({(_text(entry[2][0]) or host, int(entry[2][1]))
                                for entry in slots})
            if primaries:
                self._primaries = primaries
                return [f"{h}:{p}" for h, p in primaries]
        raise error

    def pubsub(self, node: str = "") -> Any:
        """A new PubSub for the change channel on `node`, one of `change_nodes()`: a cluster
        primary on a plain connection to it alone; "" on the store's own client."""
        if not node:
            return self.client().pubsub()
        host, _, port = node.rpartition(":")
        return self._node(host, int(port)).pubsub()

    def _node(self, host: str, port: int) -> Any:
        import redis

        return redis.Redis(host=host, port=port, **self._options())

    def async_client(self) -> Any:
        """redis-py's asyncio client for the same address, for calls made on the event loop
        (lookups, response writes and the store locks); one per event loop, since such a
        client belongs to the loop it was made in, and made again after its own bookkeeping
        failed (see `failed`)."""
        import asyncio

        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            self._async = (loop, self._make(asynchronous=True))
        return self._async[1]

    def async_failed(self, error: Exception) -> None:
        """`failed`, for the asyncio client."""
        import redis

        if isinstance(error, redis.exceptions.RedisClusterException):
            self._async = None  # its connections go with it (closed when collected)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
        self._async = None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
