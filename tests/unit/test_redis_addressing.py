"""Redis store URLs (one server, Cluster, Sentinel) and the key naming that keeps each owner's
keys in one Cluster slot; in process, no server (one that nobody answers is unavailable)."""

from __future__ import annotations

import argparse

import pytest
from redis.crc import key_slot

from caching_proxy.option_values import store_url
from caching_proxy.refresh import REFRESH_LOCK
from caching_proxy.store.backend import SEP
from caching_proxy.store.base import variant_key
from caching_proxy.store.layout import tag_group
from caching_proxy.store.redis_clients import StoreAddress, parse_store_url
from caching_proxy.store.redis_keys import (
    COUNTERS,
    GROUP,
    LOCK,
    USES,
    VALUE,
    redis_key,
    split_key,
)
from caching_proxy.store.redis_store import RedisBackend, StoreUnavailable
from support.origin import free_port


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
    ("redis+cluster://h:7000?timeout=1", "no ?options"),
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
    assert text.startswith(f"invalid store {url!r}: ") and message in text and "\n" not in text


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
