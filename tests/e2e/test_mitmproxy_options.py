"""mitmproxy's own options and the user's scripts on a real proxy process (the lean master):
`--set NAME=...` of one of mitmproxy's addons loads that addon, `-s FILE` and `--set
scripts=FILE` run the user's addon (on lane hits too), a script that fails to load stops the
start with one line, and no script or map_remote turns the proxy into an open one."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.client import fetch
from support.origin import Origin, free_port
from support.proxy import Proxy, cli

ADDONS = Path(__file__).resolve().parents[1] / "support" / "addons"
FRESH = [("Cache-Control", "max-age=600"), ("ETag", '"v1"')]


@pytest.fixture
def routed(origin: Origin) -> Origin:
    for path in ("/a", "/b", "/blocked", "/new"):
        origin.route(path, 200, FRESH, f"body of {path}\n".encode())
    return origin


def test_modify_headers_adds_a_header_the_origin_sees(routed: Origin, make_proxy) -> None:
    p = make_proxy("--set", "modify_headers=/~q/X-Added/yes")
    assert fetch(p.url + "/a").status == 200
    assert [s.header("X-Added") for s in routed.requests_for("/a")] == ["yes"]


def test_block_list_blocks_before_the_cache_and_the_origin(routed: Origin, make_proxy) -> None:
    p = make_proxy("--set", "block_list=:~u /blocked:403", "--set", "block_list=:~h X-Block:418")
    for _ in range(2):
        assert fetch(p.url + "/blocked").status == 403
    assert fetch(p.url + "/a").x_cache == "MISS"
    assert fetch(p.url + "/a").x_cache == "HIT"
    # A stored response is blocked too, hit lane or not (the lane takes this plain GET).
    assert fetch(p.url + "/a", headers={"x-block": "1"}).status == 418  # (a filter is lower-cased)
    assert routed.count("/blocked") == 0
    assert routed.count("/a") == 1


@pytest.mark.parametrize(("anticache", "status"), [(False, 304), (True, 200)])
def test_anticache_strips_the_conditionals_the_cache_would_answer(
        routed: Origin, make_proxy, anticache: bool, status: int) -> None:
    p = make_proxy(*(["--set", "anticache=true"] if anticache else []))
    assert fetch(p.url + "/a").status == 200  # stored
    r = fetch(p.url + "/a", headers={"If-None-Match": '"v1"'})
    assert (r.status, r.x_cache) == (status, "HIT")
    assert routed.count("/a") == 1


@pytest.mark.parametrize("lane", [True, False])
def test_a_scripts_response_hook_marks_misses_and_hits(
        routed: Origin, make_proxy, lane: bool) -> None:
    p = make_proxy("-s", str(ADDONS / "tag_responses.py"), *([] if lane else ["--no-hit-lane"]))
    miss = fetch(p.url + "/a")
    hit = fetch(p.url + "/a")
    assert (miss.x_cache, hit.x_cache) == ("MISS", "HIT")
    assert miss.header("X-Script") == "requests=1; path=mitmproxy"
    # The script's request hook saw the hit too, on the path the proxy is configured with.
    assert hit.header("X-Script") == f"requests=2; path={'lane' if lane else 'mitmproxy'}"
    assert routed.count("/a") == 1


def test_set_scripts_loads_a_script_too(routed: Origin, make_proxy) -> None:
    p = make_proxy("--set", f"scripts={ADDONS / 'tag_responses.py'}")
    assert fetch(p.url + "/a").header("X-Script") == "requests=1; path=mitmproxy"


@pytest.mark.parametrize(("args", "words"), [
    (["-s", str(ADDONS / "broken.py")],
     f"script {ADDONS / 'broken.py'}: line 3: ModuleNotFoundError: No module named "
     "'no_such_module_anywhere'"),
    (["--script", str(ADDONS / "missing.py")], "No such script"),
    (["--set", f"scripts={ADDONS / 'missing.py'}"], "--set scripts: No such script"),
])
def test_a_script_that_fails_to_load_stops_the_start_with_one_line(
        tmp_path: Path, args: list[str], words: str) -> None:
    result = cli("--port", str(free_port()), "--origin", "http://127.0.0.1:9",
                 "--cache-dir", str(tmp_path / "c"), *args)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("caching-proxy: error: "), result.stderr
    assert words in errors[0]
    assert "Traceback" not in result.stderr
    assert "listening on" not in result.stderr


def test_a_script_cannot_send_a_request_past_the_origin(
        routed: Origin, make_proxy, tmp_path: Path) -> None:
    elsewhere = Origin()
    elsewhere.route("/a", 200, FRESH, b"elsewhere\n")
    try:
        p = make_proxy("-s", str(ADDONS / "retarget.py"))
        r = fetch(p.url + "/a", headers={"X-Target": f"127.0.0.1:{elsewhere.port}"})
        assert r.status == 502
        assert b"destination is not the origin" in r.body
        assert elsewhere.count("/a") == 0
        assert routed.count("/a") == 0
        assert p.logged("was refused: not forwarded")
        # A request the script leaves alone goes on to the origin.
        assert fetch(p.url + "/a").status == 200
        assert routed.count("/a") == 1
    finally:
        elsewhere.stop()


def test_map_remote_may_rewrite_a_path_on_the_origin_but_not_leave_it(
        routed: Origin, tmp_path: Path) -> None:
    elsewhere = Origin()
    elsewhere.route("/a", 200, FRESH, b"elsewhere\n")
    rules = ["--set", "map_remote=|/old|/new",
             "--set", f"map_remote=|127.0.0.1:{routed.port}/away|127.0.0.1:{elsewhere.port}/a"]
    try:
        with Proxy(routed.url, tmp_path / "c", *rules) as p:
            assert fetch(p.url + "/old").body == b"body of /new\n"
            assert fetch(p.url + "/away").status == 502
        assert elsewhere.count("/a") == 0
        assert routed.count("/new") == 1
    finally:
        elsewhere.stop()


def test_a_script_leaves_an_https_origin_reachable(tls_origin: Origin, tmp_path: Path) -> None:
    tls_origin.route("/s", 200, FRESH, b"secure\n")
    cert = tls_origin.cert  # type: ignore[attr-defined]
    with Proxy(tls_origin.url, tmp_path / "c", "--set", f"ssl_verify_upstream_trusted_ca={cert}",
               "-s", str(ADDONS / "retarget.py")) as p:
        assert fetch(p.url + "/s").body == b"secure\n"
        assert fetch(p.url + "/s").x_cache == "HIT"
    assert tls_origin.count("/s") == 1


def test_a_script_cannot_connect_past_the_origin_either(
        routed: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = Origin()
    elsewhere.route("/a", 200, FRESH, b"elsewhere\n")
    monkeypatch.setenv("TEST_RECONNECT_TO", f"127.0.0.1:{elsewhere.port}")
    try:
        with Proxy(routed.url, tmp_path / "c", "-s", str(ADDONS / "reconnect.py")) as p:
            r = fetch(p.url + "/a")
            assert r.status == 502
            assert b"destination is not the origin" in r.body
        assert elsewhere.count("/a") == 0
        assert routed.count("/a") == 0
    finally:
        elsewhere.stop()
