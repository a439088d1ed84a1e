"""The access log of a real proxy process: NCSA combined and templates, `--access-log FILE`
reopened on SIGUSR1 (logrotate), also with `--workers`, and mitmproxy's per-connection lines
only with `--verbose`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from support.client import fetch
from support.origin import Origin, Reply, free_port
from support.polling import wait_until
from support.proxy import ROOT, Proxy, cli

FRESH = [("Cache-Control", "max-age=600")]
COMBINED = re.compile(
    r'^127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET /c HTTP/1\.1" '
    r'200 3 "http://ref/" "agent/1" (MISS|HIT) "caching-proxy; [^"]+"$')


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_combined_lines_carry_the_cache_status(origin: Origin, make_proxy: Any) -> None:
    origin.route("/c", 200, FRESH, b"abc")
    proxy = make_proxy("--log-format", "combined")
    for _ in range(2):
        fetch(proxy.url + "/c", headers={"Referer": "http://ref/", "User-Agent": "agent/1"})
    wait_until(lambda: len([x for x in proxy.lines if '"GET /c ' in x]) == 2)
    miss, hit = (x for x in proxy.lines if '"GET /c ' in x)
    assert COMBINED.match(miss) and COMBINED.match(hit), (miss, hit)
    assert re.search(r'MISS "caching-proxy; fwd=uri-miss; stored; ttl=\d+"$', miss), miss
    assert ' HIT "caching-proxy; hit; ttl=' in hit


def test_template_and_its_errors(origin: Origin, make_proxy: Any, tmp_path: Path) -> None:
    origin.route("/t", 200, FRESH, b"abcd")
    proxy = make_proxy("--log-format", '%m %U%q %s %B %{X-Cache}o %D %%')
    fetch(proxy.url + "/t?a=1")
    wait_until(lambda: any(x.startswith("GET /t?a=1 ") for x in proxy.lines))
    line = next(x for x in proxy.lines if x.startswith("GET /t?a=1 "))
    assert re.fullmatch(r"GET /t\?a=1 200 4 MISS \d+ %", line), line

    done = cli("--origin", origin.url, "--cache-dir", str(tmp_path / "c"),
               "--log-format", "%h %Q")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "caching-proxy: error: argument --log-format: invalid log format '%h %Q': unknown "
        "directive '%Q' (known: %h %l %u %t %r %s %b %B %D %T %m %U %q %H %{Name}i %{Name}o %%)"]

    missing = tmp_path / "no-such-folder" / "access.log"
    done = cli("--origin", origin.url, "--port", str(free_port()), "--cache-dir",
               str(tmp_path / "c"), "--access-log", str(missing))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"caching-proxy: error: cannot open access log {missing}: No such file or directory"]


def test_access_log_file_is_reopened_on_sigusr1_by_every_worker(
        origin: Origin, make_proxy: Any, tmp_path: Path) -> None:
    origin.route("/f", 200, FRESH, b"f")
    log = tmp_path / "access.log"
    proxy = make_proxy("--workers", "2", "--access-log", str(log), "--log-format", "combined")
    for _ in range(10):
        fetch(proxy.url + "/f")
    wait_until(lambda: len(lines_of(log)) == 10)
    assert not [x for x in proxy.lines if '"GET /f ' in x]  # not on standard output
    os.rename(log, tmp_path / "access.log.1")  # what logrotate does, then its postrotate:
    assert proxy.proc is not None
    proxy.proc.send_signal(signal.SIGUSR1)  # the supervisor passes it on to both workers
    wait_until(log.exists)
    time.sleep(0.5)  # both workers reopen within the same loop turn as the signal
    assert proxy.proc.poll() is None
    for _ in range(10):
        fetch(proxy.url + "/f")
    wait_until(lambda: len(lines_of(log)) == 10)
    old = lines_of(tmp_path / "access.log.1")
    assert len(old) == 10
    assert all(' "GET /f HTTP/1.1" 200 1 ' in x for x in old + lines_of(log))


def test_sigusr1_while_the_workers_start_kills_nobody(origin: Origin, tmp_path: Path) -> None:
    # The CI failure this guards: a worker still importing had SIGUSR1's default action (end).
    origin.route("/s", 200, FRESH, b"s")
    log = tmp_path / "access.log"
    proxy = Proxy(origin.url, tmp_path / "c", "--workers", "2", "--access-log", str(log))
    sent = 0
    done = threading.Event()

    def guarded(pid: int) -> bool:
        # SIGUSR1 blocked or caught (/proc's masks), so the supervisor's interpreter is up:
        # before that no program can guard itself, and logrotate does not signal so early.
        status = Path(f"/proc/{pid}/status").read_text()
        masks = dict(x.split(":\t") for x in status.splitlines() if x.startswith("Sig"))
        return bool((int(masks["SigBlk"], 16) | int(masks["SigCgt"], 16)) & 1 << 9)

    def rotate_again_and_again() -> None:
        nonlocal sent
        while not done.is_set():
            if proxy.proc is not None and proxy.proc.poll() is None and guarded(proxy.proc.pid):
                proxy.proc.send_signal(signal.SIGUSR1)
                sent += 1
            time.sleep(0.01)

    thread = threading.Thread(target=rotate_again_and_again)
    thread.start()
    try:
        proxy.start()
        time.sleep(1.0)  # the second worker may still be starting: signals keep arriving
    finally:
        done.set()
        thread.join()
    try:
        assert sent > 20
        assert proxy.proc is not None and proxy.proc.poll() is None, proxy.output
        for _ in range(10):
            assert fetch(proxy.url + "/s").status == 200
        wait_until(lambda: len(lines_of(log)) == 10)
    finally:
        proxy.stop()


def test_connection_lines_only_with_verbose(origin: Origin, make_proxy: Any,
                                            tmp_path: Path) -> None:
    origin.route("/v", 200, FRESH, b"v")
    quiet = make_proxy(cache_dir=tmp_path / "c1")
    verbose = make_proxy("--verbose", cache_dir=tmp_path / "c2")
    for proxy in (quiet, verbose):
        fetch(proxy.url + "/v")
        wait_until(lambda p=proxy: any(" /v " in x for x in p.lines))
    wait_until(lambda: any("client disconnect" in x for x in verbose.lines))
    assert any("server connect" in x for x in verbose.lines)
    time.sleep(0.3)
    assert not [x for x in quiet.lines if "client connect" in x or "server connect" in x
                or "disconnect" in x]


def test_the_proxys_own_502_and_504_are_logged_with_status_and_cause(
        origin: Origin, tmp_path: Path) -> None:
    """A failed exchange is logged as the status its client got and why, in every format, and
    mitmweb's comment says it (not "-" with mitmproxy's "server closed connection")."""
    origin.route("/slow", handler=lambda _: Reply(200, FRESH, b"late", delay=3))
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: refused
    with Proxy(dead, tmp_path / "a", "--log-format", "json") as refused, \
            Proxy(origin.url, tmp_path / "b", "--first-byte-timeout", "1") as timed, \
            Proxy(dead, tmp_path / "c", "--log-format", "%s %{X-Cache}o") as apache:
        assert fetch(refused.url + "/x").status == 502
        assert fetch(timed.url + "/slow").status == 504
        assert fetch(apache.url + "/y").status == 502
        wait_until(lambda: any('"path": "/x"' in line for line in refused.lines))
        wait_until(lambda: any("GET /slow " in line for line in timed.lines))
        wait_until(lambda: any(line.startswith("502 ") for line in apache.lines))
    record = json.loads(next(line for line in refused.lines if '"path": "/x"' in line))
    assert (record["status"], record["cause"], record["x_cache"]) == (502, "origin-refused", "MISS")
    line = next(line for line in timed.lines if "GET /slow " in line)
    assert " 504 MISS " in line and "cause=origin-timeout" in line, line
    assert "502 MISS" in apache.lines


def test_standard_output_carries_access_log_lines_only(origin: Origin, tmp_path: Path) -> None:
    """The start-up line, warnings and mitmproxy's messages go to standard error, so that
    `caching-proxy > access.log` or a log shipper on the pipe gets the access log alone."""
    origin.route("/o", 200, FRESH, b"out")
    port = free_port()
    command = [sys.executable, "-O", "-m", "caching_proxy", "--port", str(port), "--origin",
               origin.url, "--cache-dir", str(tmp_path / "c"), "--log-format", "json"]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "addons"), PYTHONUNBUFFERED="1")
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env, cwd=ROOT) as proc:
        try:
            wait_until(lambda: fetch_or_none(f"http://127.0.0.1:{port}/o"), timeout=30,
                       what="the proxy answering")
            fetch(f"http://127.0.0.1:{port}/o")
            fetch(f"http://127.0.0.1:{port}/o", method="BREW")  # a warning-free pass
        finally:
            proc.terminate()
            out, err = proc.communicate(timeout=20)
    lines = out.splitlines()
    assert lines and all(json.loads(line)["path"] == "/o" for line in lines), out
    assert "caching-proxy: listening on" in err


def fetch_or_none(url: str) -> object:
    try:
        return fetch(url, timeout=2)
    except OSError:
        return None
