"""An https origin: the proxy verifies its certificate and caches as for http."""

from __future__ import annotations

from pathlib import Path

from support.client import fetch
from support.origin import Origin
from support.proxy import Proxy


def test_https_origin_verified_and_cached(tls_origin: Origin, tmp_path: Path) -> None:
    tls_origin.route("/s", 200, [("Cache-Control", "max-age=60")], b"secure")
    cert = tls_origin.cert  # type: ignore[attr-defined]
    with Proxy(tls_origin.url, tmp_path / "c", "--set",
               f"ssl_verify_upstream_trusted_ca={cert}") as proxy:
        assert fetch(proxy.url + "/s").x_cache == "MISS"
        hit = fetch(proxy.url + "/s")
    assert hit.x_cache == "HIT" and hit.body == b"secure"
    assert tls_origin.count("/s") == 1
    tls_origin.stop()


def test_https_origin_with_untrusted_certificate_gives_502(tls_origin: Origin, tmp_path: Path) -> None:
    tls_origin.route("/s", 200, [("Cache-Control", "max-age=60")], b"secure")
    with Proxy(tls_origin.url, tmp_path / "c") as proxy:
        answer = fetch(proxy.url + "/s")
    assert answer.status == 502 and answer.x_cache == "MISS"
    assert b"certificate" in answer.body.lower()
    assert tls_origin.count("/s") == 0
    tls_origin.stop()
