"""The command line: bad options fail with one line and exit 2; one-shot commands on the store."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from support.client import fetch
from support.origin import Origin, free_port
from support.proxy import ROOT, Proxy, cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "0", "--origin", "http://x"], "invalid port 0"),
        (["--port", "70000", "--origin", "http://x"], "invalid port 70000"),
        (["--port", "abc", "--origin", "http://x"], "not a number"),
        (["--origin", "ftp://example.com"], "invalid origin"),
        (["--origin", "example.com"], "invalid origin"),
        (["--origin", "http://example.com/some/path"], "no path"),
        (["--default-ttl", "-5", "--origin", "http://x"], "must not be negative"),
        (["--store", "redis+sentinel://127.0.0.1:26379", "--origin", "http://x"], "no SERVICE"),
        (["--store", "redis+cluster://127.0.0.1:7000/1", "--origin", "http://x"],
         "database 0 only"),
        ([], "--origin is required"),
        (["--origin", "http://x", "--cache-size", "lots"],
         "argument --cache-size: invalid size 'lots': use e.g. 512k, 64m or 1g"),
        (["--soft"], "--soft goes with --purge, --purge-prefix, --purge-tag or --clear-cache"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_options_exit_2_with_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    result = cli(*args, "--cache-dir", str(tmp_path / "c"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_a_set_option_error_names_the_setting(tmp_path: Path) -> None:
    result = cli("--port", str(free_port()), "--origin", "http://127.0.0.1:9", "--cache-dir",
                 str(tmp_path / "c"), "--set", "cache_default_ttl=abc", timeout=30)
    assert result.returncode == 2
    # The rest is mitmproxy's words, which 11 and 12 put differently.
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("caching-proxy: error: --set cache_default_ttl: ") and "abc" in line


def test_stats_and_list_of_a_folder_that_is_not_there_say_so(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    for command in ("--stats", "--list"):
        result = cli(command, "--cache-dir", str(missing))
        assert result.returncode == 1
        assert result.stderr.strip() == f"caching-proxy: no cache folder at {missing} (--cache-dir)"
    assert not missing.exists()  # no empty store made on the way


def test_keep_host_header_is_refused(tmp_path: Path) -> None:
    """Host is not in the cache key: forwarding the client's would let it poison any entry."""
    result = cli("--port", str(free_port()), "--origin", "http://127.0.0.1:9", "--cache-dir",
                 str(tmp_path / "c"), "--set", "keep_host_header=true", timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "caching-proxy: error: --set keep_host_header: keep_host_header is not supported: "
        "the cache key does not hold the client's Host, so one client could choose what every "
        "client is served")


