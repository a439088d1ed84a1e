"""`--web`: the same proxy under mitmweb; each flow is marked with what the cache did, and a flow
answered after a revalidation shows its time."""

from __future__ import annotations

import time
from pathlib import Path

from support.client import fetch
from support.origin import Origin, Reply, Seen, free_port
from support.proxy import Proxy
from support.web import WebSession


def test_web_mode_caches_and_labels_each_outcome(origin: Origin, tmp_path: Path) -> None:
    origin.route("/w", 200, [("Cache-Control", "max-age=60")], b"web")

    def revalidating(seen: Seen) -> Reply:
        if seen.header("If-None-Match") == '"e1"':
            return Reply(304, [("ETag", '"e1"'), ("Cache-Control", "max-age=1")])
        return Reply(200, [("ETag", '"e1"'), ("Cache-Control", "max-age=1")], b"v1")

    origin.route("/r", handler=revalidating)
    web_port = free_port()
    with Proxy(origin.url, tmp_path / "cache", "--web", "--web-port", str(web_port)) as proxy:
        assert fetch(proxy.url + "/w").x_cache == "MISS"
        assert fetch(proxy.url + "/w").x_cache == "HIT"
        assert fetch(proxy.url + "/w", method="POST", body=b"").x_cache == "MISS"
        fetch(proxy.url + "/r")
        time.sleep(1.5)
        revalidated = fetch(proxy.url + "/r")
        assert "fwd-status=304" in (revalidated.header("Cache-Status") or "")
        # Through the start-up line's URL (mitmproxy 12's carries mitmweb's token).
        flows = WebSession(proxy).get_json("/flows")
    assert origin.count("/w") == 2 and origin.count("/r") == 2
    labels = [(f["request"]["method"], f["request"]["path"], f["marked"], f["comment"])
              for f in flows]
    # mitmweb shows the emoji of each marker name (":floppy_disk:" -> 💾).
    assert labels == [
        ("GET", "/w", "🌐", "cache MISS (stored)"),
        ("GET", "/w", "💾", "cache HIT"),
        ("POST", "/w", "➡", "pass (method)"),
        ("GET", "/r", "🌐", "cache MISS (stored)"),
        ("GET", "/r", "🔄", "revalidated (304)"),
    ]
    # mitmweb's time column: response.timestamp_end - request.timestamp_start, "..." without it.
    for f in flows:
        assert f["response"]["timestamp_end"] is not None, f["request"]["path"]
        assert f["response"]["timestamp_end"] >= f["request"]["timestamp_start"]
