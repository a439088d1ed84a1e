"""Config-file rule overrides through a real proxy process and a counting origin (a HIT is the
origin not being asked): lifetimes by status, `ignore` with a forced ttl, `min_uses`, the bypass
header and cookie; and the errors a bad rule gives."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from support.client import Response, fetch
from support.origin import Origin
from support.polling import wait_until
from support.proxy import Proxy, cli
from support.redis_server import RedisServer

CONFIG = """
quiet = true
default_ttl = 0              # nothing without freshness is stored unless a rule says so

[options]
cache_cookie_requests = true # requests with Cookie are cached, so bypass_cookie has a say

[[rule]]
match = "/err*"
status = [500]
ttl = 30

[[rule]]
match = "/missing/*"
status = [404, 410]
ttl = 60

[[rule]]
match = "/forced*"
ignore = ["cache-control"]
ttl = 60

[[rule]]
match = "/popular/*"
min_uses = 3

[[rule]]
match = "/api/*"
bypass_header = "X-No-Cache"
bypass_cookie = "nocache"
"""
FRESH = [("Cache-Control", "max-age=600")]


@pytest.fixture
def proxy(origin: Origin, make_proxy: Any, tmp_path: Path) -> Proxy:
    config = tmp_path / "proxy.toml"
    config.write_text(CONFIG)
    started: Proxy = make_proxy("--config", str(config))
    return started


def cache_status(response: Response, ttl: int | None = None) -> str | None:
    """Cache-Status with its ttl written as N, after checking it is `ttl` less the second or
    so the exchange may take on a loaded machine."""
    value = response.header("Cache-Status")
    found = re.search(r"ttl=(-?\d+)", value or "")
    if found is not None:
        assert ttl is not None and ttl - 2 <= int(found[1]) <= ttl, value
        value = value.replace(found[0], "ttl=N") if value else value
    return value


def statuses(proxy: Proxy, path: str, times: int = 2, **headers: str) -> list[str | None]:
    return [fetch(proxy.url + path, headers=headers).x_cache for _ in range(times)]


def test_a_500_without_freshness_is_stored_under_its_status_rule(
    origin: Origin, proxy: Proxy,
) -> None:
    origin.route("/err/db", 500, [], b"database down")
    first = fetch(proxy.url + "/err/db")
    assert (first.status, first.x_cache) == (500, "MISS")
    assert cache_status(first, 30) == "caching-proxy; fwd=uri-miss; stored; ttl=N"
    second = fetch(proxy.url + "/err/db")
    assert (second.status, second.x_cache, second.body) == (500, "HIT", b"database down")
    assert origin.count("/err/db") == 1


def test_5xx_is_stored_only_where_a_rule_says_so(origin: Origin, proxy: Proxy) -> None:
    for path in ("/other/500", "/err/503"):  # no rule; a rule for 500 only
        origin.route(path, int(path[-3:]), [], b"e")
        assert statuses(proxy, path) == ["MISS", "MISS"]
        assert origin.count(path) == 2


def test_a_404_is_stored_for_its_status_rules_ttl(origin: Origin, proxy: Proxy) -> None:
    origin.route("/missing/page", 404, [], b"not here")
    origin.route("/elsewhere/page", 404, [], b"not here")
    first = fetch(proxy.url + "/missing/page")
    assert cache_status(first, 60) == "caching-proxy; fwd=uri-miss; stored; ttl=N"
    assert fetch(proxy.url + "/missing/page").x_cache == "HIT"
    assert origin.count("/missing/page") == 1
    # Without the rule, default_ttl = 0 keeps it out.
    assert statuses(proxy, "/elsewhere/page") == ["MISS", "MISS"]


def test_ignored_cache_control_with_a_ttl_caches_no_store(origin: Origin, proxy: Proxy) -> None:
    origin.route("/forced/home", 200, [("Cache-Control", "no-store")], b"home")
    origin.route("/plain/home", 200, [("Cache-Control", "no-store")], b"home")
    first = fetch(proxy.url + "/forced/home")
    assert cache_status(first, 60) == (
        "caching-proxy; fwd=uri-miss; stored; ttl=N; detail=ignored:cache-control")
    hit = fetch(proxy.url + "/forced/home")
    assert (hit.x_cache, hit.body) == ("HIT", b"home")
    assert cache_status(hit, 60) == "caching-proxy; hit; ttl=N; detail=ignored:cache-control"
    assert origin.count("/forced/home") == 1
    assert statuses(proxy, "/plain/home") == ["MISS", "MISS"]  # no rule: no-store holds


def test_min_uses_stores_on_the_third_request(origin: Origin, proxy: Proxy) -> None:
    origin.route("/popular/a", 200, FRESH, b"p")
    answers = [fetch(proxy.url + "/popular/a") for _ in range(4)]
    assert [cache_status(a, 600) for a in answers] == [
        "caching-proxy; fwd=uri-miss; detail=min-uses:1/3",
        "caching-proxy; fwd=uri-miss; detail=min-uses:2/3",
        "caching-proxy; fwd=uri-miss; stored; ttl=N",
        "caching-proxy; hit; ttl=N",
    ]
    assert origin.count("/popular/a") == 3


def test_bypass_header_and_cookie_pass_and_store_nothing(origin: Origin, proxy: Proxy) -> None:
    origin.route("/api/items", 200, FRESH, b"items")
    bypassed = fetch(proxy.url + "/api/items", headers={"X-No-Cache": "1"})
    assert cache_status(bypassed) == "caching-proxy; fwd=bypass; detail=bypass-header"
    by_cookie = fetch(proxy.url + "/api/items", headers={"Cookie": "theme=dark; nocache=1"})
    assert cache_status(by_cookie) == "caching-proxy; fwd=bypass; detail=bypass-cookie"
    # Neither answer was stored: the next plain request fills, the one after is a HIT.
    assert statuses(proxy, "/api/items") == ["MISS", "HIT"]
    assert origin.count("/api/items") == 3
    # With a stored response, a bypass still goes to the origin; "0" or another cookie does not.
    assert statuses(proxy, "/api/items", 1, **{"X-No-Cache": "1"}) == ["MISS"]
    assert statuses(proxy, "/api/items", 1, **{"X-No-Cache": "0"}) == ["HIT"]
    assert statuses(proxy, "/api/items", 1, Cookie="theme=dark") == ["HIT"]
    assert origin.count("/api/items") == 4


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_min_uses_counts_across_instances_on_one_redis(
    origin: Origin, make_proxy: Any, tmp_path: Path, store_redis: RedisServer,
) -> None:
    import redis

    redis.Redis.from_url(store_redis.url).flushdb()
    config = tmp_path / "proxy.toml"
    config.write_text(CONFIG)
    one, two = (make_proxy("--config", str(config), "--store", store_redis.url,
                           cache_dir=tmp_path / f"c{i}") for i in (1, 2))
    origin.route("/popular/shared", 200, FRESH, b"s")
    answers = [fetch(p.url + "/popular/shared") for p in (one, two, one, one)]
    assert [cache_status(a, 600) for a in answers] == [
        "caching-proxy; fwd=uri-miss; detail=min-uses:1/3",
        "caching-proxy; fwd=uri-miss; detail=min-uses:2/3",
        "caching-proxy; fwd=uri-miss; stored; ttl=N",
        "caching-proxy; hit; ttl=N",
    ]
    assert origin.count("/popular/shared") == 3
    # The other instance serves it too, once its memory tier has heard of the write (it read
    # "nothing stored" at the second request; the announcement can lag a loaded machine).
    wait_until(lambda: fetch(two.url + "/popular/shared").x_cache == "HIT", timeout=10)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ('status = [404]\n', "line 3: rule 1: status needs ttl = SECONDS"),
        ('ttl = 5\nstatus = [304]\n', "line 4: rule 1: status: 304 is not a status"),
        ('ttl = 5\nstatus = "5xx"\n', "line 4: rule 1: status must be a list of statuses"),
        ('ttl = 5\nstatus = ["6xx"]\n', "line 4: rule 1: status: '6xx' is not a status"),
        ('ignore = ["pragma"]\n', "line 3: rule 1: ignore: 'pragma' is not one of cache-control"),
        ('ignore = "vary"\n', "line 3: rule 1: ignore must be a list of field names"),
        ('min_uses = 0\n', "line 3: rule 1: min_uses must be a whole number >= 1"),
        ('min_uses = "3"\n', "line 3: rule 1: min_uses must be a whole number >= 1"),
        ('bypass_header = "X No Cache"\n', "line 3: rule 1: bypass_header must be a header name"),
        ('bypass_cookie = 1\n', "line 3: rule 1: bypass_cookie must be a cookie name"),
        ('bypass = "X-No-Cache"\n', "line 3: unknown key 'bypass' in rule 1"),
    ],
)
def test_a_bad_override_names_file_line_and_key(tmp_path: Path, rule: str, expected: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(f'[[rule]]\nmatch = "/a/*"\n{rule}')
    done = cli("--config", str(config), "--origin", "http://127.0.0.1:9", "--cache-dir",
               str(tmp_path / "c"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert str(config) in done.stderr and expected in done.stderr, done.stderr


def test_the_file_gives_the_rule_its_overrides(tmp_path: Path) -> None:
    from caching_proxy.cli.config_file import load

    config = tmp_path / "proxy.toml"
    config.write_text('[[rule]]\nmatch = "/a/*"\nstatus = [410, "5xx"]\nttl = 9\n'
                      'ignore = ["Cache-Control", "vary"]\nmin_uses = 2\n'
                      'bypass_header = "X-No-Cache"\nbypass_cookie = "NoCache"\n')
    (rule,) = load(str(config)).rules
    assert rule.status == {410} | set(range(500, 600)) and rule.ttl == 9
    assert rule.ignore == {"cache-control", "vary"} and rule.min_uses == 2
    # Header names are case-insensitive, cookie names are not (RFC 6265 5.4).
    assert (rule.bypass_header, rule.bypass_cookie) == ("x-no-cache", "NoCache")
