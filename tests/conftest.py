"""Fixtures the tests share: a counting origin and a proxy process in front of it; a store on each
backend (a diskcache folder, a real redis-server)."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from caching_proxy.store import DiskStore, Store
from caching_proxy.store.redis.store import RedisStore
from support.origin import Origin
from support.proxy import Proxy
from support.redis_server import RedisServer
from support.tls_origin import tls_origin  # noqa: F401 - a fixture: an HTTPS origin

_paths = itertools.count()


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin()
    yield server
    server.stop()


@pytest.fixture
def proxy(origin: Origin, tmp_path: Path) -> Iterator[Proxy]:
    with Proxy(origin.url, tmp_path / "cache") as p:
        yield p


@pytest.fixture
def make_proxy(origin: Origin, tmp_path: Path) -> Iterator[object]:
    """Start proxies with extra CLI options: make_proxy("--default-ttl", "0")."""
    started: list[Proxy] = []

    def make(*extra: str, cache_dir: Path | None = None) -> Proxy:
        p = Proxy(origin.url, cache_dir or tmp_path / "cache", *extra).start()
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()


@pytest.fixture
def unique_path() -> str:
    return f"/t{next(_paths)}"


@pytest.fixture(scope="module")
def store_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(params=["disk", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "disk":
        made: Store = DiskStore(str(tmp_path / "cache"))
    else:
        server: RedisServer = request.getfixturevalue("store_redis")
        redis.Redis.from_url(server.url).flushdb()
        made = RedisStore(server.url)
    yield made
    made.close()
