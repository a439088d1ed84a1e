"""`--error-log FILE`: the start-up line, warnings and errors go to FILE (appended), standard
output keeps the access log alone, and SIGHUP reopens FILE after logrotate moved it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from support.client import fetch
from support.origin import Origin, free_port
from support.polling import wait_until
from support.proxy import ROOT, _env, cli


def test_messages_go_to_the_error_log_and_a_sighup_reopens_it(
        origin: Origin, tmp_path: Path) -> None:
    origin.route("/a", headers=[("Cache-Control", "max-age=60")], body=b"a")
    errors, moved = tmp_path / "errors.log", tmp_path / "errors.log.1"
    errors.write_text("an earlier line\n")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-O", "-m", "caching_proxy", "--port", str(port), "--origin",
         origin.url, "--cache-dir", str(tmp_path / "cache"), "--error-log", str(errors)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=_env())
    try:
        wait_until(lambda: "caching-proxy: listening on" in errors.read_text(), timeout=30)
        assert errors.read_text().startswith("an earlier line\n")  # appended, not replaced
        assert fetch(f"http://127.0.0.1:{port}/a").status == 200
        os.rename(errors, moved)  # what logrotate does, then it sends SIGHUP
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: errors.exists() and "reloaded" in errors.read_text(), timeout=10)
        assert "reloaded" not in moved.read_text()
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0
    # Standard output: the access log's lines only; standard error: nothing.
    assert out.strip().splitlines() and all(" GET /a " in line for line in out.strip().splitlines())
    assert err == ""


def test_an_error_log_that_cannot_be_opened_is_one_line(origin: Origin, tmp_path: Path) -> None:
    done = cli("--origin", origin.url, "--cache-dir", str(tmp_path / "cache"),
               "--error-log", str(tmp_path / "no" / "such" / "dir" / "e.log"))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "--error-log" in done.stderr
