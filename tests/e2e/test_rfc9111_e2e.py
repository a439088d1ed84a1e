"""RFC 9111 through the real proxy, group by group: the origin says which headers to send, the
test checks what the client gets and how often the origin was asked."""

from __future__ import annotations

import time
from email.utils import formatdate

from support.client import fetch
from support.origin import Origin, Reply, Seen
from support.proxy import Proxy


def cache_status(resp: object) -> str:
    return resp.header("Cache-Status") or ""


# -- storing (section 3) ------------------------------------------------------------------------

def test_set_cookie_response_not_stored_by_default(origin: Origin, proxy: Proxy) -> None:
    origin.route("/sc", 200, [("Cache-Control", "max-age=60"), ("Set-Cookie", "a=1")], b"x")
    fetch(proxy.url + "/sc")
    assert fetch(proxy.url + "/sc").x_cache == "MISS"
    assert origin.count("/sc") == 2


def test_set_cookie_stored_with_option(origin: Origin, make_proxy) -> None:  # type: ignore[no-untyped-def]
    proxy = make_proxy("--set", "cache_set_cookie=true")
    origin.route("/sc", 200, [("Cache-Control", "max-age=60"), ("Set-Cookie", "a=1"),
                              ("Set-Cookie", "b=2")], b"x")
    fetch(proxy.url + "/sc")
    hit = fetch(proxy.url + "/sc")
    assert hit.x_cache == "HIT" and hit.all("Set-Cookie") == ["a=1", "b=2"]


def test_authorization_stored_when_public(origin: Origin, proxy: Proxy) -> None:
    origin.route("/ap", 200, [("Cache-Control", "public, max-age=60")], b"shared")
    fetch(proxy.url + "/ap", headers={"Authorization": "Bearer x"})
    assert fetch(proxy.url + "/ap", headers={"Authorization": "Bearer y"}).x_cache == "HIT"


def test_vary_star_never_stored(origin: Origin, proxy: Proxy) -> None:
    origin.route("/vs", 200, [("Cache-Control", "max-age=60"), ("Vary", "*")], b"x")
    fetch(proxy.url + "/vs")
    assert fetch(proxy.url + "/vs").x_cache == "MISS"


def test_uncacheable_status_without_freshness_not_stored(origin: Origin, proxy: Proxy) -> None:
    origin.route("/302", 302, [("Location", "/elsewhere")], b"")
    fetch(proxy.url + "/302")
    assert fetch(proxy.url + "/302").x_cache == "MISS"
    origin.route("/404", 404, [], b"gone")
    fetch(proxy.url + "/404")
    assert fetch(proxy.url + "/404").x_cache == "HIT"


