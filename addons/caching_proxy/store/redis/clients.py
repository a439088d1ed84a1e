"""The redis-py clients a store URL names (store/redis_urls.py reads the URL).

Each client has short socket timeouts and no retries of its own (redis-py's Retry with 0
retries), so during an outage a request fails at once and passes through to the origin. The
memory tier's change subscriptions (store/generations.py) are on the store's client, or on a
cluster one plain connection per primary (`Clients.change_nodes`, `Clients.pubsub`).

The asyncio clients' TLS connections share one SSLContext per settings, built when `Clients`
is made (`_share_tls`). redis-py is imported only when `Clients` is made.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from typing import Any

from caching_proxy.store.redis.urls import StoreAddress


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
        self._prepare_tls()

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
            client = lib.Redis.from_url(a.url, **self._options(lib, auth=False))
        elif a.kind == "cluster":
            # retry: none on errors; MOVED and ASK are still followed (not retries to redis-py).
            client = lib.cluster.RedisCluster(
                startup_nodes=[lib.cluster.ClusterNode(h, p) for h, p in a.nodes],
                **self._options(lib))
        else:
            # The sentinels: the URL's TLS too, and their own AUTH (?sentinel_username=,
            # ?sentinel_password=), never the data nodes' user and password.
            sentinel_options = self._options(lib, auth=False, health=0)
            if a.sentinel_password is not None:
                sentinel_options.update(username=a.sentinel_username,
                                        password=a.sentinel_password)
            sentinels = lib.sentinel.Sentinel(list(a.nodes), sentinel_kwargs=sentinel_options)
            client = sentinels.master_for(a.service, db=a.db, **self._options(lib))
        if asynchronous and a.over_tls:
            try:
                _share_tls(client)
            except AttributeError:  # another redis-py's internals: its own contexts, slower
                logging.getLogger(__name__).warning(
                    "redis-py %s: TLS connections not on a shared SSL context",
                    getattr(redis, "__version__", "?"))
        return client

    def _prepare_tls(self) -> None:
        """For a TLS address, the SSLContext its asyncio connections share (`_share_tls`), built
        now, when the store is opened, rather than on the event loop within a request's store
        timeout. What fails here (a file that cannot be read) is left to the first connection,
        which redis-py reports as a ConnectionError: the store is unavailable, the proxy runs."""
        a = self.address
        if not a.over_tls:
            return
        from redis.asyncio.connection import SSLConnection, parse_url

        with contextlib.suppress(OSError, ValueError):  # ssl.SSLError is an OSError
            # A rediss:// URL's TLS options are in its query, as redis-py's from_url reads them.
            settings: dict[str, Any] = dict(a.tls_options) if a.tls else {
                k: v for k, v in parse_url(a.url).items() if k.startswith("ssl_")}
            _shared_tls_context(SSLConnection(**settings).ssl_context).get()

    def _options(self, lib: Any = None, auth: bool = True, health: int = 30) -> dict[str, Any]:
        """A connection's short timeouts and no retries (`lib`'s Retry with 0 retries: redis or
        redis.asyncio); `auth`: the URL's user and password (a plain URL's are in the URL); a
        rediss+ URL's TLS (redis-py's `ssl` and `ssl_*` parameters: a plain URL's TLS is in its
        scheme and query, which from_url reads)."""
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
        options.update(self.address.tls_kwargs())
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

    async def close_async(self) -> None:
        """The asyncio client's connections closed, if it was made on the running loop (one
        made on another loop cannot be awaited here: it is dropped, as `close` does)."""
        import asyncio

        made, self._async = self._async, None
        if made is not None and made[0] is asyncio.get_running_loop():
            await made[1].aclose()


# redis-py's asyncio SSLConnection builds an SSLContext of its own for each connection, and
# ssl.create_default_context() loads the system's CA store each time (0.1 s measured here), on
# the event loop: a cluster's first call opens two or three connections, which put it past
# --store-timeout, and every new pooled connection stalls every request meanwhile. So the
# asyncio TLS connections of the same settings share one RedisSSLContext (redis-py's holder of
# a lazily built SSLContext), keyed by its settings and by the files' modification times: a
# renewed certificate is read by the next connection made. (The sync clients, the CLI's and the
# change subscriptions' threads, keep redis-py's own: they do not run on the event loop.)
# tests/unit/test_redis_addressing.py checks the redis-py attributes this relies on.
_TLS_CONTEXTS: dict[tuple[object, ...], Any] = {}
_TLS_FILES = ("keyfile", "certfile", "ca_certs")


def _shared_tls_context(holder: Any) -> Any:
    """The RedisSSLContext for `holder`'s settings and files: the first one seen for them (so
    its SSLContext is built once, by whichever connection needs it first)."""
    settings = tuple(getattr(holder, name) for name in holder.__slots__ if name != "context")
    files = tuple(_modified(getattr(holder, name)) for name in _TLS_FILES)
    return _TLS_CONTEXTS.setdefault((*settings, *files), holder)


def _modified(path: str | None) -> int | None:
    try:
        return os.stat(path).st_mtime_ns if path else None
    except OSError:
        return None


@functools.cache
def _sharing(connection_class: Any) -> Any:
    """`connection_class` (redis-py's asyncio SSLConnection or its Sentinel-managed one), its
    connections on the shared SSLContext of their settings."""
    def __init__(self: Any, **kwargs: Any) -> None:
        connection_class.__init__(self, **kwargs)
        self.ssl_context = _shared_tls_context(self.ssl_context)

    return type(f"{connection_class.__name__}OnSharedContext", (connection_class,),
                {"__init__": __init__})


def _share_tls(client: Any) -> None:
    """Every TLS connection redis-py's asyncio `client` makes on a shared SSLContext: those of
    its pool (a Sentinel client's: also each sentinel's), or a cluster client's nodes (the
    startup ones, and those it discovers, made from its connection_kwargs)."""
    from redis.asyncio.connection import SSLConnection

    def shared(connection_class: Any) -> Any:
        return _sharing(connection_class) if issubclass(connection_class, SSLConnection) \
            else connection_class

    if hasattr(client, "nodes_manager"):
        client.connection_kwargs["connection_class"] = shared(
            client.connection_kwargs["connection_class"])
        for node in client.nodes_manager.startup_nodes.values():
            node.connection_class = shared(node.connection_class)
        return
    pools = [client.connection_pool]
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    if manager is not None:
        pools += [sentinel.connection_pool for sentinel in manager.sentinels]
    for pool in pools:
        pool.connection_class = shared(pool.connection_class)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
