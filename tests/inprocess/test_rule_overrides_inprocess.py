"""Config-file rule overrides in the addon in-process (tests/support/inprocess.py): lifetimes by
status and forced lifetimes run on the injected clock, what Cache-Status says, a Set-Cookie a
rule ignores never reaching a hit, min_uses counted by the store for two proxies on one folder,
and bypassed requests neither looked up nor stored."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from support.inprocess import Harness, cache_status, x_cache
from support.origin import Origin

RULES = """
[[rule]]
match = "/err*"
status = [500, "4xx"]
ttl = 30

[[rule]]
match = "/forced*"
ignore = ["cache-control", "set-cookie"]
ttl = 60

[[rule]]
match = "/popular*"
min_uses = 3

[[rule]]
match = "/bypass*"
bypass_header = "X-No-Cache"
bypass_cookie = "nocache"
"""
FRESH = [("Cache-Control", "max-age=600")]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    return path


@pytest.fixture
def run(origin: Origin, tmp_path: Path, config: Path) -> Callable[..., None]:
    def run(scenario: Callable[[Harness], Awaitable[None]]) -> None:
        async def main() -> None:
            with Harness(origin, tmp_path / "cache", cache_config=str(config)) as h:
                await scenario(h)

        asyncio.run(main())

    return run


def test_a_status_rule_stores_errors_for_its_ttl(run: Callable[..., None], origin: Origin) -> None:
    origin.route("/err/500", 500, [], b"boom")
    origin.route("/err/404", 404, [], b"gone")
    origin.route("/err/503", 503, [], b"busy")

    async def scenario(h: Harness) -> None:
        miss = await h.get("/err/500")
        assert cache_status(miss) == ["caching-proxy; fwd=uri-miss; stored; ttl=30"]
        h.clock.advance(29)
        hit = await h.get("/err/500")
        assert (x_cache(hit), hit.response and hit.response.status_code) == ("HIT", 500)
        h.clock.advance(2)  # 31 s: stale, no validator to revalidate with
        assert x_cache(await h.get("/err/500")) == "MISS"
        assert origin.count("/err/500") == 2
        assert [x_cache(await h.get("/err/404")) for _ in range(2)] == ["MISS", "HIT"]
        # A 5xx the rule does not list is not stored.
        assert [x_cache(await h.get("/err/503")) for _ in range(2)] == ["MISS", "MISS"]

    run(scenario)


def test_a_forced_ttl_stores_no_store_and_says_so(run: Callable[..., None],
                                                   origin: Origin) -> None:
    origin.route("/forced/x", 200, [("Cache-Control", "no-store, private"),
                                    ("Set-Cookie", "session=alice")], b"page")

    async def scenario(h: Harness) -> None:
        miss = await h.get("/forced/x")
        assert cache_status(miss) == [
            "caching-proxy; fwd=uri-miss; stored; ttl=60; detail=ignored:cache-control+set-cookie"]
        assert miss.response is not None and miss.response.headers["Set-Cookie"] == "session=alice"
        h.clock.advance(59)
        hit = await h.get("/forced/x")
        assert hit.response is not None and hit.response.content == b"page"
        # The stored copy kept the origin's Cache-Control (sent on as is) but not its cookie.
        assert cache_status(hit) == ["caching-proxy; hit; ttl=1; detail=ignored:cache-control"]
        assert hit.response.headers["Cache-Control"] == "no-store, private"
        assert "Set-Cookie" not in hit.response.headers
        assert origin.count("/forced/x") == 1
        h.clock.advance(2)
        assert x_cache(await h.get("/forced/x")) == "MISS"

    run(scenario)


def test_min_uses_is_counted_by_the_store_for_every_proxy_on_it(
    origin: Origin, tmp_path: Path, config: Path,
) -> None:
    origin.route("/popular/a", 200, FRESH, b"p")

    async def main() -> None:
        # Two addons on one folder: what two --workers are.
        with (Harness(origin, tmp_path / "cache", cache_config=str(config)) as one,
              Harness(origin, tmp_path / "cache", cache_config=str(config)) as two):
            first = await one.get("/popular/a")
            assert cache_status(first) == ["caching-proxy; fwd=uri-miss; detail=min-uses:1/3"]
            second = await two.get("/popular/a")
            assert cache_status(second) == ["caching-proxy; fwd=uri-miss; detail=min-uses:2/3"]
            third = await one.get("/popular/a")
            assert cache_status(third) == ["caching-proxy; fwd=uri-miss; stored; ttl=600"]
            assert x_cache(await two.get("/popular/a")) == "HIT"
            assert x_cache(await one.get("/popular/a")) == "HIT"
            assert origin.count("/popular/a") == 3

    asyncio.run(main())


def test_bypassed_requests_are_passed_and_not_stored(run: Callable[..., None],
                                                     origin: Origin) -> None:
    origin.route("/bypass/a", 200, FRESH, b"b")

    async def scenario(h: Harness) -> None:
        passed = await h.get("/bypass/a", x_no_cache="1")
        assert cache_status(passed) == ["caching-proxy; fwd=bypass; detail=bypass-header"]
        # Not stored: the next plain request misses, and is then stored as usual.
        assert [x_cache(await h.get("/bypass/a")) for _ in range(2)] == ["MISS", "HIT"]
        # A stored response is not used either.
        again = await h.get("/bypass/a", x_no_cache="yes")
        assert x_cache(again) == "MISS" and origin.count("/bypass/a") == 3
        assert x_cache(await h.get("/bypass/a", x_no_cache="0")) == "HIT"

    run(scenario)
