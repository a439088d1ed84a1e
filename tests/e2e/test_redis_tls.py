"""TLS and AUTH for every Redis store kind, against real servers: one redis-server, a Redis
Cluster and a Sentinel, each over TLS only with an ACL user (tests/support/redis_tls.py), and a
proxy started through its CLI that stores and hits through them; a wrong password passes
requests through with one warning; no password is ever printed; the asyncio cluster client's
connections share one SSLContext."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from caching_proxy.store.redis.clients import Clients
from caching_proxy.store.redis.urls import parse_store_url
from support.certs import Certs, make_certs
from support.client import fetch
from support.origin import Origin, free_port
from support.proxy import Proxy, cli
from support.redis_server import STORE_ARGS
from support.redis_tls import (
    ACL_USER,
    PASSWORD,
    SENTINEL_PASSWORD,
    USER,
    TlsCluster,
    TlsRedisServer,
    TlsSentinel,
    require_tls_redis,
    wait_listening,
)

FRESH = [("Cache-Control", "max-age=600")]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    require_tls_redis()
    return make_certs(tmp_path_factory.mktemp("redis-certs"))


@pytest.fixture
def tls_server(certs: Certs, tmp_path: Path) -> Iterator[TlsRedisServer]:
    server = TlsRedisServer(tmp_path / "redis", certs, [*STORE_ARGS, *ACL_USER]).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsCluster]:
    setup = TlsCluster(tmp_path_factory.mktemp("tls-cluster"), certs).start()
    yield setup
    setup.stop()


def cluster_url(cluster: TlsCluster, certs: Certs) -> str:
    return (f"rediss+cluster://{USER}:{PASSWORD}@{cluster.hosts()}"
            f"?ssl_ca_certs={certs.ca}&ssl_cert_reqs=required&ssl_check_hostname=true")


def stores_and_hits(origin: Origin, store: str, tmp_path: Path,
                    listeners: Sequence[TlsRedisServer], path: str = "/tls") -> Proxy:
    """A proxy on `store` stores a response and hits it (the asyncio client: lookups and writes),
    and `--stats` on the same store (the sync client) counts it. The first request is made once
    the proxy's memory tier listens on each of `listeners` (over TLS too): as in
    tests/e2e/test_redis_cluster.py, not while its threads' TLS handshakes share the 2 cores with
    the asyncio client's first call (a cluster's: the slot map and the COMMAND table, 0.15 s
    here, plain or TLS), which --store-timeout (0.25 s) bounds."""
    origin.route(path, 200, FRESH, b"over tls")
    with Proxy(origin.url, tmp_path / "cache", "--store", store) as proxy:
        wait_listening(listeners)
        first = fetch(proxy.url + path)
        assert (first.status, first.x_cache) == (200, "MISS")
        hit = fetch(proxy.url + path)
        assert (hit.x_cache, hit.body) == ("HIT", b"over tls")
        assert origin.count(path) == 1
    done = cli("--store", store, "--stats", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["stats"]["entries"] == 1
    return proxy


def test_one_tls_server_with_an_acl_user(
    origin: Origin, tls_server: TlsRedisServer, certs: Certs, tmp_path: Path
) -> None:
    url = (f"rediss://{USER}:{PASSWORD}@127.0.0.1:{tls_server.port}/0"
           f"?ssl_ca_certs={certs.ca}")
    stores_and_hits(origin, url, tmp_path, [tls_server])


def test_a_wrong_password_passes_requests_through_with_one_warning(
    origin: Origin, tls_server: TlsRedisServer, certs: Certs, tmp_path: Path
) -> None:
    origin.route("/wrong", 200, FRESH, b"body")
    url = f"rediss://{USER}:not-it@127.0.0.1:{tls_server.port}/0?ssl_ca_certs={certs.ca}"
    with Proxy(origin.url, tmp_path / "cache", "--store", url) as proxy:
        for _ in range(3):
            answer = fetch(proxy.url + "/wrong")
            assert (answer.status, answer.body) == (200, b"body")
            assert answer.x_cache != "HIT"
            time.sleep(0.4)  # across the 1 s back-off: Redis is tried again, and fails again
        assert origin.count("/wrong") == 3
        assert proxy.proc is not None and proxy.proc.poll() is None
        warnings = [line for line in proxy.lines if "cache store unavailable" in line]
        assert len(warnings) == 1, proxy.output
        assert "Traceback" not in proxy.output


def test_an_unverified_server_certificate_is_refused(
    origin: Origin, tls_server: TlsRedisServer, tmp_path: Path
) -> None:
    # No ssl_ca_certs: the system's CAs do not know the test CA, so nothing is stored.
    origin.route("/unverified", 200, FRESH, b"body")
    url = f"rediss://{USER}:{PASSWORD}@127.0.0.1:{tls_server.port}/0"
    with Proxy(origin.url, tmp_path / "cache", "--store", url) as proxy:
        assert fetch(proxy.url + "/unverified").status == 200
        assert fetch(proxy.url + "/unverified").x_cache != "HIT"
    assert origin.count("/unverified") == 2


def test_a_tls_cluster_with_an_acl_user(
    origin: Origin, cluster: TlsCluster, certs: Certs, tmp_path: Path
) -> None:
    stores_and_hits(origin, cluster_url(cluster, certs), tmp_path, cluster.nodes)


def test_the_cluster_clients_connections_share_one_tls_context(
    cluster: TlsCluster, certs: Certs
) -> None:
    """The asyncio cluster client's connections, to every node and several to each (commands
    in flight at once), all use one SSLContext: redis-py would build one per connection, on the
    event loop, loading the system's CA store each time (0.1 s here: three of them put the
    first lookup past --store-timeout)."""
    clients = Clients(parse_store_url(cluster_url(cluster, certs)), 2.0)

    async def connections() -> list[Any]:
        client = clients.async_client()
        try:
            await asyncio.gather(*(client.set(f"tls-context-{i}", i) for i in range(60)))
            return [c for node in client.get_nodes() for c in node._connections]
        finally:
            await client.aclose()

    made = asyncio.run(connections())
    clients.close()
    assert {c.port for c in made} == {node.port for node in cluster.nodes}
    assert len(made) > len(cluster.nodes)  # more than one to some node
    assert len({id(c.ssl_context.get()) for c in made}) == 1


def test_a_tls_sentinel_with_its_own_password(
    origin: Origin, certs: Certs, tmp_path: Path
) -> None:
    setup = TlsSentinel(tmp_path / "sentinel", certs).start()
    try:
        url = (f"rediss+sentinel://{USER}:{PASSWORD}@127.0.0.1:{setup.sentinel.port}/cache/0"
               f"?ssl_ca_certs={certs.ca}&sentinel_password={SENTINEL_PASSWORD}")
        stores_and_hits(origin, url, tmp_path, [setup.master])
        assert setup.master.client().dbsize() > 0  # on the master the sentinel named
    finally:
        setup.stop()


def test_no_password_in_the_output(
    origin: Origin, tls_server: TlsRedisServer, certs: Certs, tmp_path: Path
) -> None:
    """Wherever the proxy and the CLI show a store URL (the banner, the outage warning, the
    error of a failed command, --stats and --list, the error about a bad URL), its passwords are
    *** and the rest is shown."""
    origin.route("/quiet", 200, FRESH, b"body")
    host = f"127.0.0.1:{tls_server.port}/0?ssl_ca_certs={certs.ca}"
    wrong, right = f"rediss://{USER}:wrong-{PASSWORD}@{host}", f"rediss://{USER}:{PASSWORD}@{host}"
    shown = f"rediss://{USER}:***@{host}"
    with Proxy(origin.url, tmp_path / "cache", "--store", wrong) as proxy:
        fetch(proxy.url + "/quiet")
        time.sleep(0.2)
    warning = [line for line in proxy.lines if "cache store unavailable" in line]
    assert len(warning) == 1 and f"Redis at {shown}" in warning[0], proxy.output
    assert f"cache {shown}" in proxy.output  # the banner
    failed = cli("--store", wrong, "--stats")
    assert failed.returncode == 1 and f"cache store {shown}: " in failed.stderr, failed.stderr
    stats = cli("--store", right, "--stats", "--json")
    assert stats.returncode == 0 and json.loads(stats.stdout)["store"] == shown, stats.stderr
    listed = cli("--store", right, "--list")
    assert f"no stored responses in {shown}" in listed.stdout, listed.stdout + listed.stderr
    bad = cli("--store", f"{right}&sentinel_password={SENTINEL_PASSWORD}", "--stats")
    assert bad.returncode == 2 and "&sentinel_password=***'" in bad.stderr, bad.stderr
    # The addon's own error (the URL through --set, past the CLI's check): a bad port.
    port = free_port()
    unopened = cli("--port", str(port), "--origin", origin.url, "--cache-dir",
                   str(tmp_path / "unused"), "--set",
                   f"cache_store=rediss://{USER}:{PASSWORD}@127.0.0.1:99999/0")
    assert unopened.returncode == 2, unopened.stdout + unopened.stderr
    assert f"cannot open cache store rediss://{USER}:***@127.0.0.1:99999/0" in unopened.stderr
    printed = [proxy.output,
               *(d.stdout + d.stderr for d in (failed, stats, listed, bad, unopened))]
    assert not [text for text in printed if PASSWORD in text or SENTINEL_PASSWORD in text]
