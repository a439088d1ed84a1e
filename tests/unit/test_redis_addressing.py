"""Redis store URLs (one server, Cluster, Sentinel) and the key naming that keeps each owner's
keys in one Cluster slot; in process, no server (one that nobody answers is unavailable)."""

from __future__ import annotations

import argparse
import os
import ssl
from pathlib import Path
from typing import Any

import pytest
from redis.crc import key_slot

from caching_proxy.cache.refresh import REFRESH_LOCK
from caching_proxy.cli.option_values import store_url
from caching_proxy.store.backend import SEP
from caching_proxy.store.base import variant_key
from caching_proxy.store.layout import tag_group
from caching_proxy.store.redis.clients import Clients
from caching_proxy.store.redis.keys import (
    COUNTERS,
    GROUP,
    LOCK,
    USES,
    VALUE,
    redis_key,
    split_key,
)
from caching_proxy.store.redis.store import RedisBackend, StoreUnavailable
from caching_proxy.store.redis.urls import StoreAddress, parse_store_url, redact_store_url
from support.certs import make_certs
from support.origin import free_port
from support.proxy import cli


@pytest.mark.parametrize(("url", "expected"), [
    ("redis://127.0.0.1:6379/0", StoreAddress("redis://127.0.0.1:6379/0", "redis")),
    ("unix:///run/redis.sock?db=1", StoreAddress("unix:///run/redis.sock?db=1", "redis")),
    ("redis+cluster://10.0.0.1:7000,10.0.0.2,[::1]:7002",
     StoreAddress("redis+cluster://10.0.0.1:7000,10.0.0.2,[::1]:7002", "cluster",
                  (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002)))),
    ("redis+cluster://:s%40cret@h:7000/",
     StoreAddress("redis+cluster://:s%40cret@h:7000/", "cluster", (("h", 7000),),
                  password="s@cret")),
    ("redis+sentinel://s1:26380,s2/cache",
     StoreAddress("redis+sentinel://s1:26380,s2/cache", "sentinel",
                  (("s1", 26380), ("s2", 26379)), "cache", 0)),
    ("redis+sentinel://u:p@s1/cache/3",
     StoreAddress("redis+sentinel://u:p@s1/cache/3", "sentinel", (("s1", 26379),), "cache", 3,
                  "u", "p")),
    ("rediss://u:p@h:6380/0?ssl_ca_certs=/ca.pem&ssl_cert_reqs=required&db=0",
     StoreAddress("rediss://u:p@h:6380/0?ssl_ca_certs=/ca.pem&ssl_cert_reqs=required&db=0",
                  "redis")),
    ("rediss+cluster://u:p%3Aw@h1,h2:7001?ssl_ca_certs=/ca.pem&ssl_cert_reqs=Optional"
     "&ssl_check_hostname=false&ssl_certfile=/c.pem&ssl_keyfile=/k.pem",
     StoreAddress("rediss+cluster://u:p%3Aw@h1,h2:7001?ssl_ca_certs=/ca.pem&ssl_cert_reqs=Optional"
                  "&ssl_check_hostname=false&ssl_certfile=/c.pem&ssl_keyfile=/k.pem", "cluster",
                  (("h1", 6379), ("h2", 7001)), username="u", password="p:w", tls=True,
                  tls_options=(("ssl_ca_certs", "/ca.pem"), ("ssl_cert_reqs", "optional"),
                               ("ssl_check_hostname", False), ("ssl_certfile", "/c.pem"),
                               ("ssl_keyfile", "/k.pem")))),
    ("rediss+cluster://h", StoreAddress("rediss+cluster://h", "cluster", (("h", 6379),),
                                        tls=True)),
    ("rediss+sentinel://:p@s1,s2:26380/cache/2?sentinel_username=su"
     "&sentinel_password=s%26p&ssl_ca_certs=/ca.pem",
     StoreAddress("rediss+sentinel://:p@s1,s2:26380/cache/2?sentinel_username=su"
                  "&sentinel_password=s%26p&ssl_ca_certs=/ca.pem", "sentinel",
                  (("s1", 26379), ("s2", 26380)), "cache", 2, None, "p", True,
                  (("ssl_ca_certs", "/ca.pem"),), "su", "s&p")),
    ("redis+sentinel://s/cache?sentinel_password=sp",
     StoreAddress("redis+sentinel://s/cache?sentinel_password=sp", "sentinel",
                  (("s", 26379),), "cache", sentinel_password="sp")),
])
def test_store_urls(url: str, expected: StoreAddress) -> None:
    assert parse_store_url(url) == expected
    assert store_url(url) == url


