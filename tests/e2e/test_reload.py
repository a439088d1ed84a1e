"""SIGHUP reloads (cli/reload.py): the config file is read again and applied to the running
proxy, whose port and open connections stay; what cannot change live is named and kept; a bad
file changes nothing; the access log is reopened; under --workers every worker reloads."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from support.origin import Origin
from support.polling import wait_until
from support.proxy import Proxy
from support.scripted_origin import Head, RawClient, get


def config(path: Path, ttl: int, extra: str = "") -> Path:
    path.write_text(f'default_ttl = 5\n{extra}\n[[rule]]\nmatch = "/r/*"\nttl = {ttl}\n',
                    encoding="utf-8")
    return path


def ttl_of(head: Head) -> int:
    found = re.search(r"ttl=(-?\d+)", head.header("Cache-Status") or "")
    assert found, head.headers
    return int(found.group(1))


def hup(proxy: Proxy) -> None:
    assert proxy.proc is not None
    proxy.proc.send_signal(signal.SIGHUP)


def reloads(proxy: Proxy) -> int:
    # Occurrences, not lines: two workers' messages on one pipe may share a line.
    return sum(line.count("caching-proxy: reloaded") for line in proxy.lines)


def test_a_rule_ttl_changes_under_a_kept_alive_client(origin: Origin, tmp_path: Path) -> None:
    origin.route("/r/1", 200, [], b"one")
    origin.route("/r/2", 200, [], b"two")
    file = config(tmp_path / "proxy.toml", 1000)
    with Proxy(origin.url, tmp_path / "cache", "--config", str(file)) as proxy:
        client = RawClient(proxy.port)
        first = client.exchange(get("/r/1"))[-1]
        assert 990 <= ttl_of(first) <= 1000
        config(file, 50)
        hup(proxy)
        wait_until(lambda: reloads(proxy) == 1, what="the reload")
        # The same connection: never reset, and the new rule applies to what it stores now.
        second = client.exchange(get("/r/2"))[-1]
        assert (second.status, second.body) == (200, b"two")
        assert 40 <= ttl_of(second) <= 50
        assert client.exchange(get("/r/1"))[-1].header("X-Cache") == "HIT"
        assert proxy.proc is not None and proxy.proc.poll() is None
    assert origin.count("/r/1") == 1


def test_a_bad_file_keeps_the_running_configuration(origin: Origin, tmp_path: Path) -> None:
    origin.route("/r/1", 200, [], b"one")
    origin.route("/r/2", 200, [], b"two")
    file = config(tmp_path / "proxy.toml", 1000)
    with Proxy(origin.url, tmp_path / "cache", "--config", str(file)) as proxy:
        client = RawClient(proxy.port)
        file.write_text('default_ttl = 5\n[[rule]]\nmatch = "/r/*"\nttl = -3\n', encoding="utf-8")
        hup(proxy)
        assert proxy.logged("caching-proxy: reload refused, running configuration kept: "
                            f"{file}, line 4: rule 1: ttl must be a number of seconds >= 0")
        answer = client.exchange(get("/r/1"))[-1]
        assert 990 <= ttl_of(answer) <= 1000  # the rule of the running configuration
        # A file that parses, with a value only the running addons refuse: rolled back whole,
        # the rule change beside it included.
        config(file, 50, '[options]\ncache_access_log = "%Q"')
        hup(proxy)
        assert proxy.logged("reload refused, running configuration kept: cache_access_log: ")
        answer = client.exchange(get("/r/1"))[-1]
        assert answer.header("X-Cache") == "HIT" and 980 <= ttl_of(answer) <= 1000
        fresh = client.exchange(get("/r/2"))[-1]
        assert fresh.status == 200 and 990 <= ttl_of(fresh) <= 1000  # not the refused 50
        assert proxy.logged("GET /r/2")  # the text log format of the running configuration
        assert reloads(proxy) == 0


def test_what_cannot_change_live_is_named_once_and_kept(origin: Origin, tmp_path: Path) -> None:
    origin.route("/r/1", 200, [], b"one")
    file = config(tmp_path / "proxy.toml", 1000)
    with Proxy(origin.url, tmp_path / "cache", "--config", str(file)) as proxy:
        client = RawClient(proxy.port)
        # (The command line's --port wins over the file's: the file moves the address.)
        config(file, 20, 'host = "localhost"\ncache_size = "2g"\nworkers = 2')
        hup(proxy)
        wait_until(lambda: reloads(proxy) == 1, what="the reload")
        warnings = [line for line in proxy.lines if "cannot change without a restart" in line]
        assert len(warnings) == 1
        assert warnings[0].endswith("caching-proxy: reload: --cache-size, --host, --workers "
                                    "cannot change without a restart; kept the running value")
        answer = client.exchange(get("/r/1"))[-1]  # on the running port; the rule is live
        assert answer.status == 200 and 10 <= ttl_of(answer) <= 20


def test_sighup_reopens_the_access_log(origin: Origin, tmp_path: Path) -> None:
    origin.route("/a", 200, [], b"a")
    origin.route("/b", 200, [], b"b")
    log = tmp_path / "access.log"
    with Proxy(origin.url, tmp_path / "cache", "--access-log", str(log)) as proxy:
        client = RawClient(proxy.port)
        client.exchange(get("/a"))
        wait_until(lambda: "/a" in log.read_text(), what="/a logged")
        log.rename(tmp_path / "access.log.1")  # logrotate
        hup(proxy)
        wait_until(lambda: reloads(proxy) == 1, what="the reload")
        client.exchange(get("/b"))
        wait_until(lambda: log.exists() and "/b" in log.read_text(), what="/b in the new file")
    assert "/b" not in (tmp_path / "access.log.1").read_text()


def test_every_worker_reloads(origin: Origin, tmp_path: Path) -> None:
    for i in range(8):
        origin.route(f"/r/{i}", 200, [], b"x")
    file = config(tmp_path / "proxy.toml", 1000)
    with Proxy(origin.url, tmp_path / "cache", "--config", str(file), "--workers", "2") as proxy:
        wait_until(lambda: sum("caching-proxy: listening" in x for x in proxy.lines) >= 1,
                   what="the start-up line")
        from support.sockets import listening_sockets

        wait_until(lambda: listening_sockets(proxy.port) == 2, timeout=20,
                   what="two workers listening")
        config(file, 50)
        hup(proxy)
        wait_until(lambda: reloads(proxy) == 2, timeout=10,
                   what=f"both workers reloaded in:\n{proxy.output}")
        # New connections, spread by the kernel over both workers: every one has the new rule.
        for i in range(8):
            with RawClient(proxy.port) as client:
                assert 40 <= ttl_of(client.exchange(get(f"/r/{i}"))[-1]) <= 50