def test_port_in_use_exits_2(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = cli("--port", str(port), "--origin", "http://127.0.0.1:9",
                     "--cache-dir", str(tmp_path / "c"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"caching-proxy: error: port {port} on 127.0.0.1 is already in use"


def test_cache_dir_that_cannot_be_created_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = cli("--origin", "http://127.0.0.1:9", "--cache-dir", str(blocker / "sub"))
    assert result.returncode == 2
    assert "cannot create cache folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_help_explains_every_option() -> None:
    result = cli("--help")
    assert result.returncode == 0
    for option in ("--origin", "--port", "--host", "--cache-dir", "--cache-size", "--default-ttl",
                   "--set", "--web", "--clear-cache"):
        assert option in result.stdout


def test_startup_line_names_listen_address_origin_and_cache(proxy: Proxy) -> None:
    line = next(x for x in proxy.lines if "listening on" in x)
    assert f"http://127.0.0.1:{proxy.port}" in line
    assert proxy.origin_url in line
    assert str(proxy.cache_dir) in line


def test_clear_cache_while_proxy_runs_gives_miss(origin: Origin, proxy: Proxy) -> None:
    origin.route("/c", 200, [("Cache-Control", "max-age=600")], b"12345")
    origin.route("/d", 200, [("Cache-Control", "max-age=600")], b"abc")
    fetch(proxy.url + "/c")
    fetch(proxy.url + "/d")
    assert fetch(proxy.url + "/c").x_cache == "HIT"
    result = cli("--clear-cache", "--cache-dir", str(proxy.cache_dir))
    assert result.returncode == 0, result.stderr
    assert "cleared 2 entries" in result.stdout
    again = fetch(proxy.url + "/c")
    assert again.x_cache == "MISS" and again.body == b"12345"
    assert origin.count("/c") == 2
    assert cli("--clear-cache", "--cache-dir", str(proxy.cache_dir)).stdout.count("cleared 1 ") == 1


def test_restarted_proxy_still_answers_hit(origin: Origin, tmp_path: Path) -> None:
    origin.route("/persist", 200, [("Cache-Control", "max-age=600")], b"kept")
    with Proxy(origin.url, tmp_path / "cache") as first:
        assert fetch(first.url + "/persist").x_cache == "MISS"
    with Proxy(origin.url, tmp_path / "cache") as second:
        hit = fetch(second.url + "/persist")
    assert hit.x_cache == "HIT" and hit.body == b"kept"
    assert origin.count("/persist") == 1


def test_origin_down_gives_502_then_recovers(tmp_path: Path) -> None:
    from support.origin import free_port

    port = free_port()
    with Proxy(f"http://127.0.0.1:{port}", tmp_path / "cache") as proxy:
        down = fetch(proxy.url + "/x")
        assert down.status == 502
        assert (down.header("Content-Type") or "").startswith("text/plain")
        assert down.x_cache == "MISS"
        assert len(down.body) < 300 and b"502" in down.body
        up = Origin(port)
        try:
            up.route("/x", 200, [("Cache-Control", "max-age=60")], b"back")
            ok = fetch(proxy.url + "/x")
            assert ok.status == 200 and ok.body == b"back" and ok.x_cache == "MISS"
            assert fetch(proxy.url + "/x").x_cache == "HIT"
        finally:
            up.stop()


def test_addon_loads_with_plain_mitmdump(origin: Origin, tmp_path: Path) -> None:
    origin.route("/m", 200, [("Cache-Control", "max-age=60")], b"via mitmdump")
    from support.origin import free_port

    port = free_port()
    mitmdump = Path(sys.executable).parent / "mitmdump"
    command = [str(mitmdump), "--set", "flow_detail=0", "-s", str(ROOT / "addons" / "cache.py"),
               "--mode", f"reverse:{origin.url}", "--listen-host", "127.0.0.1",
               "--listen-port", str(port), "--set", f"cache_dir={tmp_path / 'c'}",
               "--set", "termlog_verbosity=info"]
    with Proxy(origin.url, tmp_path, port=port, command=command,
               ready_text="listening at") as p:
        assert fetch(p.url + "/m").x_cache == "MISS"
        hit = fetch(p.url + "/m")
    assert hit.x_cache == "HIT" and hit.body == b"via mitmdump"
    assert origin.count("/m") == 1
    assert subprocess.run([str(mitmdump), "--version"], capture_output=True).returncode == 0


def test_a_hit_needs_no_origin_connection(origin: Origin, proxy: Proxy) -> None:
    # The runner sets connection_strategy=lazy: with mitmproxy's eager default, each client
    # connection would first connect to the (now gone) origin and fail.
    origin.route("/h", 200, [("Cache-Control", "max-age=600")], b"stored")
    assert fetch(proxy.url + "/h").x_cache == "MISS"
    origin.stop()
    hit = fetch(proxy.url + "/h")
    assert (hit.status, hit.x_cache, hit.body) == (200, "HIT", b"stored")


def test_a_restart_right_after_serving_binds_its_port(origin: Origin, tmp_path: Path) -> None:
    """The proxy's own connections, closed by its stop, leave sockets in TIME-WAIT on its port:
    the start-up check binds as the listener does (SO_REUSEADDR), so a restart is not refused."""
    origin.route("/r", 200, [("Cache-Control", "max-age=60")], b"kept")
    port = free_port()
    first = Proxy(origin.url, tmp_path / "cache", port=port).start()
    try:
        with socket.create_connection(("127.0.0.1", port)) as held:
            held.sendall(b"GET /r HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"kept"):
                answer += held.recv(65536)
            first.stop()  # the proxy closes the kept-alive connection first: TIME-WAIT is its
    finally:
        first.stop()
    with Proxy(origin.url, tmp_path / "cache", port=port) as again:
        assert fetch(again.url + "/r").body == b"kept"
