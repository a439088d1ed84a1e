"""`--uvloop`: the proxy on uvloop's event loop serves the same answers (a miss, a hit on the
lane and off it, a stale answer's revalidation), drains on SIGTERM, and says which loop it runs
on; without uvloop installed the flag is one line and exit 2."""

from __future__ import annotations

import importlib.util
import signal
from pathlib import Path

import pytest

from support.client import fetch
from support.origin import Origin, Reply
from support.proxy import Proxy

needs_uvloop = pytest.mark.skipif(importlib.util.find_spec("uvloop") is None,
                                  reason="uvloop is not installed (the test extra has it)")


@needs_uvloop
@pytest.mark.parametrize("lane", [(), ("--no-hit-lane",)])
def test_the_proxy_on_uvloop_answers_as_on_asyncio(origin: Origin, tmp_path: Path,
                                                   lane: tuple[str, ...]) -> None:
    origin.route("/a", headers=[("Cache-Control", "max-age=60")], body=b"a")
    validated = [("Cache-Control", "max-age=0"), ("ETag", '"1"')]
    origin.route("/e", handler=lambda seen: Reply(304, validated) if seen.header(
        "If-None-Match") == '"1"' else Reply(200, validated, b"e"))
    with Proxy(origin.url, tmp_path / "cache", "--uvloop", *lane) as proxy:
        assert ", on uvloop" in proxy.output
        assert [fetch(proxy.url + "/a").x_cache for _ in range(3)] == ["MISS", "HIT", "HIT"]
        assert origin.count("/a") == 1
        fetch(proxy.url + "/e")
        revalidated = fetch(proxy.url + "/e")
        assert revalidated.body == b"e" and "fwd-status=304" in str(
            revalidated.header("Cache-Status"))
        assert proxy.proc is not None
        proxy.proc.send_signal(signal.SIGTERM)
        assert proxy.proc.wait(10) == 0


def test_uvloop_missing_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from support.proxy import cli

    # A folder first on the path whose `uvloop` cannot be imported: as if not installed.
    fake = tmp_path / "site"
    (fake / "uvloop").mkdir(parents=True)
    (fake / "uvloop" / "__init__.py").write_text("raise ImportError('not here')\n")
    monkeypatch.setenv("PYTHONPATH", str(fake))
    done = cli("--uvloop", "--origin", "http://127.0.0.1:9", "--cache-dir", str(tmp_path / "c"))
    assert done.returncode == 2 and "--uvloop needs uvloop" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
