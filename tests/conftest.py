"""Fixtures every end-to-end test shares: a counting origin and a proxy process in front of it."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.origin import Origin
from support.proxy import Proxy

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
