"""Forwarded fields (issue 33, item 5) through a real proxy: what the origin sees on misses,
passes, revalidations and background refreshes, and the Via every answer carries (hits on the
hit lane and on mitmproxy's path, misses, the proxy's own answers)."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from support.certs import make_certs
from support.client import fetch
from support.origin import Origin
from support.polling import wait_until
from support.proxy import Proxy, cli

FRESH = [("Cache-Control", "max-age=300")]
VIA = "1.1 caching-proxy"
MakeProxy = Callable[..., Proxy]


def seen_fields(origin: Origin, path: str, index: int = -1) -> dict[str, list[str]]:
    seen = origin.requests_for(path)[index]
    found: dict[str, list[str]] = {}
    for name, value in seen.headers:
        found.setdefault(name.lower(), []).append(value)
    return found


@pytest.mark.parametrize("lane", [True, False], ids=["lane", "no-lane"])
def test_origin_sees_the_client_and_every_answer_has_via(
        origin: Origin, make_proxy: MakeProxy, lane: bool) -> None:
    proxy = make_proxy(*([] if lane else ["--no-hit-lane"]))
    origin.route("/a", 200, FRESH, b"a")
    miss = fetch(proxy.url + "/a", headers={"X-Forwarded-For": "6.6.6.6",
                                             "X-Forwarded-Proto": "https"})
    hit = fetch(proxy.url + "/a", headers={"X-Forwarded-For": "7.7.7.7"})
    assert (miss.x_cache, hit.x_cache) == ("MISS", "HIT") and origin.count("/a") == 1
    fields = seen_fields(origin, "/a")
    # An untrusted client's claims are replaced, not appended to.
    assert fields["x-forwarded-for"] == ["127.0.0.1"]
    assert fields["x-forwarded-proto"] == ["http"]
    assert fields["via"] == [VIA]
    assert "x-forwarded-host" not in fields
    assert miss.all("Via") == [VIA] and hit.all("Via") == [VIA]
    # The proxy's own answer too.
    purged = fetch(proxy.url + "/nothing-stored", method="PURGE")
    assert purged.status == 404 and purged.all("Via") == [VIA]


def test_an_origins_via_is_kept_and_ours_follows(origin: Origin, proxy: Proxy) -> None:
    origin.route("/v", 200, [*FRESH, ("Via", "1.1 varnish")], b"v")
    miss = fetch(proxy.url + "/v")
    hit = fetch(proxy.url + "/v")
    assert miss.all("Via") == hit.all("Via") == ["1.1 varnish", VIA]
    assert hit.x_cache == "HIT"


def test_a_trusted_proxys_list_is_appended_to(origin: Origin, make_proxy: MakeProxy) -> None:
    proxy = make_proxy("--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "127.0.0.1")
    origin.route("/t", 200, [("Cache-Control", "no-store")], b"t")
    fetch(proxy.url + "/t", headers=[("X-Forwarded-For", "203.0.113.9, 10.1.2.3"),
                                      ("X-Forwarded-For", "10.4.5.6"),
                                      ("X-Forwarded-Proto", "https"), ("Via", "1.1 lb")])
    fields = seen_fields(origin, "/t")
    assert fields["x-forwarded-for"] == ["203.0.113.9, 10.1.2.3, 10.4.5.6, 127.0.0.1"]
    assert fields["x-forwarded-proto"] == ["https"]
    assert fields["via"] == ["1.1 lb", VIA]


def test_forwarded_off_sends_nothing_of_its_own(origin: Origin, make_proxy: MakeProxy) -> None:
    proxy = make_proxy("--forwarded", "off")
    origin.route("/o", 200, FRESH, b"o")
    miss = fetch(proxy.url + "/o", headers={"X-Forwarded-For": "6.6.6.6"})
    hit = fetch(proxy.url + "/o")
    fields = seen_fields(origin, "/o")
    assert fields["x-forwarded-for"] == ["6.6.6.6"]  # as sent, as before the option existed
    assert "via" not in fields and "x-forwarded-proto" not in fields
    assert miss.all("Via") == [] and hit.all("Via") == [] and hit.x_cache == "HIT"


def test_revalidations_and_passes_carry_the_fields(origin: Origin, proxy: Proxy) -> None:
    origin.route("/r", 200, [*FRESH, ("ETag", '"1"')], b"r")
    fetch(proxy.url + "/r")
    revalidated = fetch(proxy.url + "/r", headers={"Cache-Control": "no-cache"})
    posted = fetch(proxy.url + "/r", method="POST", body=b"x")
    assert revalidated.header("Cache-Status", ) is not None and origin.count("/r") == 3
    assert seen_fields(origin, "/r", 1)["if-none-match"] == ['"1"']
    for index in (1, 2):
        fields = seen_fields(origin, "/r", index)
        assert fields["x-forwarded-for"] == ["127.0.0.1"] and fields["via"] == [VIA]
    assert posted.all("Via") == [VIA]


def test_a_background_refresh_carries_the_fields(origin: Origin, proxy: Proxy) -> None:
    origin.route("/swr", 200, [("Cache-Control", "max-age=1, stale-while-revalidate=60")],
                 b"swr")
    fetch(proxy.url + "/swr", headers={"X-Forwarded-For": "6.6.6.6"})
    answers: list[str | None] = []

    def refreshed() -> bool:
        answers.append(fetch(proxy.url + "/swr", headers={"X-Forwarded-For": "6.6.6.6"}).x_cache)
        return origin.count("/swr") >= 2

    wait_until(refreshed, timeout=10, what="a background refresh")
    # Every client was answered from the store: the origin's second request was the proxy's own.
    assert set(answers) == {"HIT"}
    fields = seen_fields(origin, "/swr", 1)
    assert fields["x-forwarded-for"] == ["127.0.0.1"]
    assert fields["x-forwarded-proto"] == ["http"] and fields["via"] == [VIA]


def test_over_tls_the_proto_is_https_and_http2_says_so(origin: Origin, tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    origin.route("/s", 200, [("Cache-Control", "no-store")], b"s")
    with Proxy(origin.url, tmp_path / "cache", "--tls-cert", str(certs.cert), "--tls-key",
               str(certs.key)) as proxy, httpx.Client(
            http2=True, verify=ssl.create_default_context(cafile=str(certs.ca))) as client:
        answer = client.get(f"https://127.0.0.1:{proxy.port}/s")
    assert answer.http_version == "HTTP/2" and answer.headers.get_list("via") == [VIA]
    fields = seen_fields(origin, "/s")
    assert fields["x-forwarded-proto"] == ["https"] and fields["via"] == ["2 caching-proxy"]


@pytest.mark.parametrize(("args", "message"), [
    (["--trusted-proxy", "10.0.0.0/33"], "invalid trusted proxy '10.0.0.0/33'"),
    (["--trusted-proxy", "lb.example"], "invalid trusted proxy 'lb.example'"),
    (["--forwarded", "maybe"], "argument --forwarded: invalid choice: 'maybe'"),
    (["--set", "cache_forwarded=maybe"], "invalid cache_forwarded 'maybe'"),
])
def test_bad_values_exit_2_with_one_line(origin: Origin, tmp_path: Path, args: list[str],
                                         message: str) -> None:
    done = cli("--origin", origin.url, "--cache-dir", str(tmp_path / "c"), "--port", "1", *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
