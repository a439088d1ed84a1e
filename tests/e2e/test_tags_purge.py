"""Purge like a CDN, end to end: a real proxy, a real counting origin, a real store.

Tags from Surrogate-Key and Cache-Tag (and a field named with --tag-header), removed from what
clients receive unless --keep-tag-header; purged with `--purge-tag`, with a PURGE carrying
Surrogate-Key, on --workers 2 and across two proxies on one Redis; soft purges that revalidate
(a 304 without the body) and still answer while the origin is down."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.client import fetch
from support.origin import Origin, Reply, Seen
from support.proxy import Proxy, cli
from support.redis_server import RedisServer

FRESH = ("Cache-Control", "max-age=600")


def product(origin: Origin, path: str, *tag_fields: tuple[str, str], body: bytes = b"") -> None:
    origin.route(path, 200, [FRESH, *tag_fields], body or path.encode())


def test_tags_are_stored_removed_from_clients_and_purged_by_cli(
        origin: Origin, proxy: Proxy) -> None:
    product(origin, "/p/42", ("Surrogate-Key", "p42 products"))
    product(origin, "/p/42.json", ("Cache-Tag", "p42,json"))
    product(origin, "/list", ("Surrogate-Key", "products"), ("Cache-Tag", "listing"))
    product(origin, "/p/43", ("Surrogate-Key", "p43 products"))
    for path in ("/p/42", "/p/42.json", "/list", "/p/43"):
        first = fetch(proxy.url + path)
        assert first.x_cache == "MISS"
        assert first.header("Surrogate-Key") is None and first.header("Cache-Tag") is None
        hit = fetch(proxy.url + path)
        assert hit.x_cache == "HIT" and hit.body == path.encode()
        assert hit.header("Surrogate-Key") is None and hit.header("Cache-Tag") is None

    done = cli("--cache-dir", str(proxy.cache_dir), "--purge-tag", "p42")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "caching-proxy: purged 2 responses tagged p42"
    assert fetch(proxy.url + "/p/42").x_cache == "MISS"
    assert fetch(proxy.url + "/p/42.json").x_cache == "MISS"
    assert fetch(proxy.url + "/list").x_cache == "HIT"
    assert fetch(proxy.url + "/p/43").x_cache == "HIT"

    done = cli("--cache-dir", str(proxy.cache_dir), "--purge-tag", "listing", "p43", "--json")
    assert json.loads(done.stdout)["purged_tags"] == {"tags": ["listing", "p43"], "purged": 2}
    assert fetch(proxy.url + "/list").x_cache == "MISS"
    assert fetch(proxy.url + "/p/43").x_cache == "MISS"
    assert [origin.count(p) for p in ("/p/42", "/p/42.json", "/list", "/p/43")] == [2, 2, 2, 2]
    one = cli("--cache-dir", str(proxy.cache_dir), "--purge-tag", "p43")
    assert one.stdout.strip() == "caching-proxy: purged 1 response tagged p43"


def test_purge_method_with_surrogate_key_ignores_the_path(origin: Origin, proxy: Proxy) -> None:
    origin.route("/v", handler=lambda s: Reply(
        200, [FRESH, ("Vary", "Accept"), ("Surrogate-Key", "shared")], b"v"))
    for accept in ("a/b", "c/d"):
        fetch(proxy.url + "/v", headers={"Accept": accept})
    product(origin, "/other", ("Surrogate-Key", "other"))
    fetch(proxy.url + "/other")
    purged = fetch(proxy.url + "/anything", method="PURGE", headers={"Surrogate-Key": "shared"})
    assert purged.status == 200 and json.loads(purged.body) == {"purged": 2, "tags": ["shared"]}
    assert fetch(proxy.url + "/v", headers={"Accept": "a/b"}).x_cache == "MISS"
    assert fetch(proxy.url + "/v", headers={"Accept": "c/d"}).x_cache == "MISS"
    assert fetch(proxy.url + "/other").x_cache == "HIT"
    nothing = fetch(proxy.url + "/", method="PURGE", headers={"Surrogate-Key": "none-such"})
    assert nothing.status == 404
    assert [s.method for s in origin.seen].count("PURGE") == 0


def test_keep_tag_header_and_a_chosen_tag_field(origin: Origin, make_proxy: Any) -> None:
    proxy = make_proxy("--tag-header", "X-Tags", "--keep-tag-header")
    product(origin, "/k", ("X-Tags", "a b"), ("Surrogate-Key", "not-a-tag-here"))
    assert fetch(proxy.url + "/k").header("X-Tags") == "a b"
    hit = fetch(proxy.url + "/k")
    assert hit.x_cache == "HIT" and hit.header("X-Tags") == "a b"
    assert hit.header("Surrogate-Key") == "not-a-tag-here"  # not a tag field: passed on
    miss = fetch(proxy.url + "/", method="PURGE", headers={"Surrogate-Key": "not-a-tag-here"})
    assert miss.status == 404
    assert fetch(proxy.url + "/", method="PURGE", headers={"Surrogate-Key": "b"}).status == 200
    assert fetch(proxy.url + "/k").x_cache == "MISS"


def etagged(version: list[bytes]) -> Any:
    def handler(seen: Seen) -> Reply:
        etag = '"' + version[0].decode() + '"'
        headers = [FRESH, ("ETag", etag), ("Surrogate-Key", "doc")]
        if seen.header("If-None-Match") == etag:
            return Reply(304, headers)
        return Reply(200, headers, b"body " + version[0])
    return handler


def test_soft_purge_revalidates_with_a_304_and_keeps_the_body(
        origin: Origin, proxy: Proxy) -> None:
    version = [b"v1"]
    origin.route("/doc", handler=etagged(version))
    assert fetch(proxy.url + "/doc").x_cache == "MISS"
    soft = fetch(proxy.url + "/", method="PURGE",
                 headers={"Surrogate-Key": "doc", "Fastly-Soft-Purge": "1"})
    assert json.loads(soft.body) == {"purged": 1, "tags": ["doc"], "soft": True}
    again = fetch(proxy.url + "/doc")
    # Revalidated: from the store, confirmed by the origin (X-Cache MISS: the origin was asked).
    assert again.body == b"body v1"
    assert "fwd=stale; fwd-status=304; stored" in (again.header("Cache-Status") or "")
    asked = origin.requests_for("/doc")
    assert len(asked) == 2 and asked[1].header("If-None-Match") == '"v1"'
    assert fetch(proxy.url + "/doc").x_cache == "HIT" and origin.count("/doc") == 2

    version[0] = b"v2"  # the origin changed: a soft purge then fetches the new body
    done = cli("--cache-dir", str(proxy.cache_dir), "--purge", "/doc", "--soft")
    assert done.stdout.strip() == (
        f"caching-proxy: marked stale 1 response for /doc (matched /doc at {origin.url})")
    assert fetch(proxy.url + "/doc").body == b"body v2"


def test_a_soft_purged_response_still_answers_while_the_origin_is_down(
        origin: Origin, make_proxy: Any) -> None:
    proxy = make_proxy("--connect-timeout", "2")
    origin.route("/doc", handler=etagged([b"v1"]))
    fetch(proxy.url + "/doc")
    done = cli("--cache-dir", str(proxy.cache_dir), "--purge-tag", "doc", "--soft")
    assert done.stdout.strip() == "caching-proxy: marked stale 1 response tagged doc"
    origin.stop()
    stale = fetch(proxy.url + "/doc")
    assert stale.status == 200 and stale.body == b"body v1"
    assert stale.x_cache == "HIT" and "detail=stale-on-error" in (
        stale.header("Cache-Status") or "")
    hard = cli("--cache-dir", str(proxy.cache_dir), "--purge-tag", "doc")
    assert hard.stdout.strip() == "caching-proxy: purged 1 response tagged doc"
    assert fetch(proxy.url + "/doc").status in (502, 504)


def test_soft_needs_a_purge(tmp_path: Path) -> None:
    done = cli("--cache-dir", str(tmp_path), "--soft", "--list")
    assert done.returncode == 2 and "--soft goes with" in done.stderr
    bad = cli("--cache-dir", str(tmp_path), "--purge-tag", "a,b")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "invalid tag" in bad.stderr


def test_a_tag_purge_reaches_every_worker(origin: Origin, make_proxy: Any) -> None:
    proxy = make_proxy("--workers", "2")
    for i in range(20):
        product(origin, f"/w/{i}", ("Surrogate-Key", "w"))
    for _ in range(2):
        for i in range(20):
            fetch(proxy.url + f"/w/{i}")
    assert all(origin.count(f"/w/{i}") == 1 for i in range(20))
    purged = fetch(proxy.url + "/", method="PURGE", headers={"Surrogate-Key": "w"})
    assert json.loads(purged.body)["purged"] == 20
    # Over new connections, spread over both workers by the kernel: every one misses once.
    assert all(fetch(proxy.url + f"/w/{i}").x_cache == "MISS" for i in range(20))
    assert all(origin.count(f"/w/{i}") == 2 for i in range(20))


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path / "redis").start()
    yield server.url
    server.stop()


def test_a_tag_purge_on_one_instance_is_seen_by_another_on_redis(
        origin: Origin, make_proxy: Any, tmp_path: Path, redis_url: str) -> None:
    a = make_proxy("--store", redis_url, cache_dir=tmp_path / "a")
    b = make_proxy("--store", redis_url, cache_dir=tmp_path / "b")
    product(origin, "/r", ("Cache-Tag", "r,shared"))
    product(origin, "/s", ("Cache-Tag", "s"))
    assert fetch(a.url + "/r").x_cache == "MISS"
    assert fetch(b.url + "/r").x_cache == "HIT"
    fetch(a.url + "/s")
    purged = fetch(b.url + "/", method="PURGE", headers={"Surrogate-Key": "shared"})
    assert json.loads(purged.body)["purged"] == 1
    assert fetch(a.url + "/r").x_cache == "MISS"
    assert fetch(a.url + "/s").x_cache == "HIT"
    done = cli("--store", redis_url, "--purge-tag", "s")
    assert done.stdout.strip() == "caching-proxy: purged 1 response tagged s"
    assert fetch(b.url + "/s").x_cache == "MISS"
