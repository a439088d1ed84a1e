"""`--config FILE`: options and per-path rules from TOML, through a real proxy; bad files."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from support.client import fetch
from support.origin import Origin, Reply, Seen, free_port
from support.proxy import cli

CONFIG = """
default_ttl = 300
quiet = true

[options]
cache_set_cookie = true

[[rule]]
match = "/never/*"
never_cache = true

[[rule]]
match = "/short/*"
ttl = 1

[[rule]]
match = "/long/*"
ttl = 600

[[rule]]
match = "/q/*"
ignore_query = ["utm_*", "fbclid"]

[[rule]]
match = "/lang/*"
key_headers = ["Accept-Language"]
"""


def by_language(seen: Seen) -> Reply:
    return Reply(200, [("Cache-Control", "max-age=600")], (seen.header("Accept-Language") or "").encode())


def test_rules_and_options_from_the_file(origin: Origin, make_proxy: Any, tmp_path: Path) -> None:
    fresh = [("Cache-Control", "max-age=600")]
    origin.route("/never/x", 200, fresh, b"n")
    origin.route("/short/x", 200, fresh, b"s")
    origin.route("/long/x", 200, [("Cache-Control", "max-age=0")], b"l")
    origin.route("/q/a", 200, fresh, b"q")
    origin.route("/lang/x", handler=by_language)
    origin.route("/cookie", 200, [*fresh, ("Set-Cookie", "a=b")], b"c")
    config = tmp_path / "proxy.toml"
    config.write_text(CONFIG)
    proxy = make_proxy("--config", str(config))

    assert [fetch(proxy.url + "/never/x").x_cache for _ in range(2)] == ["MISS", "MISS"]
    assert [fetch(proxy.url + "/long/x").x_cache for _ in range(2)] == ["MISS", "HIT"]
    assert [fetch(proxy.url + "/short/x").x_cache for _ in range(2)] == ["MISS", "HIT"]
    time.sleep(1.2)  # the rule's 1 s lifetime beats the origin's 600 s
    assert fetch(proxy.url + "/short/x").x_cache == "MISS"

    assert fetch(proxy.url + "/q/a?utm_source=news&id=1").x_cache == "MISS"
    assert fetch(proxy.url + "/q/a?id=1&fbclid=z&utm_medium=mail").x_cache == "HIT"
    assert fetch(proxy.url + "/q/a?id=2").x_cache == "MISS"
    assert [s.path for s in origin.requests_for("/q/a?utm_source=news&id=1")]  # sent as is

    en = {"Accept-Language": "en"}
    assert fetch(proxy.url + "/lang/x", headers=en).body == b"en"
    assert fetch(proxy.url + "/lang/x", headers={"Accept-Language": "fr"}).x_cache == "MISS"
    again = fetch(proxy.url + "/lang/x", headers=en)
    assert (again.x_cache, again.body, again.header("Vary")) == ("HIT", b"en", None)

    assert [fetch(proxy.url + "/cookie").x_cache for _ in range(2)] == ["MISS", "HIT"]
    assert origin.count("/never/x") == 2 and origin.count("/long/x") == 1
    assert origin.count("/short/x") == 2 and origin.count("/lang/x") == 2
    assert not any("GET /" in line for line in proxy.lines)  # quiet = true: no access log


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("port = 3000\norigin = \"http://x\n", "line 2"),
        ("port = 3000\nport_number = 5\n", "line 2: unknown option 'port_number'"),
        ("\nport = 70000\n", "line 2: port: argument --port: invalid port 70000"),
        ("quiet = \"yes\"\n", "line 1: quiet must be true or false"),
        ("[[rule]]\nmatch = \"/a/*\"\n\n[[rule]]\nmatch = \"/b/*\"\nttl = -5\n",
         "line 6: rule 2: ttl must be a number of seconds >= 0"),
        ("[[rule]]\nmatch = \"/a/*\"\nnever = true\n", "line 3: unknown key 'never' in rule 1"),
        ("[[rule]]\nttl = 5\n", "line 1: rule 1: match must be a path glob"),
        ("[[rule]]\nmatch = \"/a\"\nkey_headers = [\"Bad Name\"]\n",
         "line 3: rule 1: key_headers: 'Bad Name' is not a header name"),
        ("[cache]\nx = 1\n", "line 1: unknown table [cache]"),
        ("clear_cache = true\n", "line 1: unknown option 'clear_cache'"),
    ],
)
def test_a_bad_file_names_key_and_line(tmp_path: Path, text: str, expected: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    done = cli("--config", str(config), "--origin", "http://127.0.0.1:9", "--cache-dir",
               str(tmp_path / "c"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert str(config) in done.stderr and expected in done.stderr, done.stderr


def test_a_bad_mitmproxy_option_in_the_file_names_its_line(tmp_path: Path) -> None:
    """[options] goes to mitmproxy, which checks it only once it runs: its error still names
    the file, the line and the key."""
    config = tmp_path / "bad.toml"
    config.write_text(f"port = {free_port()}\n\n[options]\nconnection_strategy = \"lazy\"\n"
                      "bogus_key = 1\n")
    done = cli("--config", str(config), "--origin", "http://127.0.0.1:9", "--cache-dir",
               str(tmp_path / "c"), timeout=30)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == (f"caching-proxy: error: {config}, line 5: [options] bogus_key: "
                                   "Unknown option(s): bogus_key")


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    done = cli("--config", str(tmp_path / "nope.toml"), "--origin", "http://127.0.0.1:9")
    assert done.returncode == 2 and "cannot read config file" in done.stderr
