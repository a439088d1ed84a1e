"""`caching-proxy --warm` against a real proxy process and a counting origin: what it warms is
then answered from the store; sitemaps; the summary's counts and reasons; its errors."""

from __future__ import annotations

import json
from pathlib import Path

from support.client import fetch
from support.origin import Origin, Reply, free_port
from support.proxy import Proxy, cli

FRESH = [("Cache-Control", "max-age=600")]


def warm(proxy: Proxy, source: str, *extra: str) -> tuple[int, str, str]:
    done = cli("--warm", source, "--port", str(proxy.port), *extra)
    return done.returncode, done.stdout, done.stderr


def test_after_warming_30_paths_the_same_requests_are_hits(
        origin: Origin, proxy: Proxy, tmp_path: Path) -> None:
    paths = [f"/w{i}" for i in range(30)]
    for path in paths:
        origin.route(path, 200, FRESH, path.encode())
    listing = tmp_path / "urls.txt"
    # Paths and URLs (their path is requested), comments, blank lines, a repeat.
    listing.write_text("# pages to warm\n\n" + "\n".join(paths[:28]) + f"\n{paths[28]}  # new\n"
                       f"  http://www.example.com{paths[29]}  \n{paths[0]}\n")
    code, out, err = warm(proxy, str(listing), "--warm-concurrency", "8")
    assert code == 0, err
    assert out.startswith(f"caching-proxy: warmed 30 URLs through {proxy.url} in ")
    assert out.splitlines()[0].endswith(
        ": 30 stored, 0 already cached, 0 not stored, 0 errors"), out
    # Not a terminal here: plain progress lines on stderr, the last one the total.
    assert err.strip().splitlines()[-1] == "caching-proxy: warmed 30/30 (30 stored)"
    assert all(origin.count(p) == 1 for p in paths)

    answers = [fetch(proxy.url + p) for p in paths]
    assert [a.x_cache for a in answers] == ["HIT"] * 30
    assert [a.body for a in answers] == [p.encode() for p in paths]
    assert all(origin.count(p) == 1 for p in paths)  # the origin was not asked again

    code, out, _ = warm(proxy, str(listing))
    assert code == 0 and ": 0 stored, 30 already cached, 0 not stored, 0 errors" in out


def test_sitemap_on_the_origin_and_a_sitemap_index(origin: Origin, proxy: Proxy) -> None:
    pages = [f"/page/{i}?lang=en" for i in range(4)]
    for page in pages:
        origin.route(page.split("?")[0], 200, FRESH, b"page")
    locs = "".join(f"<url><loc>https://shop.example{p.replace('&', '&amp;')}</loc></url>"
                   for p in pages)
    origin.route("/sitemap.xml", 200, [("Content-Type", "application/xml")],
                 b'<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns='
                 b'"http://www.sitemaps.org/schemas/sitemap/0.9">' + locs.encode() + b"</urlset>")
    origin.route("/index.xml", 200, [], (
        b'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        b"<sitemap><loc>https://shop.example/sitemap.xml</loc></sitemap></sitemapindex>"))

    code, out, err = warm(proxy, "/sitemap.xml", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert (result["urls"], result["stored"], result["errors"]) == (4, 4, 0)
    assert [r["target"] for r in result["results"]] == pages
    assert all(fetch(proxy.url + p).x_cache == "HIT" for p in pages)
    assert all(len(origin.requests_for(p)) == 1 for p in pages)

    code, out, err = warm(proxy, "/index.xml")
    assert code == 0, err
    assert ": 0 stored, 4 already cached, 0 not stored, 0 errors" in out


def test_summary_says_what_was_not_stored_and_why_and_the_errors(
        origin: Origin, proxy: Proxy, tmp_path: Path) -> None:
    origin.route("/ok", 200, FRESH, b"ok")
    origin.route("/nostore", 200, [("Cache-Control", "no-store")], b"secret")
    origin.route("/cookie", 200, [("Set-Cookie", "a=b")], b"c")
    origin.route("/teapot", 418, [], b"no freshness")
    origin.route("/broken", handler=lambda _: Reply(raw=b"garbage\r\n\r\n"))
    listing = tmp_path / "urls.txt"
    listing.write_text("/ok\n/nostore\n/cookie\n/teapot\n/broken\n")
    code, out, _ = warm(proxy, str(listing))
    assert code == 1  # an error among them
    lines = out.splitlines()
    assert lines[0].endswith(": 1 stored, 0 already cached, 3 not stored, 1 errors"), out
    rows = {line.split()[0]: line for line in lines[1:] if line.startswith("  ")}
    assert "200  Cache-Control: no-store  [caching-proxy; fwd=uri-miss]" in rows["/nostore"]
    assert "Set-Cookie" in rows["/cookie"]
    assert "status 418 without explicit freshness" in rows["/teapot"]
    assert rows["/broken"].split()[1] == "502"
    assert lines.index("not stored:") < lines.index("errors:")
    assert fetch(proxy.url + "/nostore").x_cache == "MISS"


def test_without_a_running_proxy_or_with_a_bad_list(tmp_path: Path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text("/a\n")
    port = free_port()
    done = cli("--warm", str(listing), "--port", str(port))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"caching-proxy: error: no proxy answers at http://127.0.0.1:{port} (Connection "
        "refused); give --origin to warm the store through a proxy of its own, or start one"]


def test_with_origin_and_no_proxy_a_private_one_fills_the_store(
        origin: Origin, tmp_path: Path) -> None:
    paths = [f"/p{i}" for i in range(30)]
    for path in paths:
        origin.route(path, 200, FRESH, path.encode())
    origin.route("/secret", 200, [("Cache-Control", "no-store")], b"s")
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join([*paths, "/secret"]) + "\n")
    cache = tmp_path / "cache"
    done = cli("--warm", str(listing), "--port", str(free_port()), "--origin", origin.url,
               "--cache-dir", str(cache), "--default-ttl", "60")
    assert done.returncode == 0, done.stderr
    assert "warming through a private one on 127.0.0.1:" in done.stderr
    assert ": 30 stored, 0 already cached, 1 not stored, 0 errors" in done.stdout
    # The private proxy is gone; a proxy started later on the same store answers from it.
    with Proxy(origin.url, cache) as later:
        answers = [fetch(later.url + p) for p in paths]
    assert [a.x_cache for a in answers] == ["HIT"] * 30
    assert all(origin.count(p) == 1 for p in paths)


def test_a_line_that_is_no_path_is_named(origin: Origin, proxy: Proxy, tmp_path: Path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text("/a\nproducts/1\n")
    code, out, err = warm(proxy, str(listing))
    assert code == 2 and out == ""
    assert err.strip() == (f"caching-proxy: error: {listing}, line 2: 'products/1' is neither "
                           "a /path nor an http(s) URL")
    assert origin.count("/a") == 0