def test_truncated_response_never_stored(origin: Origin, proxy: Proxy) -> None:
    origin.route("/short", handler=lambda _: Reply(raw=(
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 100\r\n\r\nonly-part")))
    first = fetch(proxy.url + "/short")
    assert first.status == 502 or len(first.body) < 100
    origin.route("/short", 200, [("Cache-Control", "max-age=60")], b"complete")
    second = fetch(proxy.url + "/short")
    assert second.x_cache == "MISS" and second.body == b"complete"


# -- freshness (4.2) ------------------------------------------------------------------------------

def test_s_maxage_wins_over_max_age(origin: Origin, proxy: Proxy) -> None:
    origin.route("/sm", 200, [("Cache-Control", "max-age=1, s-maxage=100")], b"x")
    first = fetch(proxy.url + "/sm")
    assert cache_status(first).endswith(("ttl=100", "ttl=99"))


def test_invalid_expires_means_stale(origin: Origin, proxy: Proxy) -> None:
    origin.route("/ie", 200, [("Expires", "0")], b"x")
    fetch(proxy.url + "/ie")
    assert fetch(proxy.url + "/ie").x_cache == "MISS"
    assert origin.count("/ie") == 2


def test_age_counts_origin_age_and_residence(origin: Origin, proxy: Proxy) -> None:
    origin.route("/age", 200, [("Cache-Control", "max-age=100"), ("Age", "30")], b"x")
    first = fetch(proxy.url + "/age")
    assert cache_status(first).endswith(("ttl=70", "ttl=69"))
    time.sleep(1.1)
    hit = fetch(proxy.url + "/age")
    assert hit.x_cache == "HIT"
    assert 31 <= int(hit.header("Age") or 0) <= 33


def test_heuristic_freshness_from_last_modified(origin: Origin, proxy: Proxy) -> None:
    now = time.time()
    origin.route("/lm", 200, [("Date", formatdate(now, usegmt=True)),
                              ("Last-Modified", formatdate(now - 1000, usegmt=True))], b"x")
    first = fetch(proxy.url + "/lm")
    ttl = int(cache_status(first).rsplit("ttl=", 1)[1])
    assert 98 <= ttl <= 100  # 10% of 1000 s


# -- request directives (5.2.1) ------------------------------------------------------------------

def test_request_no_cache_goes_to_origin(origin: Origin, proxy: Proxy) -> None:
    origin.route("/rnc", 200, [("Cache-Control", "max-age=60")], b"x")
    fetch(proxy.url + "/rnc")
    forced = fetch(proxy.url + "/rnc", headers={"Cache-Control": "no-cache"})
    assert forced.x_cache == "MISS"
    assert origin.count("/rnc") == 2


def test_pragma_no_cache_without_cache_control(origin: Origin, proxy: Proxy) -> None:
    origin.route("/pr", 200, [("Cache-Control", "max-age=60")], b"x")
    fetch(proxy.url + "/pr")
    assert fetch(proxy.url + "/pr", headers={"Pragma": "no-cache"}).x_cache == "MISS"
    assert fetch(proxy.url + "/pr", headers={"Pragma": "no-cache",
                                             "Cache-Control": "max-stale"}).x_cache == "HIT"


def test_request_max_age_zero_forces_origin(origin: Origin, proxy: Proxy) -> None:
    origin.route("/rma", 200, [("Cache-Control", "max-age=60")], b"x")
    fetch(proxy.url + "/rma")
    time.sleep(1.1)
    assert fetch(proxy.url + "/rma", headers={"Cache-Control": "max-age=0"}).x_cache == "MISS"
    assert fetch(proxy.url + "/rma", headers={"Cache-Control": "max-age=600"}).x_cache == "HIT"


def test_min_fresh(origin: Origin, proxy: Proxy) -> None:
    origin.route("/mf", 200, [("Cache-Control", "max-age=60")], b"x")
    fetch(proxy.url + "/mf")
    assert fetch(proxy.url + "/mf", headers={"Cache-Control": "min-fresh=30"}).x_cache == "HIT"
    assert fetch(proxy.url + "/mf", headers={"Cache-Control": "min-fresh=90"}).x_cache == "MISS"


def test_max_stale_serves_stale(origin: Origin, proxy: Proxy) -> None:
    origin.route("/ms", 200, [("Cache-Control", "max-age=1")], b"x")
    fetch(proxy.url + "/ms")
    time.sleep(2.1)
    stale = fetch(proxy.url + "/ms", headers={"Cache-Control": "max-stale=60"})
    assert stale.x_cache == "HIT"
    assert origin.count("/ms") == 1


def test_max_stale_refused_by_must_revalidate(origin: Origin, proxy: Proxy) -> None:
    origin.route("/mr", 200, [("Cache-Control", "max-age=1, must-revalidate")], b"x")
    fetch(proxy.url + "/mr")
    time.sleep(2.1)
    assert fetch(proxy.url + "/mr", headers={"Cache-Control": "max-stale=60"}).x_cache == "MISS"


def test_only_if_cached(origin: Origin, proxy: Proxy) -> None:
    origin.route("/oic", 200, [("Cache-Control", "max-age=60")], b"x")
    cold = fetch(proxy.url + "/oic", headers={"Cache-Control": "only-if-cached"})
    assert cold.status == 504
    assert origin.count("/oic") == 0
    fetch(proxy.url + "/oic")
    warm = fetch(proxy.url + "/oic", headers={"Cache-Control": "only-if-cached"})
    assert warm.status == 200 and warm.x_cache == "HIT"


def test_request_no_store_not_stored(origin: Origin, proxy: Proxy) -> None:
    origin.route("/rns", 200, [("Cache-Control", "max-age=60")], b"x")
    fetch(proxy.url + "/rns", headers={"Cache-Control": "no-store"})
    assert fetch(proxy.url + "/rns").x_cache == "MISS"


# -- response directives (5.2.2) -----------------------------------------------------------------

def test_response_no_cache_revalidates_every_time(origin: Origin, proxy: Proxy) -> None:
    def handler(seen: Seen) -> Reply:
        if seen.header("If-None-Match") == '"v1"':
            return Reply(304, [("ETag", '"v1"'), ("Cache-Control", "no-cache")])
        return Reply(200, [("ETag", '"v1"'), ("Cache-Control", "no-cache")], b"body")

    origin.route("/rnc2", handler=handler)
    fetch(proxy.url + "/rnc2")
    second = fetch(proxy.url + "/rnc2")
    assert second.status == 200 and second.body == b"body"
    assert second.x_cache == "MISS"
    assert "fwd=stale" in cache_status(second) and "fwd-status=304" in cache_status(second)
    assert origin.requests_for("/rnc2")[1].header("If-None-Match") == '"v1"'


def test_qualified_no_cache_strips_field_on_hit(origin: Origin, proxy: Proxy) -> None:
    origin.route("/qnc", 200, [("Cache-Control", 'max-age=60, no-cache="X-Secret"'),
                               ("X-Secret", "s"), ("X-Other", "o")], b"x")
    fetch(proxy.url + "/qnc")
    hit = fetch(proxy.url + "/qnc")
    assert hit.x_cache == "HIT"
    assert hit.header("X-Secret") is None and hit.header("X-Other") == "o"


def test_private_with_field_names_stores_without_them(origin: Origin, proxy: Proxy) -> None:
    origin.route("/pf", 200, [("Cache-Control", 'max-age=60, private="X-User"'),
                              ("X-User", "alice"), ("X-Public", "p")], b"x")
    fetch(proxy.url + "/pf")
    hit = fetch(proxy.url + "/pf")
    assert hit.x_cache == "HIT"
    assert hit.header("X-User") is None and hit.header("X-Public") == "p"


# -- validation (4.3) ----------------------------------------------------------------------------

def _etag_origin(origin: Origin, path: str, *, lifetime: int = 1) -> None:
    def handler(seen: Seen) -> Reply:
        headers = [("ETag", 'W/"e1"'), ("Cache-Control", f"max-age={lifetime}"),
                   ("X-Version", "1")]
        if seen.header("If-None-Match") == 'W/"e1"':
            return Reply(304, [("ETag", 'W/"e1"'), ("Cache-Control", "max-age=60"),
                               ("X-Version", "2")])
        return Reply(200, headers, b"payload")

    origin.route(path, handler=handler)


def test_stale_entry_revalidated_with_etag_and_freshened(origin: Origin, proxy: Proxy) -> None:
    _etag_origin(origin, "/rv")
    fetch(proxy.url + "/rv")
    time.sleep(2.1)
    revalidated = fetch(proxy.url + "/rv")
    assert revalidated.status == 200 and revalidated.body == b"payload"
    assert revalidated.x_cache == "MISS"
    assert "fwd=stale" in cache_status(revalidated) and "fwd-status=304" in cache_status(revalidated)
    assert revalidated.header("X-Version") == "2"  # headers freshened from the 304
    hit = fetch(proxy.url + "/rv")
    assert hit.x_cache == "HIT" and hit.header("X-Version") == "2"
    assert origin.count("/rv") == 2


def test_stale_entry_revalidated_with_last_modified(origin: Origin, proxy: Proxy) -> None:
    lm = formatdate(time.time() - 3600, usegmt=True)

    def handler(seen: Seen) -> Reply:
        if seen.header("If-Modified-Since") == lm:
            return Reply(304, [("Cache-Control", "max-age=60")])
        return Reply(200, [("Last-Modified", lm), ("Cache-Control", "max-age=1")], b"lm-body")

    origin.route("/rvlm", handler=handler)
    fetch(proxy.url + "/rvlm")
    time.sleep(2.1)
    again = fetch(proxy.url + "/rvlm")
    assert again.body == b"lm-body" and "fwd-status=304" in cache_status(again)


def test_revalidation_answered_200_replaces_entry(origin: Origin, proxy: Proxy) -> None:
    versions = iter([b"one", b"two"])

    def handler(seen: Seen) -> Reply:
        return Reply(200, [("ETag", '"x"' if seen.header("If-None-Match") is None else '"y"'),
                           ("Cache-Control", "max-age=1")], next(versions))

    origin.route("/rep", handler=handler)
    fetch(proxy.url + "/rep")
    time.sleep(2.1)
    assert fetch(proxy.url + "/rep").body == b"two"
    assert fetch(proxy.url + "/rep").body == b"two"


def test_client_conditional_on_fresh_entry_gets_304(origin: Origin, proxy: Proxy) -> None:
    origin.route("/cc", 200, [("ETag", '"abc"'), ("Cache-Control", "max-age=60")], b"x")
    fetch(proxy.url + "/cc")
    nm = fetch(proxy.url + "/cc", headers={"If-None-Match": 'W/"abc"'})
    assert nm.status == 304 and nm.body == b"" and nm.header("ETag") == '"abc"'
    assert nm.x_cache == "HIT"
    other = fetch(proxy.url + "/cc", headers={"If-None-Match": '"zzz"'})
    assert other.status == 200
    assert origin.count("/cc") == 1


def test_client_if_modified_since_on_fresh_entry(origin: Origin, proxy: Proxy) -> None:
    lm = time.time() - 3600
    origin.route("/ims", 200, [("Last-Modified", formatdate(lm, usegmt=True)),
                               ("Cache-Control", "max-age=60")], b"x")
    fetch(proxy.url + "/ims")
    later = fetch(proxy.url + "/ims", headers={"If-Modified-Since": formatdate(lm + 10, usegmt=True)})
    earlier = fetch(proxy.url + "/ims", headers={"If-Modified-Since": formatdate(lm - 10, usegmt=True)})
    assert later.status == 304 and earlier.status == 200


def test_client_conditional_on_miss_is_answered_by_proxy_and_fills_cache(
    origin: Origin, proxy: Proxy
) -> None:
    origin.route("/cm", 200, [("ETag", '"t"'), ("Cache-Control", "max-age=60")], b"x")
    first = fetch(proxy.url + "/cm", headers={"If-None-Match": '"t"'})
    assert first.status == 304
    assert origin.requests_for("/cm")[0].header("If-None-Match") is None
    assert fetch(proxy.url + "/cm").x_cache == "HIT"


# -- Vary (4.1) ----------------------------------------------------------------------------------

def test_vary_variants_side_by_side(origin: Origin, proxy: Proxy) -> None:
    origin.route("/v", handler=lambda seen: Reply(
        200, [("Vary", "Accept-Language"), ("Cache-Control", "max-age=60")],
        (seen.header("Accept-Language") or "none").encode()))
    assert fetch(proxy.url + "/v", headers={"Accept-Language": "en"}).body == b"en"
    assert fetch(proxy.url + "/v", headers={"Accept-Language": "fr"}).body == b"fr"
    en = fetch(proxy.url + "/v", headers={"Accept-Language": "en"})
    fr = fetch(proxy.url + "/v", headers={"Accept-Language": "fr"})
    assert (en.x_cache, en.body, fr.x_cache, fr.body) == ("HIT", b"en", "HIT", b"fr")
    none = fetch(proxy.url + "/v")
    assert none.x_cache == "MISS" and none.body == b"none"
    assert "fwd=vary-miss" in cache_status(none)
    assert origin.count("/v") == 3


def test_vary_values_normalized(origin: Origin, proxy: Proxy) -> None:
    origin.route("/vn", handler=lambda seen: Reply(
        200, [("Vary", "Accept-Encoding"), ("Cache-Control", "max-age=60")], b"z"))
    fetch(proxy.url + "/vn", headers={"Accept-Encoding": "gzip,deflate"})
    assert fetch(proxy.url + "/vn", headers={"Accept-Encoding": "gzip, deflate"}).x_cache == "HIT"


# -- invalidation (4.4) --------------------------------------------------------------------------

def test_unsafe_method_invalidates_target_and_location(origin: Origin, proxy: Proxy) -> None:
    origin.route("/item", 200, [("Cache-Control", "max-age=60")], b"item")
    origin.route("/other", 200, [("Cache-Control", "max-age=60")], b"other")
    origin.route("/item-post", handler=lambda _: Reply(201, [("Location", "/other")], b""))
    fetch(proxy.url + "/item")
    fetch(proxy.url + "/other")
    origin.route("/item", handler=lambda seen: Reply(
        200 if seen.method == "GET" else 204, [("Cache-Control", "max-age=60"),
                                                ("Location", "/other")], b"item"))
    fetch(proxy.url + "/item", method="PUT", body=b"new")
    assert fetch(proxy.url + "/item").x_cache == "MISS"
    assert fetch(proxy.url + "/other").x_cache == "MISS"


def test_error_response_to_post_does_not_invalidate(origin: Origin, proxy: Proxy) -> None:
    origin.route("/keep", handler=lambda seen: Reply(
        200 if seen.method == "GET" else 500, [("Cache-Control", "max-age=60")], b"k"))
    fetch(proxy.url + "/keep")
    fetch(proxy.url + "/keep", method="POST", body=b"x")
    assert fetch(proxy.url + "/keep").x_cache == "HIT"


# -- targeted cache control (RFC 9213) -----------------------------------------------------------

def test_cdn_cache_control_overrides_cache_control(origin: Origin, proxy: Proxy) -> None:
    origin.route("/cdn", 200, [("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=60")],
                 b"x")
    first = fetch(proxy.url + "/cdn")
    assert first.header("Cache-Control") == "no-store"  # forwarded downstream untouched
    assert fetch(proxy.url + "/cdn").x_cache == "HIT"


def test_invalid_cdn_cache_control_is_ignored(origin: Origin, proxy: Proxy) -> None:
    origin.route("/cdnbad", 200, [("Cache-Control", "no-store"),
                                  ("CDN-Cache-Control", "max-age=\"60")], b"x")
    fetch(proxy.url + "/cdnbad")
    assert fetch(proxy.url + "/cdnbad").x_cache == "MISS"


def test_cdn_cache_control_no_store_wins(origin: Origin, proxy: Proxy) -> None:
    origin.route("/cdnns", 200, [("Cache-Control", "max-age=60"), ("CDN-Cache-Control", "no-store")],
                 b"x")
    fetch(proxy.url + "/cdnns")
    assert fetch(proxy.url + "/cdnns").x_cache == "MISS"


# -- Range -----------------------------------------------------------------------------------

def test_a_range_miss_fetches_the_whole_and_stores_it(origin: Origin, proxy: Proxy) -> None:
    # The origin would answer a forwarded Range with 206: the proxy asks for the whole instead
    # (as nginx and Varnish do), answers the range from it and stores it (tests/e2e/test_ranges.py).
    origin.route("/r", handler=lambda seen: Reply(
        206 if seen.header("Range") else 200,
        [("Cache-Control", "max-age=60"), ("Content-Range", "bytes 0-1/10")]
        if seen.header("Range") else [("Cache-Control", "max-age=60")],
        b"01" if seen.header("Range") else b"0123456789"))
    partial = fetch(proxy.url + "/r", headers={"Range": "bytes=2-3"})
    assert partial.status == 206 and partial.body == b"23"
    assert partial.header("Content-Range") == "bytes 2-3/10"
    full = fetch(proxy.url + "/r")
    assert full.status == 200 and full.x_cache == "HIT" and full.body == b"0123456789"
    assert [seen.header("Range") for seen in origin.requests_for("/r")] == [None]
