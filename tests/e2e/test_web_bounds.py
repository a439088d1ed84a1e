"""`--web` for a long session: a bound on the flows mitmweb keeps (`--web-max-flows`), the
comment column (the outcome in words) shown by default with a legend of the markers, and the
start-up line naming the admin and metrics ports when they are on."""

from __future__ import annotations

from pathlib import Path

from support.client import fetch
from support.origin import Origin, free_port
from support.proxy import Proxy
from support.web import WebSession


def test_mitmweb_keeps_the_newest_flows_and_shows_comments(origin: Origin,
                                                           tmp_path: Path) -> None:
    origin.route("/w", 200, [("Cache-Control", "max-age=60")], b"web")
    with Proxy(origin.url, tmp_path / "cache", "--web", "--web-port", str(free_port()),
               "--web-max-flows", "3") as proxy:
        for i in range(6):
            assert fetch(proxy.url + f"/w?{i}").status == 200
        session = WebSession(proxy)
        flows = session.get_json("/flows")
        columns = session.get_json("/options")["web_columns"]["value"]
        assert proxy.logged("flow markers: 💾 hit, 🌐 miss")
    assert [f["request"]["path"] for f in flows] == ["/w?3", "/w?4", "/w?5"]
    assert all(f["comment"] == "cache MISS (stored)" for f in flows)
    assert "comment" in columns


def test_the_start_up_line_names_the_admin_and_metrics_ports(origin: Origin,
                                                             tmp_path: Path) -> None:
    admin, metrics = free_port(), free_port()
    with Proxy(origin.url, tmp_path / "cache", "--admin-port", str(admin), "--metrics-port",
               str(metrics)) as proxy:
        line = next(x for x in proxy.lines if "caching-proxy: listening on" in x)
        assert fetch(f"http://127.0.0.1:{admin}/stats").status == 200
        assert fetch(f"http://127.0.0.1:{metrics}/metrics").status == 200
    assert f", admin http://127.0.0.1:{admin}/, metrics http://127.0.0.1:{metrics}/metrics" in line
    # --web-max-flows without --web means nothing, and is no error.
    with Proxy(origin.url, tmp_path / "cache", "--web-max-flows", "5") as proxy:
        plain = next(x for x in proxy.lines if "caching-proxy: listening on" in x)
    assert "admin" not in plain and "metrics" not in plain
