"""Settings that start but would not serve as meant, said at start in one line on a real proxy:
an origin whose host does not resolve (and its 502s name the host), a largest object above the
store's size; and a response too large for the store is not answered as `stored`."""

from __future__ import annotations

from pathlib import Path

from support.client import fetch
from support.origin import Origin
from support.proxy import Proxy
from support.redis_server import RedisServer

UNRESOLVABLE = "does-not-exist.invalid"  # .invalid never resolves (RFC 6761)
FRESH = [("Cache-Control", "max-age=600")]


def test_an_origin_that_does_not_resolve_is_warned_about_and_named_in_its_502s(
        tmp_path: Path) -> None:
    with Proxy(f"http://{UNRESOLVABLE}:9", tmp_path / "c") as p:
        assert p.logged(f"warning: the origin's host {UNRESOLVABLE} does not resolve", timeout=10)
        warnings = [line for line in p.lines if "does not resolve" in line]
        assert len(warnings) == 1
        r = fetch(p.url + "/x")
        assert r.status == 502
        assert f"resolving the origin's host {UNRESOLVABLE}".encode() in r.body
        assert p.logged(f'cause=origin-dns error="[Errno -2] Name or service not known '
                        f"(resolving the origin's host {UNRESOLVABLE})\"")


def test_a_resolvable_origin_and_default_sizes_start_without_a_warning(
        origin: Origin, tmp_path: Path) -> None:
    origin.route("/a", 200, FRESH, b"a\n")
    with Proxy(origin.url.replace("127.0.0.1", "localhost"), tmp_path / "c") as p:
        assert fetch(p.url + "/a").status == 200
        assert p.logged("GET /a 200")
        assert not [line for line in p.lines if "warning" in line]


def test_a_largest_object_above_the_cache_size_is_warned_about(
        origin: Origin, tmp_path: Path) -> None:
    with Proxy(origin.url, tmp_path / "c", "--cache-size", "1m", "--max-object-size", "4m") as p:
        warnings = [line for line in p.lines if "warning" in line]
        assert len(warnings) == 1
        assert warnings[0].endswith(
            "caching-proxy: warning: --max-object-size 4m is larger than --cache-size 1m: "
            "responses between the two are not stored")


def test_a_response_larger_than_the_disk_store_is_not_said_stored(
        origin: Origin, tmp_path: Path) -> None:
    origin.route("/big", 200, FRESH, b"x" * (2 << 20))
    origin.route("/small", 200, FRESH, b"small\n")
    with Proxy(origin.url, tmp_path / "c", "--cache-size", "1m", "--max-object-size", "4m") as p:
        for _ in range(2):
            r = fetch(p.url + "/big")
            assert (r.status, len(r.body), r.x_cache) == (200, 2 << 20, "MISS")
            assert r.header("Cache-Status") == (
                "caching-proxy; fwd=uri-miss; detail=too-large-for-store")
        assert origin.count("/big") == 2
        # What fits is stored as before.
        assert "; stored" in (fetch(p.url + "/small").header("Cache-Status") or "")
        assert fetch(p.url + "/small").x_cache == "HIT"


def test_a_response_over_redis_max_value_size_is_not_said_stored(
        origin: Origin, tmp_path: Path, store_redis: RedisServer) -> None:
    origin.route("/huge", 200, FRESH, b"y" * (9 << 20))  # over RedisStore's 8 MiB
    with Proxy(origin.url, tmp_path / "c", "--store", store_redis.url,
               "--max-object-size", "16m") as p:
        for _ in range(2):
            r = fetch(p.url + "/huge")
            assert (r.status, r.x_cache) == (200, "MISS")
            assert "detail=too-large-for-store" in (r.header("Cache-Status") or "")
            assert "stored" not in (r.header("Cache-Status") or "")
        assert origin.count("/huge") == 2