@pytest.mark.parametrize(("url", "message"), [
    ("memcached://x", "must be a Redis URL"),
    ("redis://127.0.0.1:99999/0", "bad port"),
    ("redis+cluster://", "no host"),
    ("redis+cluster://h:1,,h:2", "no host"),
    ("redis+cluster://h:x", "bad port"),
    ("redis+cluster://h:7000/0", "database 0 only"),
    ("redis+cluster://h:7000?timeout=1", "unknown option 'timeout'"),
    ("redis+cluster://h:7000#x", "no #fragment"),
    ("rediss+cluster://h:7000?ssl_ca_certs=/ca.pem&bogus=1", "unknown option 'bogus'"),
    ("rediss+cluster://h?sentinel_password=x", "unknown option 'sentinel_password'"),
    ("redis+cluster://h?ssl_ca_certs=/ca.pem", "option 'ssl_ca_certs' is for TLS"),
    ("redis+sentinel://s/cache?ssl_certfile=/c.pem", "option 'ssl_certfile' is for TLS"),
    ("rediss+cluster://h?ssl_cert_reqs=maybe", "bad ssl_cert_reqs 'maybe'"),
    ("rediss+cluster://h?ssl_check_hostname=perhaps", "bad ssl_check_hostname 'perhaps'"),
    ("rediss+cluster://h?ssl_ca_certs=", "option 'ssl_ca_certs' has no value"),
    ("rediss+cluster://h?ssl_ca_certs=/a&ssl_ca_certs=/b", "given twice"),
    ("rediss+cluster://h?ssl_ca_certs", "bad ?options"),
    ("rediss+sentinel://s/cache?sentinel_username=u", "needs 'sentinel_password'"),
    ("rediss+sentinel://s?ssl_ca_certs=/ca.pem", "no SERVICE"),
    ("redis://h:6379/0?socket_timeout=5", "unknown option 'socket_timeout'"),
    ("redis://h:6379/0?ssl_ca_certs=/ca.pem", "option 'ssl_ca_certs' is for TLS"),
    ("rediss://h:6379/0?ssl_cert_reqs=sometimes", "bad ssl_cert_reqs"),
    ("redis+sentinel://s:26379", "no SERVICE"),
    ("redis+sentinel://s:26379/", "no SERVICE"),
    ("redis+sentinel://s:26379/cache/x", "bad DB 'x'"),
    ("redis+sentinel://s:26379/cache/0/more", "no SERVICE"),
    ("redis+sentinel://s:70000/cache", "bad port"),
])
def test_bad_store_urls_say_why_in_one_line(url: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as caught:
        store_url(url)
    text = str(caught.value)
    shown = redact_store_url(url)  # a password in the URL as ***
    assert text.startswith(f"invalid store {shown!r}: ") and message in text and "\n" not in text


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://u:p@h:6379/0", "redis://u:***@h:6379/0"),
    ("redis://:p@h", "redis://:***@h"),
    ("redis://u@h/0", "redis://u@h/0"),
    ("redis://h:6379/0", "redis://h:6379/0"),
    ("rediss+cluster://u:p%40x@h1:7000,h2:7001?ssl_ca_certs=/ca.pem",
     "rediss+cluster://u:***@h1:7000,h2:7001?ssl_ca_certs=/ca.pem"),
    ("redis+cluster://h1:7000,h2:7001", "redis+cluster://h1:7000,h2:7001"),
    # Up to the next option only: what follows is shown.
    ("rediss+sentinel://u:p@s:26379/cache/0?ssl_ca_certs=/ca&sentinel_password=sp"
     "&sentinel_username=su",
     "rediss+sentinel://u:***@s:26379/cache/0?ssl_ca_certs=/ca&sentinel_password=***"
     "&sentinel_username=su"),
    ("unix:///run/redis.sock?db=1&password=p", "unix:///run/redis.sock?db=1&password=***"),
    # URLs parse_store_url rejects: the error that shows them shows them so.
    ("redis+cluster://u:p/a?b@c@h:1", "redis+cluster://u:***@h:1"),
    ("redis://u:p@h?ssl_password=k", "redis://u:***@h?ssl_password=***"),
    # No scheme: a diskcache folder, shown as it is whatever its name.
    ("/var/cache/caching-proxy", "/var/cache/caching-proxy"),
    ("/srv/a:b@c/cache;password=x", "/srv/a:b@c/cache;password=x"),
])
def test_passwords_are_redacted(url: str, shown: str) -> None:
    assert redact_store_url(url) == shown


