"""`--web`: the same proxy under mitmweb; flows answered from the cache are labelled as hits."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from support.client import fetch
from support.origin import Origin, free_port
from support.proxy import Proxy


def test_web_mode_caches_and_labels_hits(origin: Origin, tmp_path: Path) -> None:
    origin.route("/w", 200, [("Cache-Control", "max-age=60")], b"web")
    web_port = free_port()
    with Proxy(origin.url, tmp_path / "cache", "--web", "--web-port", str(web_port)) as proxy:
        assert fetch(proxy.url + "/w").x_cache == "MISS"
        assert fetch(proxy.url + "/w").x_cache == "HIT"
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/flows", timeout=10) as r:
            flows = json.load(r)
    assert origin.count("/w") == 1
    labels = [(f["request"]["path"], f["marked"], f["comment"]) for f in flows]
    assert ("/w", "", "") in labels
    assert ("/w", "💾", "cache HIT") in labels  # mitmweb shows ":floppy_disk:" as the emoji
