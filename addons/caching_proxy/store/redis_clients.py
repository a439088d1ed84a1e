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
retries), so during an outage a request fails at once and passes through to the origin.

Only what parses URLs is imported here at module level: option checks use it without redis-py.
"""

from __future__ import annotations

import random
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
        self._next_node = random.randrange(1 << 16)  # spreads proxies' subscriptions over nodes
        self.errors: tuple[type[Exception], ...] = (
            redis.RedisError, redis.exceptions.RedisClusterException)

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._make()
            return self._client

    def _make(self) -> Any:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        a = self.address
        socket = {"socket_timeout": self.timeout, "socket_connect_timeout": self.timeout}
        common: dict[str, Any] = {**socket, "health_check_interval": 30}
        if a.kind == "redis":
            return redis.Redis.from_url(a.url, **common, retry=Retry(NoBackoff(), 0))
        common.update(username=a.username, password=a.password)
        if a.kind == "cluster":
            from redis.cluster import ClusterNode, RedisCluster

            # retry: none on errors; MOVED and ASK are still followed (not retries to redis-py).
            return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in a.nodes],
                                retry=Retry(NoBackoff(), 0), **common)
        from redis.sentinel import Sentinel

        sentinels = Sentinel(list(a.nodes),
                             sentinel_kwargs={**socket, "retry": Retry(NoBackoff(), 0)})
        return sentinels.master_for(a.service, db=a.db, retry=Retry(NoBackoff(), 0), **common)

    def failed(self, error: Exception) -> None:
        """After `error` from a call: a cluster client that failed on its own bookkeeping (no
        reachable node, no agreement on the slot map) is made anew on the next call."""
        import redis

        if isinstance(error, redis.exceptions.RedisClusterException):
            with self._lock:
                old, self._client = self._client, None
            if old is not None:
                old.close()

    def pubsub(self) -> Any:
        """A new PubSub for the change channel. On a cluster, where every node delivers every
        message, each call takes the next primary known, so a subscriber whose node died
        resubscribes on another one (the dead one stays listed until the slot map is read
        again)."""
        client = self.client()
        if self.address.kind != "cluster":
            return client.pubsub()
        primaries = client.get_primaries()
        self._next_node += 1
        return client.pubsub(node=primaries[self._next_node % len(primaries)])

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