def test_a_bad_url_is_shown_without_its_passwords() -> None:
    url = "rediss+sentinel://u:pw1@s/cache?sentinel_password=pw2&bogus=1"
    with pytest.raises(argparse.ArgumentTypeError) as caught:
        store_url(url)
    assert str(caught.value) == (
        "invalid store 'rediss+sentinel://u:***@s/cache?sentinel_password=***&bogus=1': "
        "unknown option 'bogus': one of ssl_ca_certs, ssl_certfile, ssl_keyfile, "
        "ssl_cert_reqs, ssl_check_hostname, sentinel_username, sentinel_password")


def test_the_address_repr_shows_no_password() -> None:
    address = parse_store_url("rediss+sentinel://u:pw1@s/cache?sentinel_password=pw2")
    assert "pw1" not in repr(address) and "pw2" not in repr(address)


def test_unknown_options_stop_the_proxy_with_one_line() -> None:
    for url, message in (
        ("rediss+cluster://127.0.0.1:7000?ssl_ca_certs=/ca.pem&tls=1", "unknown option 'tls'"),
        ("rediss+sentinel://127.0.0.1/cache?bogus=1", "unknown option 'bogus'"),
        ("redis://127.0.0.1:6379/0?retry_on_timeout=true", "unknown option 'retry_on_timeout'"),
    ):
        done = cli("--store", url, "--origin", "http://127.0.0.1:9")
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1


TLS = "ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem&ssl_cert_reqs=optional" \
      "&ssl_check_hostname=false"
TLS_KWARGS = {"ssl_ca_certs": "/ca.pem", "ssl_certfile": "/c.pem", "ssl_keyfile": "/k.pem",
              "ssl_cert_reqs": "optional", "ssl_check_hostname": False}


@pytest.mark.parametrize("asynchronous", [False, True])
def test_sentinel_tls_and_auth_reach_redis_py(asynchronous: bool) -> None:
    """The sentinels get the TLS options and their own password; the master's pool the TLS
    options (redis-py's SSL connection class) and the data nodes' user and password."""
    clients = Clients(parse_store_url(
        f"rediss+sentinel://u:p@127.0.0.1:{free_port()}/cache/1?{TLS}&sentinel_password=sp"), 0.2)
    master = clients._make(asynchronous=asynchronous)
    pool = master.connection_pool
    assert "SSL" in pool.connection_class.__name__
    assert {k: pool.connection_kwargs[k] for k in TLS_KWARGS} == TLS_KWARGS
    assert (pool.connection_kwargs["username"], pool.connection_kwargs["password"]) == ("u", "p")
    assert pool.connection_kwargs["db"] == 1
    sentinel = pool.sentinel_manager.sentinels[0].connection_pool
    assert "SSL" in sentinel.connection_class.__name__
    assert {k: sentinel.connection_kwargs[k] for k in TLS_KWARGS} == TLS_KWARGS
    assert sentinel.connection_kwargs["password"] == "sp"
    assert sentinel.connection_kwargs.get("username") is None


def test_a_plain_sentinel_url_has_no_tls() -> None:
    clients = Clients(parse_store_url(f"redis+sentinel://127.0.0.1:{free_port()}/cache"), 0.2)
    pool = clients._make().connection_pool
    assert "SSL" not in pool.connection_class.__name__
    sentinel = pool.sentinel_manager.sentinels[0].connection_pool
    assert "SSL" not in sentinel.connection_class.__name__
    assert sentinel.connection_kwargs.get("password") is None


def test_cluster_tls_reaches_both_clients() -> None:
    import redis

    clients = Clients(parse_store_url(f"rediss+cluster://u:p@127.0.0.1:{free_port()}?{TLS}"), 0.2)
    options = clients._options(redis)
    assert {k: options[k] for k in (*TLS_KWARGS, "ssl", "username", "password")} == {
        **TLS_KWARGS, "ssl": True, "username": "u", "password": "p"}
    # The asyncio cluster client connects only when first used: its nodes' connection options.
    cluster = clients._make(asynchronous=True)
    kwargs = cluster.nodes_manager.connection_kwargs
    assert "SSL" in kwargs["connection_class"].__name__
    assert {k: kwargs[k] for k in TLS_KWARGS} == TLS_KWARGS
    assert (kwargs["username"], kwargs["password"]) == ("u", "p")
    # The plain connections to each primary (the change subscriptions) are TLS too.
    node = clients._node("127.0.0.1", 1)
    assert "SSL" in node.connection_pool.connection_class.__name__


