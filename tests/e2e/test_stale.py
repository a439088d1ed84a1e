"""Stale answers: stale-while-revalidate in the background, stale-if-error, --use-stale."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from support.client import fetch
from support.origin import Origin, Reply, Seen
from support.polling import wait_until
from support.proxy import Proxy


def test_stale_while_revalidate_serves_at_once_and_refreshes_once(
    origin: Origin, proxy: Proxy
) -> None:
    calls: list[Seen] = []

    def handler(seen: Seen) -> Reply:
        calls.append(seen)
        headers = [("Cache-Control", "max-age=1, stale-while-revalidate=60"), ("ETag", '"v1"')]
        if len(calls) == 1:
            return Reply(200, headers, b"version 1")
        # The refresh: slow, and the resource changed.
        return Reply(200, [("Cache-Control", "max-age=60"), ("ETag", '"v2"')], b"version 2",
                     delay=2.0)

    origin.route("/swr", handler=handler)
    assert fetch(proxy.url + "/swr").x_cache == "MISS"
    time.sleep(2.2)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: fetch(proxy.url + "/swr"), range(8)))
    elapsed = time.monotonic() - started
    assert all(a.body == b"version 1" and a.x_cache == "HIT" for a in answers)
    assert all("detail=stale-while-revalidate" in (a.header("Cache-Status") or "")
               for a in answers)
    assert elapsed < 1.9  # not held up by the 2 s refresh
    wait_until(lambda: fetch(proxy.url + "/swr").body == b"version 2")
    assert origin.count("/swr") == 2  # one refresh for all eight
    assert calls[1].header("If-None-Match") == '"v1"'


def test_stale_if_error_answers_a_503_with_the_stored_response(
    origin: Origin, proxy: Proxy
) -> None:
    origin.route("/sie", 200, [("Cache-Control", "max-age=1, stale-if-error=60")], b"good")
    origin.route("/plain", 200, [("Cache-Control", "max-age=1")], b"good")
    fetch(proxy.url + "/sie")
    fetch(proxy.url + "/plain")
    time.sleep(2.1)
    origin.route("/sie", 503, [], b"down")
    origin.route("/plain", 503, [], b"down")
    # Without stale-if-error the 503 passes: the default --use-stale covers no status.
    passed = fetch(proxy.url + "/plain")
    assert passed.status == 503 and passed.body == b"down" and passed.x_cache == "MISS"
    answer = fetch(proxy.url + "/sie")
    assert answer.status == 200 and answer.body == b"good"
    assert answer.x_cache == "HIT"
    status = answer.header("Cache-Status") or ""
    assert status.startswith("caching-proxy; fwd=stale; fwd-status=503; ttl=-")
    assert status.endswith("detail=stale-on-http-503")
    assert origin.count("/sie") == 2


def test_use_stale_error_answers_when_the_origin_is_down(origin: Origin, make_proxy: object) -> None:
    proxy = make_proxy("--use-stale", "error,timeout,http_503")  # type: ignore[operator]
    origin.route("/down", 200, [("Cache-Control", "max-age=1")], b"kept")
    origin.route("/mr", 200, [("Cache-Control", "max-age=1, must-revalidate")], b"strict")
    fetch(proxy.url + "/down")
    fetch(proxy.url + "/mr")
    time.sleep(2.1)
    # must-revalidate: never served stale, whatever the operator allows.
    origin.route("/mr", 503, [], b"down")
    assert fetch(proxy.url + "/mr").status == 503
    origin.stop()
    answer = fetch(proxy.url + "/down")
    assert answer.status == 200 and answer.body == b"kept" and answer.x_cache == "HIT"
    assert (answer.header("Cache-Status") or "").endswith("detail=stale-on-error")
    # Nothing stored: mitmproxy's 502, marked as this proxy's.
    missing = fetch(proxy.url + "/never")
    assert missing.status == 502 and missing.x_cache == "MISS"


def test_by_default_a_stale_response_answers_when_the_origin_is_gone(
    origin: Origin, proxy: Proxy
) -> None:
    # The default --use-stale error,timeout (RFC 9111 4.2.4: a cache disconnected from the
    # origin may serve stale), with no stale-if-error anywhere.
    origin.route("/gone", 200, [("Cache-Control", "max-age=1"), ("ETag", '"g"')], b"kept")
    for path, cache_control in (("/mr", "max-age=1, must-revalidate"),
                                ("/pr", "max-age=1, proxy-revalidate"),
                                ("/sm", "max-age=1, s-maxage=1"),
                                ("/nc", "max-age=60, no-cache")):
        origin.route(path, 200, [("Cache-Control", cache_control), ("ETag", '"x"')], b"strict")
    for path in ("/gone", "/mr", "/pr", "/sm", "/nc"):
        assert fetch(proxy.url + path).x_cache == "MISS"
    time.sleep(2.1)
    origin.stop()
    answer = fetch(proxy.url + "/gone")
    assert (answer.status, answer.body, answer.x_cache) == (200, b"kept", "HIT")
    status = answer.header("Cache-Status") or ""
    assert status.startswith("caching-proxy; fwd=stale; ttl=-")
    assert status.endswith("detail=stale-on-error")
    assert int(answer.header("Age") or "0") >= 2
    # A directive that forbids serving stale wins over the default: the client gets the error.
    for path in ("/mr", "/pr", "/sm", "/nc"):
        refused = fetch(proxy.url + path)
        assert (refused.status, refused.x_cache) == (502, "MISS"), path
        assert refused.body != b"strict", path


def test_use_stale_off_passes_the_error_on(origin: Origin, make_proxy: object) -> None:
    proxy = make_proxy("--use-stale", "off")  # type: ignore[operator]
    origin.route("/gone", 200, [("Cache-Control", "max-age=1")], b"kept")
    fetch(proxy.url + "/gone")
    time.sleep(2.1)
    origin.stop()
    answer = fetch(proxy.url + "/gone")
    assert (answer.status, answer.x_cache) == (502, "MISS") and answer.body != b"kept"


def test_background_refresh_of_an_https_origin_uses_the_proxy_tls_settings(
    tls_origin: Origin, tmp_path: Path,
) -> None:
    # The refreshed version stays fresh: Date has one-second resolution, so with max-age=1 it
    # could arrive stale and set off a third request.
    versions = iter([(b"one", "max-age=1, stale-while-revalidate=60"), (b"two", "max-age=60")])

    def reply(_: Seen) -> Reply:
        body, cache_control = next(versions)
        return Reply(200, [("Cache-Control", cache_control)], body)

    tls_origin.route("/s", handler=reply)
    cert = tls_origin.cert  # type: ignore[attr-defined]
    with Proxy(tls_origin.url, tmp_path / "c", "--set",
               f"ssl_verify_upstream_trusted_ca={cert}") as proxy:
        assert fetch(proxy.url + "/s").body == b"one"
        time.sleep(2.1)
        stale = fetch(proxy.url + "/s")
        assert stale.body == b"one" and stale.x_cache == "HIT"
        # Verified against the CA the proxy was given, the refresh stored the new version.
        wait_until(lambda: fetch(proxy.url + "/s").body == b"two")
    assert tls_origin.count("/s") == 2