@pytest.mark.parametrize("kind", ["redis", "cluster", "sentinel"])
def test_asyncio_tls_connections_share_one_context_built_at_start(
    kind: str, tmp_path: Path
) -> None:
    """Every TLS connection an asyncio client makes (its pool's, a Sentinel's sentinels', a
    cluster's startup and discovered nodes') has the one SSLContext `Clients` built when made,
    not one of its own built on the event loop at connect time; a changed file gets a new one."""
    certs = make_certs(tmp_path)
    port = free_port()
    tls = f"ssl_ca_certs={certs.ca}&ssl_certfile={certs.cert}&ssl_keyfile={certs.key}"
    url = {"redis": f"rediss://u:p@127.0.0.1:{port}/0?{tls}",
           "cluster": f"rediss+cluster://u:p@127.0.0.1:{port}?{tls}",
           "sentinel": f"rediss+sentinel://u:p@127.0.0.1:{port}/cache?{tls}"}[kind]
    client = Clients(parse_store_url(url), 0.2)._make(asynchronous=True)

    def connections() -> list[Any]:
        """Two connections of each kind the client would open (none connects)."""
        if kind == "cluster":
            from redis.asyncio.cluster import ClusterNode

            startup = next(iter(client.nodes_manager.startup_nodes.values()))
            found = ClusterNode("127.0.0.1", port, **client.connection_kwargs)  # as discovered
            return [node.connection_class(**node.connection_kwargs)
                    for node in (startup, startup, found)]
        pools = [client.connection_pool]
        if kind == "sentinel":
            pools.append(client.connection_pool.sentinel_manager.sentinels[0].connection_pool)
        return [pool.make_connection() for pool in pools for _ in range(2)]

    made = connections()
    shared = made[0].ssl_context
    assert all(c.ssl_context is shared for c in made)
    assert isinstance(shared.context, ssl.SSLContext)  # built already, before any connect
    assert shared.context.verify_mode == ssl.CERT_REQUIRED and shared.context.check_hostname
    later = certs.ca.stat().st_mtime_ns + 1_000_000_000
    os.utime(certs.ca, ns=(later, later))  # a renewed CA file
    renewed = connections()
    assert all(c.ssl_context is renewed[0].ssl_context is not shared for c in renewed)


def test_plain_connections_stay_plain() -> None:
    client = Clients(parse_store_url(f"redis://127.0.0.1:{free_port()}/0"), 0.2)._make(
        asynchronous=True)
    assert not hasattr(client.connection_pool.make_connection(), "ssl_context")


def slot_of(name: str, kind: str = VALUE) -> int:
    return key_slot(redis_key(name, kind).encode())


def test_every_key_of_one_url_shares_a_slot() -> None:
    url = "http://example.com:80/a{b}c?d"  # braces: the hash tag is not the URL itself
    variants = [variant_key(url, (f"agent/{i}",), "g1") for i in range(20)]
    slots = {slot_of(url), slot_of(url, GROUP), slot_of(url, LOCK), slot_of(url, USES),
             slot_of(url + REFRESH_LOCK, LOCK), *map(slot_of, variants)}
    assert len(slots) == 1


def test_a_tags_markers_share_its_groups_slot() -> None:
    group = tag_group("product-42")
    markers = [group + SEP + f"http://example.com:80/p{i}" for i in range(20)]
    assert len({slot_of(group, GROUP), *map(slot_of, markers)}) == 1


def test_owners_spread_over_slots() -> None:
    slots = {slot_of(f"http://example.com:80/p{i}") for i in range(1000)}
    assert len(slots) > 900


def test_names_come_back_from_keys() -> None:
    for name, kind in [("http://h:80/a", VALUE), ("http://h:80/a", GROUP), ("tag:t", GROUP),
                       ("http://h:80/a" + REFRESH_LOCK, LOCK), ("http://h:80/a", USES),
                       (variant_key("http://h:80/é", ("x",), "g"), VALUE)]:
        assert split_key(redis_key(name, kind).encode("utf-8", "surrogateescape")) == (kind, name)
    assert COUNTERS == "caching-proxy:counters"  # kept from the naming before: counters survive


@pytest.mark.parametrize("form", ["redis+cluster://127.0.0.1:{port}",
                                  "redis+sentinel://127.0.0.1:{port}/cache/0"])
def test_a_store_nobody_answers_is_unavailable_not_an_error(form: str) -> None:
    # Nothing listens: the cluster client cannot even read its slot map (made again next time).
    backend = RedisBackend(form.format(port=free_port()), timeout=0.2)
    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            backend.get("http://h:80/a")
        backend._down_until = 0.0  # past the back-off: the next call tries again
    backend.close()
